"""Model sizes as frozen dataclasses in one registry.

The nine paper architectures are Table 19/20 of Radford et al. (2021) with the exact shapes of OpenAI's released
checkpoints (their `build_model` reads these numbers back out of the state dict). Small CPU-sized configs are ours;
they keep the same code path and only change sizes. open_clip's ViT-H/g/bigG family (for its LAION, DataComp, DFN
and MetaCLIP weights) adds head widths other than 64 and MLPs wider than 4 x width (`mlp_width`), with open_clip's
shapes and names. Variants are made with `dataclasses.replace`, never with flags.
Every config is checked when it is made (sizes within LIMITS, heads that split their width), so an absurd one read from
a file fails with a ConfigError naming the field before any module is built.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import typing
from dataclasses import dataclass, field
from typing import Any, Literal

from ..errors import ConfigError

Activation = Literal["quick_gelu", "gelu"]

# Every size a config may hold, as (smallest, largest). A config is checked against them when it is made, so one read
# from a file is refused before any module is built: a corrupt or hostile value (a million layers, a negative width)
# would otherwise hang, or exhaust memory, while the model is constructed. The upper bounds sit at least 10x above the
# largest released CLIPs (ViT-bigG-14: 48 vision layers of width 1664, a 32-layer text tower of width 1280, embed
# 1280; RN50x64: stem width 128, 36 blocks in its third stage, 448-pixel images; multilingual towers: ~250k tokens),
# so every real model passes with room to spare.
LIMITS: dict[str, tuple[int, int]] = {
    "layers": (1, 512),  # transformer depth
    "stage_blocks": (1, 384),  # Bottleneck blocks in one ResNet stage
    "width": (1, 32768),  # transformer width
    "resnet_width": (2, 2048),  # ResNet stem width: the stem's first convolutions are half as wide
    "head_width": (1, 16384),
    "mlp_width": (1, 4 * 32768),  # an MLP's hidden width: 4 x the widest transformer allowed
    "image_size": (1, 8192),
    "patch_size": (1, 8192),
    "context_length": (2, 8192),  # at least <|startoftext|> and <|endoftext|>
    "vocab_size": (1, 1 << 22),
    "embed_dim": (1, 16384),
}


def _check_size(name: str, value: object, limit: str) -> None:
    """ConfigError unless `value` is an int within LIMITS[limit]; `name` is the field as config.json spells it."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise ConfigError(f"{name} must be an integer, got {value!r} ({type(value).__name__})")
    low, high = LIMITS[limit]
    if not low <= value <= high:
        raise ConfigError(f"{name} = {value} is out of bounds: allowed {low}..{high}, a range at least 10x beyond "
                          "the largest released CLIPs")


def _mlp_width(owner: str, mlp_width: int, width: int) -> int:
    """The stored form of an MLP width: checked against LIMITS, and 0 when it is 4 x width (CLIP's default), so that
    configs of one architecture compare equal however their MLP width was written."""
    if mlp_width == 0:
        return 0
    _check_size(f"{owner}.mlp_width", mlp_width, "mlp_width")
    return 0 if mlp_width == 4 * width else mlp_width


def _check_heads(owner: str, attention: str, width: int, head_width: int) -> None:
    """Heads = width // head_width must be at least one and split the attention's `width` evenly."""
    _check_size(f"{owner}.head_width", head_width, "head_width")
    if head_width > width:
        raise ConfigError(f"{owner}.head_width {head_width} is wider than {attention} {width}: that gives 0 attention "
                          "heads (heads = width // head_width)")
    if width % head_width:
        raise ConfigError(f"{attention} {width} is not a multiple of {owner}.head_width {head_width}: the attention "
                          "heads must split it evenly")


