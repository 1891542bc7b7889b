"""Saving and loading clipworks checkpoints.

A clipworks checkpoint is a directory:
    model.safetensors     the weights, in OpenAI's state-dict layout (no pickle, no code execution on load)
    config.json           {"model": CLIPConfig as a dict, "step": ..., ...}
    training_state.pt     optional: optimizer state, step, RNG states (tensors and plain data; loaded weights_only)
Writes are atomic: everything goes to a temporary sibling directory that is renamed into place, so a crash mid-save
never leaves a half-written checkpoint. A run directory holds `checkpoints/step_NNNNNNN/` and a `latest` pointer.

`load` / `load_model` also take every foreign format `formats.py` reads (OpenAI, open_clip, HF transformers) and
can resize positional embeddings (`resize`) and change dtype on the way in.

Nothing is built from a file before it is checked: every size in its config against the registry's LIMITS, then every
tensor's shape (for a native checkpoint from the safetensors header, before any data is read) against the shapes
that config gives (`expected_shapes`, arithmetic: no model is built). A file that fails either is one
CheckpointError naming the file and what is wrong.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from ..errors import CheckpointError, ConfigError, counted
from ..models.clip import CLIP
from ..models.configs import CLIPConfig, registry_name
from ..models.inference import optimize_for_inference
from ..models.transforms import image_transform
from .files import nbytes, torch_save, write_dir_atomic
from .formats import Checkpoint, read_foreign
from .pretrained import find, locate

WEIGHTS = "model.safetensors"
CONFIG = "config.json"
TRAINING_STATE = "training_state.pt"
LATEST = "latest"


def save_checkpoint(path: str | Path, model: CLIP, *, training_state: dict[str, Any] | None = None,
                    metadata: dict[str, Any] | None = None) -> Path:
    """Write a checkpoint directory at `path` atomically (replacing an existing one)."""
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}

    def write(tmp: Path) -> None:
        save_file(state, str(tmp / WEIGHTS))
        (tmp / CONFIG).write_text(json.dumps({"model": model.config.to_dict(), **(metadata or {})}, indent=2))
        if training_state is not None:
            torch_save(training_state, tmp / TRAINING_STATE)

    return write_dir_atomic(path, write, needed=nbytes(state) + nbytes(training_state))


def remove_stale_temporaries(directory: Path) -> None:
    """Delete the temporary files and directories that an interrupted `save_checkpoint` or pointer write left."""
    if directory.is_dir():
        for stale in directory.glob(".*"):
            if ".tmp-" in stale.name or stale.name.endswith(".old") or stale.name.startswith(f".{LATEST}."):
                shutil.rmtree(stale) if stale.is_dir() else stale.unlink()


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint directory from: a checkpoint dir, its model.safetensors, or a run dir (its latest checkpoint)."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such file or directory (expected a clipworks checkpoint directory)")
    if path.is_file():
        if path.name == WEIGHTS or path.suffix == ".safetensors":
            path = path.parent
        else:
            raise CheckpointError(f"{path}: not a clipworks checkpoint (expected a directory with {WEIGHTS} and "
                                  f"{CONFIG}, or a training run directory)")
    for candidate in (path, path / "checkpoints"):
        pointer = candidate / LATEST
        if pointer.is_file():
            path = candidate / pointer.read_text().strip()
            break
    if not (path / WEIGHTS).is_file() or not (path / CONFIG).is_file():
        raise CheckpointError(f"{path}: missing {WEIGHTS} or {CONFIG} (expected a clipworks checkpoint directory)")
    return path


def is_native(path: str | Path) -> bool:
    """True for a clipworks checkpoint dir, its model.safetensors, or a run dir (not for HF/open_clip layouts)."""
    path = Path(path)
    try:
        path = resolve_checkpoint(path)
        meta = json.loads((path / CONFIG).read_text())
    except (CheckpointError, ValueError, OSError):  # ValueError: not JSON, or not UTF-8
        return False
    return isinstance(meta, dict) and "model" in meta


def check_shapes(found: Mapping[str, tuple[int, ...]], expected: Mapping[str, tuple[int, ...]], what: str) -> None:
    """A CheckpointError starting with `what`, naming the first tensor that is missing from `found`, shaped unlike
    `expected` says, or not expected at all; nothing if the two agree exactly."""
    problems = [f"size mismatch for {name}: expected {shape} from the config, found {found[name]}" if name in found
                else f"missing tensor {name} of shape {shape}" for name, shape in expected.items()
                if found.get(name) != shape]
    problems += [f"unexpected tensor {name} of shape {shape}" for name, shape in found.items() if name not in expected]
    if problems:
        more = f"; {counted(len(problems) - 1, 'more difference')}" if len(problems) > 1 else ""
        raise CheckpointError(f"{what} ({problems[0]}{more}); expected one consistent CLIP state dict")


def _transformer_shapes(prefix: str, width: int, layers: int, hidden: int) -> dict[str, tuple[int, ...]]:
    """Pre-LN residual blocks (`layers.py`): fused q/k/v in-projection, an MLP `hidden` wide."""
    block = {"ln_1.weight": (width,), "ln_1.bias": (width,), "attn.in_proj_weight": (3 * width, width),
             "attn.in_proj_bias": (3 * width,), "attn.out_proj.weight": (width, width),
             "attn.out_proj.bias": (width,), "ln_2.weight": (width,), "ln_2.bias": (width,),
             "mlp.c_fc.weight": (hidden, width), "mlp.c_fc.bias": (hidden,),
             "mlp.c_proj.weight": (width, hidden), "mlp.c_proj.bias": (width,)}
    return {f"{prefix}resblocks.{i}.{name}": shape for i in range(layers) for name, shape in block.items()}


def _batch_norm_shapes(prefix: str, channels: int) -> dict[str, tuple[int, ...]]:
    return {f"{prefix}.{name}": (channels,) for name in ("weight", "bias", "running_mean", "running_var")} | {
        f"{prefix}.num_batches_tracked": ()}


def _resnet_shapes(width: int, layers: tuple[int, ...], image_size: int, embed_dim: int) -> dict[str, tuple[int, ...]]:
    """ModifiedResNet (`vision.py`, OpenAI's layout): 3-conv stem, Bottleneck stages 4x wide, attention pool."""
    shapes: dict[str, tuple[int, ...]] = {}
    stem = [(width // 2, 3), (width // 2, width // 2), (width, width // 2)]
    for i, (out, inp) in enumerate(stem, 1):
        shapes |= {f"visual.conv{i}.weight": (out, inp, 3, 3)} | _batch_norm_shapes(f"visual.bn{i}", out)
    inplanes = width
    for stage, blocks in enumerate(layers):
        planes = width * 2**stage
        for b in range(blocks):
            p = f"visual.layer{stage + 1}.{b}"
            convs = [(planes, inplanes, 1), (planes, planes, 3), (planes * 4, planes, 1)]
            for i, (out, inp, k) in enumerate(convs, 1):
                shapes |= {f"{p}.conv{i}.weight": (out, inp, k, k)} | _batch_norm_shapes(f"{p}.bn{i}", out)
            if b == 0:  # the first block of every stage changes width (or stride): a downsample path
                shapes |= {f"{p}.downsample.0.weight": (planes * 4, inplanes, 1, 1)}
                shapes |= _batch_norm_shapes(f"{p}.downsample.1", planes * 4)
            inplanes = planes * 4
    pool = width * 32
    shapes["visual.attnpool.positional_embedding"] = ((image_size // 32) ** 2 + 1, pool)
    for name in ("q_proj", "k_proj", "v_proj"):
        shapes |= {f"visual.attnpool.{name}.weight": (pool, pool), f"visual.attnpool.{name}.bias": (pool,)}
    return shapes | {"visual.attnpool.c_proj.weight": (embed_dim, pool), "visual.attnpool.c_proj.bias": (embed_dim,)}


def expected_shapes(config: CLIPConfig) -> dict[str, tuple[int, ...]]:
    """The shape of every tensor in the state dict of `CLIP(config)`, by arithmetic on the config.

    Equal to the shapes of a model built on the meta device (a test checks every registry model and variants), but
    instant: a fresh process's first meta-device op imports torch's meta kernels and dynamo (about a second), which
    a refusal of a bad checkpoint should not wait for.
    """
    v, t = config.vision, config.text
    shapes: dict[str, tuple[int, ...]] = {
        "positional_embedding": (t.context_length, t.width), "text_projection": (t.width, config.embed_dim),
        "logit_scale": (), "token_embedding.weight": (t.vocab_size, t.width),
        "ln_final.weight": (t.width,), "ln_final.bias": (t.width,)}
    shapes |= _transformer_shapes("transformer.", t.width, t.layers, t.mlp_hidden)
    if v.kind == "resnet":
        return shapes | _resnet_shapes(v.width, v.layers, v.image_size, config.embed_dim)
    grid = v.image_size // v.patch_size
    shapes |= {"visual.class_embedding": (v.width,), "visual.positional_embedding": (grid * grid + 1, v.width),
               "visual.proj": (v.width, config.embed_dim), "visual.conv1.weight": (v.width, 3, v.patch_size,
                                                                                     v.patch_size),
               "visual.ln_pre.weight": (v.width,), "visual.ln_pre.bias": (v.width,),
               "visual.ln_post.weight": (v.width,), "visual.ln_post.bias": (v.width,)}
    return shapes | _transformer_shapes("visual.transformer.", v.width, v.layers, v.mlp_hidden)


def _meta_model(config: CLIPConfig) -> CLIP:
    """A CLIP with every parameter on the meta device: shapes without memory, for checks and `assign` loading."""
    with torch.device("meta"):
        return CLIP(config)


def _shapes(state: Mapping[str, torch.Tensor]) -> dict[str, tuple[int, ...]]:
    return {name: tuple(tensor.shape) for name, tensor in state.items()}


def _read_native(path: Path) -> Checkpoint:
    path = resolve_checkpoint(path)
    config = _read_config(path)
    weights = path / WEIGHTS
    try:
        # The header alone gives every tensor's shape: a file that disagrees with config.json is refused before its
        # data is read or anything is allocated.
        with safe_open(str(weights), "pt") as f:
            found = {name: tuple(f.get_slice(name).get_shape()) for name in f.keys()}
        check_shapes(found, expected_shapes(config), f"{weights}: weights do not match {CONFIG}")
        state = load_file(str(weights))
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"{weights}: unreadable safetensors file ({e}); it may be truncated") from e
    return Checkpoint(state, config, "clipworks checkpoint", [])


def _resize_grid(pos: torch.Tensor, grid: int) -> torch.Tensor:
    """(1 + g*g, D) -> (1 + grid*grid, D): bicubic on the g x g grid, the first (class / mean) token kept."""
    old = round((pos.shape[0] - 1) ** 0.5)
    if old == grid:
        return pos
    first, rest = pos[:1], pos[1:].float().reshape(1, old, old, -1).permute(0, 3, 1, 2)  # (1, D, g, g)
    rest = F.interpolate(rest, size=(grid, grid), mode="bicubic", align_corners=False)
    return torch.cat([first, rest.permute(0, 2, 3, 1).reshape(grid * grid, -1).to(pos.dtype)])


def resize(ckpt: Checkpoint, *, image_size: int | None = None, context_length: int | None = None) -> Checkpoint:
    """Adapt positional embeddings to a new image size and/or text context length.

    Images: bicubic interpolation of the positional grid (ViT) or the attention pool's grid (ResNet).
    Text: a shorter context keeps the first positions; a longer one keeps all trained positions unchanged and fills
    the new ones with copies of the last trained position (untrained: a note says so). Texts that fit the old context
    therefore encode exactly as before.
    """
    state, config = dict(ckpt.state), ckpt.config
    if image_size is not None and image_size < 1 or context_length is not None and context_length < 2:
        raise ConfigError(f"image size {image_size} / context length {context_length}: an image size is at least 1 "
                          "and a context length at least 2 (start and end of text)")
    if image_size and image_size != config.vision.image_size:
        try:
            vision = dataclasses.replace(config.vision, image_size=image_size)  # checks divisibility and LIMITS
        except ValueError as e:
            raise ConfigError(f"--image-size {image_size} does not fit this {ckpt.format}: {e}") from None
        key = "visual.positional_embedding" if vision.kind == "vit" else "visual.attnpool.positional_embedding"
        grid = image_size // (vision.patch_size if vision.kind == "vit" else 32)
        state[key] = _resize_grid(state[key], grid)
        config = dataclasses.replace(config, vision=vision)
        ckpt.notes.append(f"image size {ckpt.config.vision.image_size} -> {image_size}: positional embedding "
                          "interpolated bicubically")
    old = config.text.context_length
    if context_length and context_length != old:
        pos = state["positional_embedding"]
        if context_length < old:
            state["positional_embedding"] = pos[:context_length].clone()
        else:
            extra = pos[-1:].expand(context_length - old, -1)
            state["positional_embedding"] = torch.cat([pos, extra])
            ckpt.notes.append(f"context length {old} -> {context_length}: positions {old}..{context_length - 1} are "
                              f"untrained copies of position {old - 1}")
        config = dataclasses.replace(config, text=dataclasses.replace(config.text, context_length=context_length))
    return Checkpoint(state, config, ckpt.format, ckpt.notes, ckpt.preprocess)


def read_checkpoint(path: str | Path, *, image_size: int | None = None, context_length: int | None = None,
                    activation: str | None = None, trust_code: bool = False,
                    pretrained: str | None = None) -> Checkpoint:
    """Weights in OpenAI's layout + config from any supported format or pretrained name (pretrained.py), positional
    embeddings resized on request."""
    path, entry = locate(path, pretrained=pretrained)
    ckpt = _read_located(path, activation=activation, trust_code=trust_code)
    if entry is not None:  # the registry knows what the weights cannot say: head widths, activation, preprocessing
        ckpt.config = dataclasses.replace(entry.config, activation=activation or entry.activation)
        ckpt.preprocess = entry.preprocess
        ckpt.format = f"{entry.name} ({ckpt.format})"
        ckpt.notes = [n for n in ckpt.notes if not n.startswith("no config: activation assumed")]
    return resize(ckpt, image_size=image_size, context_length=context_length)


def _read_located(path: Path, *, activation: str | None, trust_code: bool) -> Checkpoint:
    if not path.exists():
        raise CheckpointError(f"{path}: no such file or directory (expected a clipworks checkpoint directory or CLIP "
                              "weights in OpenAI, open_clip or HF transformers format)")
    if is_native(path) or (path.is_dir() and (path / WEIGHTS).exists() and not (path / CONFIG).exists()):
        ckpt = _read_native(path)
        if activation and activation != ckpt.config.activation:
            ckpt.config = dataclasses.replace(ckpt.config, activation=activation)
            ckpt.notes.append(f"activation overridden: {activation}")
    elif path.is_dir() and not any(path.iterdir()):
        raise CheckpointError(f"{path}: missing {WEIGHTS} or {CONFIG} (expected a clipworks checkpoint directory)")
    else:
        ckpt = read_foreign(path, activation=activation, trust_code=trust_code)
    return ckpt


def read_config(path: str | Path) -> CLIPConfig:
    """The architecture of a checkpoint in any supported format: from config.json alone for a clipworks checkpoint
    (no weights read); other formats infer it from their weights' shapes, so those are read."""
    if is_native(path):
        return _read_config(resolve_checkpoint(path))
    if (entry := find(str(path))) is not None and not Path(path).exists():
        return entry.config  # known without downloading
    return read_checkpoint(path).config


def _read_config(path: Path) -> CLIPConfig:
    """The config of a checkpoint `is_native` accepted; a size outside the registry's LIMITS is refused here, before
    anything is built from it."""
    try:
        return CLIPConfig.from_dict(json.loads((path / CONFIG).read_text())["model"])
    except ValueError as e:  # not JSON, not UTF-8, or a ConfigError naming the field and its bound
        raise CheckpointError(f"{path / CONFIG}: not a usable clipworks config ({e})") from e


def describe(path: str | Path, ckpt: Checkpoint) -> str:
    """One line: the source format, the registry model it matches, the activation, and any assumption made."""
    name = registry_name(ckpt.config)
    match = f"matches registry model {name}" if name else "custom architecture"
    notes = "".join(f"; {n}" for n in ckpt.notes)
    return f"loaded {path} as {ckpt.format}: {match}, activation {ckpt.config.activation}{notes}"


def load_model(path: str | Path, *, device: str | torch.device = "cpu", dtype: torch.dtype | None = None,
               image_size: int | None = None, context_length: int | None = None, activation: str | None = None,
               trust_code: bool = False) -> CLIP:
    """A CLIP in eval mode from any supported checkpoint; weights in fp32 unless `dtype` says otherwise."""
    return _build(read_checkpoint(path, image_size=image_size, context_length=context_length, activation=activation,
                                  trust_code=trust_code), path, device=device, dtype=dtype)


def _build(ckpt: Checkpoint, path: str | Path, *, device: str | torch.device, dtype: torch.dtype | None) -> CLIP:
    expected = CONFIG if ckpt.format == "clipworks checkpoint" else "the architecture read from the file"
    # Shapes first: the dtype copies and the move to `device` below allocate, and must only see weights that fit.
    check_shapes(_shapes(ckpt.state), expected_shapes(ckpt.config), f"{path}: weights do not match {expected}")
    model = _meta_model(ckpt.config)
    state = {k: v.to(dtype or torch.float32) if v.is_floating_point() else v for k, v in ckpt.state.items()}
    try:
        model.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as e:  # shapes agree, so something else, e.g. integer weights
        first = str(e).splitlines()[1:2] or [str(e)]
        raise CheckpointError(f"{path}: weights do not match {expected} ({first[0].strip()}); expected one "
                              "consistent CLIP state dict") from e
    return model.to(device).eval()


def load(path: str | Path, *, device: str | torch.device = "cpu", dtype: torch.dtype | None = None,
         image_size: int | None = None, context_length: int | None = None, activation: str | None = None,
         trust_code: bool = False, pretrained: str | None = None) -> tuple[CLIP, Callable]:
    """(model in eval mode, preprocess) from any supported checkpoint, as OpenAI's `clip.load` returns.

    `path` may also be a pretrained name, downloaded and verified on first use: `load("ViT-B-32")` (OpenAI's weights),
    `load("ViT-B-32", pretrained="laion2b_s34b_b79k")` or `load("ViT-B-32:laion2b_s34b_b79k")` (open_clip's tags),
    `load("hf-hub:ORG/REPO")`; `clipworks.list_pretrained()` lists the names.
    Prints one line (to stderr) naming the detected format, the matching registry model and the activation.
    """
    ckpt = read_checkpoint(path, image_size=image_size, context_length=context_length, activation=activation,
                           trust_code=trust_code, pretrained=pretrained)
    model = _build(ckpt, path, device=device, dtype=dtype)
    print(describe(path, ckpt), file=sys.stderr)  # stderr: stdout stays clean for --json reports
    preprocess = ckpt.preprocess.transform(model.image_size) if ckpt.preprocess else image_transform(model.image_size)
    return model, preprocess


def load_training_state(path: str | Path) -> dict[str, Any] | None:
    """A checkpoint's optimizer state, step and RNG states; None for weights only. A file torch.load cannot read back
    (truncated, overwritten) is a CheckpointError naming it."""
    file = resolve_checkpoint(path) / TRAINING_STATE
    if not file.exists():
        return None
    try:
        return torch.load(file, map_location="cpu", weights_only=True)
    except OSError:  # the file could not be read at all (permissions, the device): not its content
        raise
    except Exception as e:  # noqa: BLE001 - unpickling damaged bytes fails in any way (IndexError, KeyError, ...)
        # torch's messages run on for lines (advice about weights_only, miniz): their first sentence says enough.
        first = str(e).strip().split(". ")[0].splitlines()
        detail = f"{type(e).__name__}: {first[0]}" if first else type(e).__name__
        raise CheckpointError(f"{file} is damaged (truncated or overwritten?): torch.load cannot read it back "
                              f"({detail})") from None


def load_for_inference(path: str | Path, *, device: str | torch.device = "cpu",
                       dtype: torch.dtype | str | None = None) -> tuple[CLIP, Callable]:
    """`clipworks.load`, then `optimize_for_inference`: how the evaluation commands load the model they embed with
    (fp32 copies equal the model within 1e-5)."""
    model, preprocess = load(path, device=device)
    return optimize_for_inference(model, dtype), preprocess
