"""Foreign checkpoint formats, converted at the edge into OpenAI's state-dict layout (the only one `CLIP` knows).

Reads, without running any code stored in the file:
- OpenAI releases: TorchScript `.pt` archives (as `clip.load` downloads them) and plain `torch.save(state_dict)` files;
- open_clip: the `CLIP` layout (OpenAI's keys), the `CustomTextCLIP` layout (text tower under `text.`), DDP `module.`
  prefixes, training checkpoints `{"state_dict": ..., "epoch": ...}`, `.pt`/`.bin`/`.safetensors`, and an
  `open_clip_config.json` beside the weights (its `model_cfg` with `head_width`, `mlp_ratio`, `quick_gelu`, and its
  `preprocess_cfg`: mean, std, interpolation, resize mode);
- HF transformers `CLIPModel` directories (`config.json` + `model.safetensors` or `pytorch_model.bin`, and the
  image mean and std of a `preprocessor_config.json` beside them).

Safety policy: pickles load with `torch.load(weights_only=True)`; TorchScript archives are read by a restricted
unpickler that only rebuilds tensors and plain containers (modules become dicts of attributes), so the archive's
`code/` is never executed. `torch.jit.load` is used only with `trust_code=True`. A file that would need anything
else is refused with a `CheckpointError`.

Without a config the architecture is inferred from tensor shapes as OpenAI's `build_model` does (and the MLP width
from `c_fc`'s); the activation cannot be seen in the weights, so it is assumed (QuickGELU, OpenAI's) and said so.
"""

from __future__ import annotations

import json
import pickle
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from ..errors import CheckpointError
from ..models.configs import CLIPConfig, TextConfig, VisionConfig
from ..models.transforms import Preprocess

OPEN_CLIP_CONFIG = "open_clip_config.json"
HF_PREPROCESSOR = "preprocessor_config.json"
OPEN_CLIP_WEIGHTS = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
HF_WEIGHTS = ("model.safetensors", "pytorch_model.bin")
HF_TOWERS = ("vision_config", "text_config")
# Entries some writers keep in a state dict that are not weights: OpenAI's old buffers, HF's position ids, masks.
IGNORED = re.compile(r"(^|\.)(input_resolution|context_length|vocab_size|position_ids|attn_mask)$")


@dataclass
class Checkpoint:
    """Weights in OpenAI's layout plus the architecture they need and where both came from."""

    state: dict[str, torch.Tensor]
    config: CLIPConfig
    format: str  # human-readable source format, e.g. "OpenAI TorchScript archive"
    notes: list[str]  # assumptions made while reading (printed on load)
    preprocess: Preprocess | None = None  # the image preprocessing the file names; None: OpenAI's


# ---------------------------------------------------------------- reading files


def _refused(path: Path, detail: str, *, torchscript: bool = False) -> CheckpointError:
    hint = (" Load it with trust_code=True (--trust-code) only if you trust its author" if torchscript else
            " clipworks never unpickles arbitrary objects; re-save the weights as a plain state dict or safetensors")
    return CheckpointError(f"{path}: refused to load: unpickling it would run code ({detail}); only tensors and "
                           f"plain containers are allowed.{hint}")