@dataclass(frozen=True)
class VisionConfig:
    image_size: int  # input resolution in pixels (square)
    width: int  # ViT: token width; ResNet: stem width (64 for RN50); the attention pool is width * 32 wide
    layers: int | tuple[int, ...]  # ViT: transformer depth; ResNet: Bottleneck blocks per stage (4 stages)
    patch_size: int = 0  # ViT patch size in pixels; 0 means ModifiedResNet
    head_width: int = 64  # heads = width // head_width (ViT) or width * 32 // head_width (ResNet), as OpenAI
    mlp_width: int = 0  # ViT: hidden width of each block's MLP; 0 means 4 * width (OpenAI's; open_clip's mlp_ratio 4)

    @property
    def mlp_hidden(self) -> int:
        """The MLP's hidden width (c_fc's output): mlp_width, or 4 * width when it is 0."""
        return self.mlp_width or 4 * self.width

    @property
    def kind(self) -> Literal["vit", "resnet"]:
        return "vit" if self.patch_size else "resnet"

    @property
    def heads(self) -> int:
        return (self.width if self.kind == "vit" else self.width * 32) // self.head_width

    def __post_init__(self) -> None:
        _check_size("vision.image_size", self.image_size, "image_size")
        if self.patch_size != 0:
            _check_size("vision.patch_size", self.patch_size, "patch_size")
        if self.kind == "vit":
            _check_size("vision.width", self.width, "width")
            _check_size("vision.layers", self.layers, "layers")  # a ViT's depth: one int
            if self.image_size % self.patch_size:
                raise ConfigError(f"vision.image_size {self.image_size} is not a multiple of patch_size "
                                  f"{self.patch_size}: the patches must tile the image")
            _check_heads("vision", "vision.width", self.width, self.head_width)
            object.__setattr__(self, "mlp_width", _mlp_width("vision", self.mlp_width, self.width))
        else:
            if self.mlp_width != 0:
                raise ConfigError(f"vision.mlp_width {self.mlp_width!r} is for ViT towers; a ModifiedResNet has no "
                                  "transformer MLP (leave it 0)")
            _check_size("vision.width", self.width, "resnet_width")
            if not isinstance(self.layers, (tuple, list)) or len(self.layers) != 4:
                raise ConfigError(f"a ResNet vision config takes 4 stage depths, e.g. layers=(3, 4, 6, 3), got "
                                  f"{self.layers!r}")
            for i, blocks in enumerate(self.layers):
                _check_size(f"vision.layers[{i}]", blocks, "stage_blocks")
            if self.image_size % 32:
                raise ConfigError(f"a ModifiedResNet needs vision.image_size divisible by 32, got {self.image_size}")
            _check_heads("vision", "the attention pool's width (32 x vision.width)", self.width * 32,
                         self.head_width)
            object.__setattr__(self, "layers", tuple(self.layers))


@dataclass(frozen=True)
class TextConfig:
    context_length: int = 77  # tokens per caption, including <|startoftext|> and <|endoftext|>
    vocab_size: int = 49408  # OpenAI BPE: 512 byte tokens + 48,894 merges + 2 specials
    width: int = 512
    layers: int = 12
    head_width: int = 64  # heads = width // head_width
    mlp_width: int = 0  # hidden width of each block's MLP; 0 means 4 * width (every released CLIP's text tower)

    @property
    def heads(self) -> int:
        return self.width // self.head_width

    @property
    def mlp_hidden(self) -> int:
        """The MLP's hidden width (c_fc's output): mlp_width, or 4 * width when it is 0."""
        return self.mlp_width or 4 * self.width

    def __post_init__(self) -> None:
        for name in ("context_length", "vocab_size", "width", "layers"):
            _check_size(f"text.{name}", getattr(self, name), name)
        _check_heads("text", "text.width", self.width, self.head_width)
        object.__setattr__(self, "mlp_width", _mlp_width("text", self.mlp_width, self.width))


