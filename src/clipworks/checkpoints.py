"""Saving and loading clipworks checkpoints.

A checkpoint is a directory:
    model.safetensors     the weights, in OpenAI's state-dict layout (no pickle, no code execution on load)
    config.json           {"model": CLIPConfig as a dict, "step": ..., ...}
    training_state.pt     optional: optimizer state, step, RNG states (tensors and plain data; loaded weights_only)
Writes are atomic: everything goes to a temporary sibling directory that is renamed into place, so a crash mid-save
never leaves a half-written checkpoint. A run directory holds `checkpoints/step_NNNNNNN/` and a `latest` pointer.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .configs import CLIPConfig
from .model import CLIP
from .transforms import image_transform

WEIGHTS = "model.safetensors"
CONFIG = "config.json"
TRAINING_STATE = "training_state.pt"
LATEST = "latest"


class CheckpointError(Exception):
    """A file that is not a loadable clipworks checkpoint; the message names the file and what was expected."""


def write_text_atomic(path: Path, text: str) -> None:
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def save_checkpoint(path: str | Path, model: CLIP, *, training_state: dict[str, Any] | None = None,
                    metadata: dict[str, Any] | None = None) -> Path:
    """Write a checkpoint directory at `path` atomically (replacing an existing one)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.tmp-"))
    try:
        state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
        save_file(state, str(tmp / WEIGHTS))
        (tmp / CONFIG).write_text(json.dumps({"model": model.config.to_dict(), **(metadata or {})}, indent=2))
        if training_state is not None:
            torch.save(training_state, tmp / TRAINING_STATE)
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


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


def load_model(path: str | Path, *, device: str | torch.device = "cpu") -> CLIP:
    path = resolve_checkpoint(path)
    try:
        config = CLIPConfig.from_dict(json.loads((path / CONFIG).read_text())["model"])
    except (json.JSONDecodeError, KeyError, ValueError) as e:
        raise CheckpointError(f"{path / CONFIG}: not a clipworks config ({e})") from e
    try:
        state = load_file(str(path / WEIGHTS), device=str(device))
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"{path / WEIGHTS}: unreadable safetensors file ({e}); it may be truncated") from e
    model = CLIP(config).to(device)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        first = str(e).splitlines()[1:2] or [str(e)]
        raise CheckpointError(f"{path / WEIGHTS}: weights do not match {CONFIG} ({first[0].strip()})") from e
    return model.eval()


def load(path: str | Path, *, device: str | torch.device = "cpu") -> tuple[CLIP, Callable]:
    """(model in eval mode, preprocess) from a clipworks checkpoint, as OpenAI's `clip.load` returns."""
    model = load_model(path, device=device)
    return model, image_transform(model.image_size)


def load_training_state(path: str | Path) -> dict[str, Any] | None:
    file = resolve_checkpoint(path) / TRAINING_STATE
    return torch.load(file, map_location="cpu", weights_only=True) if file.exists() else None