def _read_pickle(path: Path) -> Any:
    """`torch.load` restricted to tensors and plain data: a pickle that would import anything else is refused."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "GLOBAL" in str(e) or "weights_only" in str(e).lower():
            found = re.search(r"GLOBAL ([\w.]+)", str(e))
            raise _refused(path, f"it references {found.group(1) if found else 'a callable'}") from None
        raise CheckpointError(f"{path}: corrupt or truncated PyTorch file ({e}); not a clipworks checkpoint or a "
                              "complete CLIP weights file") from None
    except (EOFError, RuntimeError, ValueError, OSError) as e:
        raise CheckpointError(f"{path}: corrupt or truncated PyTorch file ({type(e).__name__}: {e}); not a "
                              "clipworks checkpoint or a complete CLIP weights file") from None


class _ModuleRecord(dict):
    """A TorchScript module rebuilt as its attribute dict (submodules, parameters, buffers); nothing callable."""

    def __setstate__(self, state: dict) -> None:
        self.update(state)


def _rebuild_tensor(storage: torch.Tensor, offset: int, size: tuple, stride: tuple, *args: Any) -> torch.Tensor:
    return torch.as_strided(storage, size, stride, offset).clone()


_STORAGE_DTYPES = {"FloatStorage": torch.float32, "HalfStorage": torch.float16, "BFloat16Storage": torch.bfloat16,
                   "DoubleStorage": torch.float64, "LongStorage": torch.int64, "IntStorage": torch.int32,
                   "ShortStorage": torch.int16, "CharStorage": torch.int8, "ByteStorage": torch.uint8,
                   "BoolStorage": torch.bool}


class _TorchScriptUnpickler(pickle.Unpickler):
    """Unpickles a TorchScript archive's data.pkl allowing only tensor rebuilding and containers."""

    def __init__(self, file: Any, archive: zipfile.ZipFile, prefix: str, path: Path):
        super().__init__(file)
        self.archive, self.prefix, self.path = archive, prefix, path
        self.storages: dict[str, torch.Tensor] = {}

    def find_class(self, module: str, name: str) -> Any:
        if module == "__torch__" or module.startswith("__torch__."):
            return _ModuleRecord  # a scripted module class: keep its attributes, never its code
        if module == "torch" and name in _STORAGE_DTYPES:
            return _STORAGE_DTYPES[name]  # the storage record only needs the element type
        allowed = {("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
                   ("torch._utils", "_rebuild_parameter"): lambda data, *args: data,
                   ("collections", "OrderedDict"): dict,
                   ("torch.jit._pickle", "restore_type_tag"): lambda value, tag: value}
        allowed.update({("torch.jit._pickle", f"build_{kind}list"): list
                        for kind in ("int", "float", "bool", "double")})
        if (module, name) not in allowed:
            raise _refused(self.path, f"it references {module}.{name}", torchscript=True)
        return allowed[(module, name)]

    def persistent_load(self, pid: Any) -> torch.Tensor:
        # ('storage', dtype, key, location, numel): the raw bytes are the archive member <prefix>/data/<key>.
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise CheckpointError(f"{self.path}: unexpected storage record {pid!r} in a TorchScript archive")
        _, dtype, key, _, numel = pid
        if key not in self.storages:
            raw = bytearray(self.archive.read(f"{self.prefix}data/{key}"))
            self.storages[key] = torch.frombuffer(raw, dtype=dtype)[:numel] if raw else torch.empty(0, dtype=dtype)
        return self.storages[key]


def _flatten(record: dict, prefix: str = "") -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for name, value in record.items():
        if isinstance(value, torch.Tensor):
            out[prefix + name] = value
        elif isinstance(value, _ModuleRecord):
            out.update(_flatten(value, f"{prefix}{name}."))
    return out


def _read_torchscript(path: Path, archive: zipfile.ZipFile, prefix: str, trust_code: bool) -> dict[str, torch.Tensor]:
    if trust_code:
        return dict(torch.jit.load(str(path), map_location="cpu").state_dict())
    with archive.open(f"{prefix}data.pkl") as f:
        root = _TorchScriptUnpickler(f, archive, prefix, path).load()
    if not isinstance(root, _ModuleRecord):
        raise CheckpointError(f"{path}: a TorchScript archive whose root is not a module (expected OpenAI's CLIP)")
    return _flatten(root)


def read_weights(path: Path, *, trust_code: bool = False) -> tuple[dict[str, Any], str]:
    """(raw state dict or wrapper, container kind) from one file, detected by content, not by extension."""
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read ({e.strerror})") from None
    if head[:4] == b"PK\x03\x04":  # a zip: TorchScript archive or torch.save's default format
        try:
            archive = zipfile.ZipFile(path)
            names = archive.namelist()
        except (zipfile.BadZipFile, OSError) as e:
            raise CheckpointError(f"{path}: corrupt or truncated archive ({e}); expected a complete checkpoint") \
                from None
        data = next((n for n in names if n.endswith("data.pkl") and n.count("/") == 1), None)
        if data is None:
            raise CheckpointError(f"{path}: a zip file that is not a PyTorch checkpoint (no data.pkl)")
        prefix = data[: -len("data.pkl")]
        if any(n.startswith(prefix + "code/") for n in names):
            try:
                return _read_torchscript(path, archive, prefix, trust_code), "TorchScript archive"
            except (zipfile.BadZipFile, KeyError, EOFError, pickle.UnpicklingError) as e:
                raise CheckpointError(f"{path}: corrupt or truncated TorchScript archive ({e})") from None
        return _read_pickle(path), "PyTorch pickle"
    if head[:1] == b"\x80" or head[:2] == b"\x8a\x0a":  # a pickle protocol header, or torch's legacy magic number
        return _read_pickle(path), "PyTorch pickle"
    if len(head) >= 9 and head[8:9] == b"{":  # safetensors: 8-byte header length, then the JSON header
        try:
            return load_file(str(path)), "safetensors"
        except (SafetensorError, OSError) as e:
            raise CheckpointError(f"{path}: unreadable safetensors file ({e}); it may be truncated") from None
    kind = "a JPEG image" if head[:3] == b"\xff\xd8\xff" else "a PNG image" if head[:4] == b"\x89PNG" else \
        "an empty file" if not head else "not a weights file"
    raise CheckpointError(f"{path}: {kind}; expected CLIP weights (.safetensors, a PyTorch .pt/.bin, an OpenAI "
                          "TorchScript archive) or a checkpoint directory")


# ---------------------------------------------------------------- key layouts


def _unwrap(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    """The state dict inside a training checkpoint ({"state_dict": ...}), without DDP's `module.` prefix."""
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not any(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path}: holds no state dict (expected a dict of tensors, or one under 'state_dict')")
    return {k.removeprefix("module."): v for k, v in obj.items() if isinstance(v, torch.Tensor)}


_TEXT_TOWER = ("token_embedding.", "positional_embedding", "transformer.", "ln_final.", "text_projection")


def from_open_clip(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """CustomTextCLIP's `text.` tower moved to the top level (its `CLIP` layout already is OpenAI's)."""
    return {k.removeprefix("text.") if k.startswith("text.") and k[5:].startswith(_TEXT_TOWER) else k: v
            for k, v in state.items()}


# Our (OpenAI's) names -> HF CLIPModel's, shared with the HF writer in export.py. Blocks: HF splits `attn.in_proj_*`
# into q/k/v; both projections are stored transposed as `visual_projection.weight` / `text_projection.weight`.
HF_NAMES = {"token_embedding.weight": "text_model.embeddings.token_embedding.weight",
            "positional_embedding": "text_model.embeddings.position_embedding.weight",
            "visual.class_embedding": "vision_model.embeddings.class_embedding",
            "visual.conv1.weight": "vision_model.embeddings.patch_embedding.weight",
            "visual.positional_embedding": "vision_model.embeddings.position_embedding.weight",
            "logit_scale": "logit_scale"} | {
    f"{ours}.{p}": f"{hf}.{p}" for ours, hf in (("ln_final", "text_model.final_layer_norm"),
                                                 ("visual.ln_pre", "vision_model.pre_layrnorm"),  # (sic)
                                                 ("visual.ln_post", "vision_model.post_layernorm"))
    for p in ("weight", "bias")}
HF_BLOCK = {"attn.out_proj": "self_attn.out_proj", "ln_1": "layer_norm1", "ln_2": "layer_norm2",
            "mlp.c_fc": "mlp.fc1", "mlp.c_proj": "mlp.fc2"}
_HF_TOP = {hf: ours for ours, hf in HF_NAMES.items()}
_HF_BLOCK = {hf: ours for ours, hf in HF_BLOCK.items()}
_HF_LAYER = re.compile(r"(text|vision)_model\.encoder\.layers\.(\d+)\.(.+)\.(weight|bias)$")


def from_hf(state: dict[str, torch.Tensor], path: Path) -> dict[str, torch.Tensor]:
    """HF CLIPModel keys -> OpenAI's: q/k/v concatenated into in_proj (q, k, v order), projections transposed."""
    out: dict[str, torch.Tensor] = {}
    qkv: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
    for key, value in state.items():
        if IGNORED.search(key):
            continue
        if key in _HF_TOP:
            out[_HF_TOP[key]] = value
        elif key == "visual_projection.weight":
            out["visual.proj"] = value.t().contiguous()
        elif key == "text_projection.weight":
            out["text_projection"] = value.t().contiguous()
        elif m := _HF_LAYER.match(key):
            tower, index, module, kind = m.groups()
            base = f"{'visual.' if tower == 'vision' else ''}transformer.resblocks.{index}."
            if module in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"):
                qkv.setdefault((base, kind), {})[module[-6]] = value
            elif module in _HF_BLOCK:
                out[f"{base}{_HF_BLOCK[module]}.{kind}"] = value
            else:
                raise CheckpointError(f"{path}: unexpected HF CLIP weight '{key}'")
        else:
            raise CheckpointError(f"{path}: unexpected HF CLIP weight '{key}' (expected a transformers CLIPModel)")
    for (base, kind), parts in qkv.items():
        if set(parts) != {"q", "k", "v"}:
            raise CheckpointError(f"{path}: {base} lacks one of q_proj/k_proj/v_proj")
        out[f"{base}attn.in_proj_{kind}"] = torch.cat([parts["q"], parts["k"], parts["v"]])
    return out


# ---------------------------------------------------------------- architecture


def _count(state: dict[str, torch.Tensor], pattern: str) -> int:
    return len({m.group(1) for k in state if (m := re.match(pattern, k))})


def infer_config(state: dict[str, torch.Tensor], *, activation: str = "quick_gelu", vision_head_width: int = 64,
                 text_head_width: int = 64) -> CLIPConfig:
    """The architecture of an OpenAI-layout state dict, read from tensor shapes as OpenAI's `build_model` does.

    Head counts are invisible in shapes; OpenAI's models use 64-wide heads, which is the default. MLP widths are
    c_fc's output width in the first block of each tower.
    """
    if "visual.proj" in state:
        conv = state["visual.conv1.weight"]  # (width, 3, patch, patch)
        grid = round((state["visual.positional_embedding"].shape[0] - 1) ** 0.5)
        vision = VisionConfig(image_size=conv.shape[-1] * grid, width=conv.shape[0], patch_size=conv.shape[-1],
                              layers=_count(state, r"visual\.transformer\.resblocks\.(\d+)\."),
                              head_width=vision_head_width,
                              mlp_width=state["visual.transformer.resblocks.0.mlp.c_fc.weight"].shape[0])
    else:
        grid = round((state["visual.attnpool.positional_embedding"].shape[0] - 1) ** 0.5)
        stages = tuple(_count(state, rf"visual\.layer{i}\.(\d+)\.") for i in range(1, 5))
        vision = VisionConfig(image_size=grid * 32, width=state["visual.layer1.0.conv1.weight"].shape[0],
                              layers=stages, head_width=vision_head_width)
    width = state["ln_final.weight"].shape[0]
    text = TextConfig(context_length=state["positional_embedding"].shape[0],
                      vocab_size=state["token_embedding.weight"].shape[0], width=width,
                      layers=_count(state, r"transformer\.resblocks\.(\d+)\."), head_width=text_head_width,
                      mlp_width=state["transformer.resblocks.0.mlp.c_fc.weight"].shape[0])
    return CLIPConfig(embed_dim=state["text_projection"].shape[1], vision=vision, text=text, activation=activation)


def _mlp_width(tower: dict, width: int) -> int:
    """open_clip's MLP width: int(width * mlp_ratio), mlp_ratio 4.0 unless the tower config says otherwise."""
    ratio = tower.get("mlp_ratio", 4.0)
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not ratio > 0:
        raise ValueError(f"mlp_ratio {ratio!r} is not a positive number")
    return int(width * ratio)


def _open_clip_config(file: Path, activation: str | None) -> tuple[CLIPConfig, Preprocess] | None:
    """CLIPConfig from open_clip_config.json's model_cfg and Preprocess from its preprocess_cfg, when the file
    exists."""
    if not file.is_file():
        return None
    try:
        meta = json.loads(file.read_text())
        cfg = meta.get("model_cfg", meta)
        v, t = cfg["vision_cfg"], cfg["text_cfg"]
        if (heads := int(t.get("heads", 8))) < 1:
            raise ValueError(f"text_cfg.heads = {heads}; at least one attention head is needed")
        layers = tuple(v["layers"]) if isinstance(v["layers"], list) else int(v["layers"])
        v_width, t_width = int(v.get("width", 768)), int(t.get("width", 512))
        patch = int(v.get("patch_size") or 0)
        vision = VisionConfig(image_size=int(v.get("image_size", 224)), width=v_width, layers=layers,
                              patch_size=patch, head_width=int(v.get("head_width", 64)),
                              mlp_width=_mlp_width(v, v_width) if patch else 0)
        text = TextConfig(context_length=int(t.get("context_length", 77)), vocab_size=int(t.get("vocab_size", 49408)),
                          width=t_width, layers=int(t.get("layers", 12)), head_width=t_width // heads,
                          mlp_width=_mlp_width(t, t_width))
        chosen = activation or ("quick_gelu" if cfg.get("quick_gelu") else "gelu")
        config = CLIPConfig(int(cfg["embed_dim"]), vision, text, chosen)
        pp = meta.get("preprocess_cfg", {})
        defaults = Preprocess()
        preprocess = Preprocess(mean=pp.get("mean", defaults.mean), std=pp.get("std", defaults.std),
                                resize_mode=pp.get("resize_mode", defaults.resize_mode),
                                interpolation=pp.get("interpolation", defaults.interpolation))
        return config, preprocess
    except (KeyError, TypeError, ValueError, AttributeError) as e:  # ValueError: bad JSON or a size out of bounds
        raise CheckpointError(f"{file}: not an open_clip model config ({e}); expected model_cfg with embed_dim, "
                              "vision_cfg, text_cfg (and optionally preprocess_cfg)") from None


def _hf_preprocess(file: Path) -> Preprocess | None:
    """Mean and std from an HF `preprocessor_config.json` (CLIPImageProcessor), when the file exists."""
    if not file.is_file():
        return None
    try:
        meta = json.loads(file.read_text())
        defaults = Preprocess()
        return Preprocess(mean=meta.get("image_mean", defaults.mean), std=meta.get("image_std", defaults.std))
    except (TypeError, ValueError, AttributeError) as e:  # ValueError: bad JSON or not three numbers
        raise CheckpointError(f"{file}: not an HF image processor config ({e}); expected image_mean and image_std "
                              "as three numbers each") from None


def _hf_config(file: Path, cfg: dict, state: dict[str, torch.Tensor], activation: str | None) -> CLIPConfig:
    """Architecture from the weights' shapes; head counts (HF defaults: 12 vision, 8 text) and activation from cfg."""
    v, t = (cfg.get(k, {}) for k in HF_TOWERS)
    acts = {str(v.get("hidden_act", "quick_gelu")), str(t.get("hidden_act", "quick_gelu"))}  # str: never unhashable
    if not acts <= {"quick_gelu", "gelu"} or len(acts) != 1:
        raise CheckpointError(f"{file}: hidden_act {sorted(acts)} is not supported (expected one of quick_gelu, gelu "
                              "shared by both towers)")
    head_widths = {}
    for name, sub, key, default, prefix in (("vision", v, "visual.conv1.weight", 12, "visual."),
                                            ("text", t, "ln_final.weight", 8, "")):
        inter, fc = sub.get("intermediate_size"), state.get(f"{prefix}transformer.resblocks.0.mlp.c_fc.weight")
        if inter is not None and fc is not None and inter != fc.shape[0]:
            raise CheckpointError(f"{file}: {name}_config.intermediate_size {inter!r} disagrees with the weights' MLP "
                                  f"width {fc.shape[0]}")
        heads, width = sub.get("num_attention_heads", default), state[key].shape[0]
        if type(heads) is not int or heads < 1 or width % heads:
            raise CheckpointError(f"{file}: {name}_config.num_attention_heads {heads!r} does not split the {name} "
                                  f"tower's width {width} into equal heads")
        head_widths[f"{name}_head_width"] = width // heads
    return _inferred(file, state, activation=activation or acts.pop(), **head_widths)


def _inferred(path: Path, state: dict[str, torch.Tensor], **kwargs: Any) -> CLIPConfig:
    try:
        return infer_config(state, **kwargs)
    except (KeyError, IndexError, TypeError, ValueError) as e:  # a shape it cannot read, a size outside LIMITS
        raise CheckpointError(f"{path}: cannot infer the architecture from the weights ({e})") from None


def _require_keys(state: dict[str, torch.Tensor], path: Path) -> None:
    needed = ("text_projection", "token_embedding.weight", "positional_embedding", "ln_final.weight")
    has_visual = "visual.proj" in state or "visual.attnpool.positional_embedding" in state
    if not has_visual or not all(k in state for k in needed):
        sample = ", ".join(list(state)[:3])
        raise CheckpointError(f"{path}: unknown state-dict layout (keys like {sample}); expected CLIP weights in "
                              "OpenAI, open_clip or HF transformers layout")


def read_foreign(path: Path, *, activation: str | None = None, trust_code: bool = False) -> Checkpoint:
    """Any supported non-clipworks checkpoint (file or directory) as OpenAI-layout weights with their config."""
    notes: list[str] = []
    if path.is_file() and path.name in HF_WEIGHTS and (path.parent / "config.json").is_file():
        path = path.parent  # an HF weights file: its config.json beside it has the head counts and activation
    directory = path if path.is_dir() else path.parent
    if path.is_dir():
        hf_config = path / "config.json"
        if hf_config.is_file() and any((path / w).is_file() for w in HF_WEIGHTS):
            try:
                meta = json.loads(hf_config.read_text())
            except ValueError as e:  # not JSON, or not UTF-8
                raise CheckpointError(f"{hf_config}: not valid JSON ({e}); not a clipworks config nor an HF CLIPModel "
                                      "config") from None
            if not isinstance(meta, dict) or not all(isinstance(meta.get(k, {}), dict) for k in HF_TOWERS):
                raise CheckpointError(f"{hf_config}: not a JSON object with vision_config and text_config objects "
                                      "(expected a clipworks config or an HF CLIPModel config)")
            if meta.get("model_type") != "clip":
                raise CheckpointError(f"{hf_config}: model_type {meta.get('model_type')!r} is not 'clip' (expected an "
                                      "HF transformers CLIPModel directory)")
            file = next(path / w for w in HF_WEIGHTS if (path / w).is_file())
            state = from_hf(_unwrap(read_weights(file, trust_code=trust_code)[0], file), file)
            if "visual.proj" not in state:
                raise CheckpointError(f"{file}: no vision projection found (expected an HF CLIPModel)")
            _require_keys(state, file)
            config = _hf_config(hf_config, meta, state, activation)
            return Checkpoint(state, config, "HF transformers CLIPModel", notes, _hf_preprocess(path / HF_PREPROCESSOR))
        file = next((path / w for w in OPEN_CLIP_WEIGHTS if (path / w).is_file()), None)
        if file is None:
            raise CheckpointError(f"{path}: no weights found (expected model.safetensors + config.json from clipworks "
                                  f"or HF transformers, or {' / '.join(OPEN_CLIP_WEIGHTS)} from open_clip)")
        path = file
    raw, container = read_weights(path, trust_code=trust_code)
    state = _unwrap(raw, path)
    if any(k.startswith(("vision_model.", "text_model.")) for k in state):
        state = from_hf(state, path)
        fmt = "HF transformers CLIPModel weights (no config.json)"
    elif any(k.startswith("text.") for k in state):
        state, fmt = from_open_clip(state), f"open_clip CustomTextCLIP {container}"
    elif container == "TorchScript archive":
        fmt = "OpenAI TorchScript archive"
    else:
        fmt = f"OpenAI/open_clip {container}"
    state = {k: v for k, v in state.items() if not IGNORED.search(k)}
    _require_keys(state, path)
    found, preprocess = _open_clip_config(directory / OPEN_CLIP_CONFIG, activation), None
    if found is not None:
        (config, preprocess), fmt = found, f"{fmt} with {OPEN_CLIP_CONFIG}"
    else:
        config = _inferred(path, state, activation=activation or "quick_gelu")
        if activation is None:
            assumed = "OpenAI's weights use it" if container == "TorchScript archive" else \
                "as OpenAI's; open_clip models trained with GELU need activation='gelu'"
            notes.append(f"no config: activation assumed quick_gelu ({assumed})")
    return Checkpoint(state, config, fmt, notes, preprocess)