@dataclass(frozen=True)
class CLIPConfig:
    embed_dim: int  # joint embedding size (the projections' output)
    vision: VisionConfig
    text: TextConfig = field(default_factory=TextConfig)
    activation: Activation = "quick_gelu"  # OpenAI's models use QuickGELU; open_clip's own trainings often GELU

    def __post_init__(self) -> None:
        _check_size("embed_dim", self.embed_dim, "embed_dim")
        if self.activation not in typing.get_args(Activation):
            raise ConfigError(f"activation {self.activation!r} is not one of {', '.join(typing.get_args(Activation))}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Any) -> CLIPConfig:
        """The config `to_dict` wrote, every size checked against LIMITS (a ConfigError names the field)."""
        expected = 'expected {"embed_dim": ..., "vision": {...}, "text": {...}}'
        if not isinstance(d, dict):
            raise ConfigError(f"the model config is not a JSON object (found {type(d).__name__}); {expected}")
        for name in ("vision", "text"):
            if name in d and not isinstance(d[name], dict):
                raise ConfigError(f"{name} is not a JSON object (found {type(d[name]).__name__}); {expected}")
        try:
            vision = dict(d["vision"])
            if isinstance(vision.get("layers"), list):
                vision["layers"] = tuple(vision["layers"])
            return cls(embed_dim=d["embed_dim"], vision=VisionConfig(**vision), text=TextConfig(**d["text"]),
                       activation=d.get("activation", "quick_gelu"))
        except (KeyError, TypeError) as e:
            raise ConfigError(f"not a clipworks model config ({e}); expected keys embed_dim, vision, text") from e

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


def _rn(embed: int, size: int, layers: tuple[int, ...], width: int, text_width: int) -> CLIPConfig:
    return CLIPConfig(embed, VisionConfig(size, width, layers), TextConfig(width=text_width))


def _vit(embed: int, size: int, patch: int, width: int, layers: int, text_width: int) -> CLIPConfig:
    return CLIPConfig(embed, VisionConfig(size, width, layers, patch), TextConfig(width=text_width))


def _laion(embed: int, size: int, patch: int, width: int, layers: int, head_width: int, mlp_width: int,
           text_width: int, text_layers: int) -> CLIPConfig:
    """open_clip's own ViT-CLIPs (LAION, DataComp, DFN, MetaCLIP trainings): GELU, 64-wide text heads."""
    return CLIPConfig(embed, VisionConfig(size, width, layers, patch, head_width, mlp_width),
                      TextConfig(width=text_width, layers=text_layers), activation="gelu")


MODELS: dict[str, CLIPConfig] = {
    # The paper's models (Radford et al. 2021, Tables 19-20), shapes as in OpenAI's released weights.
    "RN50": _rn(1024, 224, (3, 4, 6, 3), 64, 512),
    "RN101": _rn(512, 224, (3, 4, 23, 3), 64, 512),
    "RN50x4": _rn(640, 288, (4, 6, 10, 6), 80, 640),
    "RN50x16": _rn(768, 384, (6, 8, 18, 8), 96, 768),
    "RN50x64": _rn(1024, 448, (3, 15, 36, 10), 128, 1024),
    "ViT-B-32": _vit(512, 224, 32, 768, 12, 512),
    "ViT-B-16": _vit(512, 224, 16, 768, 12, 512),
    "ViT-L-14": _vit(768, 224, 14, 1024, 24, 768),
    "ViT-L-14-336": _vit(768, 336, 14, 1024, 24, 768),
    # open_clip's architectures for its LAION / DataComp / DFN / MetaCLIP weights, named and shaped as its
    # model_configs (open_clip 3.3.0). Its mlp_ratio becomes int(width * mlp_ratio): 6144 for g, 8192 for bigG.
    # They were trained with GELU; open_clip's "-quickgelu" names (get_config accepts them) are the same shapes.
    "ViT-B-32-256": _laion(512, 256, 32, 768, 12, 64, 0, 512, 12),
    "ViT-B-16-plus-240": _laion(640, 240, 16, 896, 12, 64, 0, 640, 12),
    "ViT-H-14": _laion(1024, 224, 14, 1280, 32, 80, 0, 1024, 24),
    "ViT-H-14-378": _laion(1024, 378, 14, 1280, 32, 80, 0, 1024, 24),
    "ViT-g-14": _laion(1024, 224, 14, 1408, 40, 88, 6144, 1024, 24),
    "ViT-bigG-14": _laion(1280, 224, 14, 1664, 48, 104, 8192, 1280, 32),
    # CPU-sized models for the built-in world (64 px images, captions of < 32 tokens); they train in minutes here.
    # RN-Tiny, the demo's model, has a 2-layer text tower: the world's captions need no more, and its steps are
    # cheaper than with 4 layers, which buys the demo more steps in its time budget (bench/RESULTS.md).
    "ViT-Tiny": CLIPConfig(128, VisionConfig(64, 192, 4, 8), TextConfig(context_length=32, width=128, layers=4)),
    "RN-Tiny": CLIPConfig(128, VisionConfig(64, 16, (1, 1, 1, 1)), TextConfig(context_length=32, width=128, layers=2)),
}


def list_models() -> list[str]:
    """Names accepted by `create_model` and `get_config`."""
    return list(MODELS)


def registry_name(config: CLIPConfig) -> str | None:
    """The registry model with these shapes (any activation), or None for a custom architecture."""
    return next((name for name, cfg in MODELS.items()
                 if dataclasses.replace(cfg, activation=config.activation) == config), None)


def get_config(name: str) -> CLIPConfig:
    if name in MODELS:
        return MODELS[name]
    # Accept OpenAI's spelling ("ViT-B/32", "ViT-L/14@336px") for the same models.
    alias = name.replace("/", "-").replace("@336px", "-336")
    if alias in MODELS:
        return MODELS[alias]
    # open_clip's "NAME-quickgelu": NAME's shapes with QuickGELU (e.g. its DFN and MetaCLIP weights).
    base = alias.removesuffix("-quickgelu")
    if base != alias and base in MODELS:
        return dataclasses.replace(MODELS[base], activation="quick_gelu")
    close = difflib.get_close_matches(name, MODELS, n=3, cutoff=0.4)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise ConfigError(f"unknown model '{name}'.{hint} Known models: {', '.join(MODELS)}.")
