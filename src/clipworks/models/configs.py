"""Model sizes as frozen dataclasses in one registry.

The nine paper architectures are Table 19/20 of Radford et al. (2021) with the exact shapes of OpenAI's released
checkpoints (their `build_model` reads these numbers back out of the state dict). Small CPU-sized configs are ours;
they keep the same code path and only change sizes. Variants are made with `dataclasses.replace`, never with flags.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
from dataclasses import dataclass, field
from typing import Any, Literal

from ..errors import ConfigError

Activation = Literal["quick_gelu", "gelu"]


@dataclass(frozen=True)
class VisionConfig:
    image_size: int  # input resolution in pixels (square)
    width: int  # ViT: token width; ResNet: stem width (64 for RN50); the attention pool is width * 32 wide
    layers: int | tuple[int, ...]  # ViT: transformer depth; ResNet: Bottleneck blocks per stage (4 stages)
    patch_size: int = 0  # ViT patch size in pixels; 0 means ModifiedResNet
    head_width: int = 64  # heads = width // head_width (ViT) or width * 32 // head_width (ResNet), as OpenAI

    @property
    def kind(self) -> Literal["vit", "resnet"]:
        return "vit" if self.patch_size else "resnet"

    @property
    def heads(self) -> int:
        return (self.width if self.kind == "vit" else self.width * 32) // self.head_width

    def __post_init__(self) -> None:
        if self.kind == "vit":
            if not isinstance(self.layers, int):
                raise ValueError("a ViT vision config takes an int `layers` (transformer depth)")
            if self.image_size % self.patch_size:
                raise ValueError(f"image_size {self.image_size} is not a multiple of patch_size {self.patch_size}")
        else:
            if isinstance(self.layers, int) or len(self.layers) != 4:
                raise ValueError("a ResNet vision config takes 4 stage depths, e.g. layers=(3, 4, 6, 3)")
            if self.image_size % 32:
                raise ValueError(f"a ModifiedResNet needs image_size divisible by 32, got {self.image_size}")
            object.__setattr__(self, "layers", tuple(self.layers))


@dataclass(frozen=True)
class TextConfig:
    context_length: int = 77  # tokens per caption, including <|startoftext|> and <|endoftext|>
    vocab_size: int = 49408  # OpenAI BPE: 512 byte tokens + 48,894 merges + 2 specials
    width: int = 512
    layers: int = 12
    head_width: int = 64  # heads = width // head_width

    @property
    def heads(self) -> int:
        return self.width // self.head_width


@dataclass(frozen=True)
class CLIPConfig:
    embed_dim: int  # joint embedding size (the projections' output)
    vision: VisionConfig
    text: TextConfig = field(default_factory=TextConfig)
    activation: Activation = "quick_gelu"  # OpenAI's models use QuickGELU; open_clip's own trainings often GELU

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CLIPConfig:
        try:
            vision = dict(d["vision"])
            if isinstance(vision.get("layers"), list):
                vision["layers"] = tuple(vision["layers"])
            return cls(embed_dim=int(d["embed_dim"]), vision=VisionConfig(**vision), text=TextConfig(**d["text"]),
                       activation=d.get("activation", "quick_gelu"))
        except (KeyError, TypeError) as e:
            raise ValueError(f"not a clipworks model config ({e}); expected keys embed_dim, vision, text") from e

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


def _rn(embed: int, size: int, layers: tuple[int, ...], width: int, text_width: int) -> CLIPConfig:
    return CLIPConfig(embed, VisionConfig(size, width, layers), TextConfig(width=text_width))


def _vit(embed: int, size: int, patch: int, width: int, layers: int, text_width: int) -> CLIPConfig:
    return CLIPConfig(embed, VisionConfig(size, width, layers, patch), TextConfig(width=text_width))


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
    close = difflib.get_close_matches(name, MODELS, n=3, cutoff=0.4)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise ConfigError(f"unknown model '{name}'.{hint} Known models: {', '.join(MODELS)}.")
