"""What a training checkpoint carries and how a run restores from it, for a bit-identical resume after any kill.

A checkpoint holds the weights, the optimizer and gradient-scaler state, the step, every random generator's state and,
for data streams that cannot derive their place from the step (tar shards), each process's position in its data.
The `latest` pointer moves only after a checkpoint is complete, so a kill during a save leaves the previous one in
charge; the log is cut back to the restored step, since the resumed run logs the later steps again.
"""

from __future__ import annotations

import dataclasses
import json
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..distributed import Process
from ..errors import CheckpointError, ConfigError
from ..io.checkpoints import (
    LATEST,
    TRAINING_STATE,
    load_training_state,
    read_checkpoint,
    remove_stale_temporaries,
    resolve_checkpoint,
    save_checkpoint,
)
from ..io.files import write_text_atomic
from ..io.formats import Checkpoint
from ..models.clip import CLIP
from ..models.configs import registry_name
from .config import TrainConfig

LOG_FILE = "log.jsonl"  # a run's record of every step and evaluation, one JSON object a line, in its output dir


def rng_states() -> dict[str, Any]:
    """Every random generator a run may draw from, in a form torch.load(weights_only=True) reads back."""
    np_state = np.random.get_state()
    states = {"torch": torch.get_rng_state(), "python": random.getstate(),
              "numpy": (np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:])}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, *rest = states["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def truncate_log(log_file: Path, step: int) -> None:
    """Drop the records of steps after `step` (a killed run logged them; the resumed run logs them again)."""
    if not log_file.exists():
        return
    kept = []
    for line in log_file.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:  # the last line of a killed run may be cut short
            continue
        if record.get("step", record.get("eval", {}).get("step", 0)) <= step:
            kept.append(line + "\n")
    write_text_atomic(log_file, "".join(kept))


def _checkpoint_to_resume(resume: str | None, out: Path) -> Path | None:
    """The checkpoint --resume names: "latest" is `out`'s newest (None before the first save), else a directory."""
    if resume == "latest":
        return resolve_checkpoint(out) if (out / "checkpoints" / LATEST).exists() else None
    return resolve_checkpoint(resume) if resume else None


def _check_same_architecture(checkpoint: Path, weights: Checkpoint, model: CLIP) -> None:
    """A resume continues the model it saved: weights of another architecture are refused, saying what to pass."""
    found = {name: tuple(tensor.shape) for name, tensor in weights.state.items()}
    expected = {name: tuple(tensor.shape) for name, tensor in model.state_dict().items()}
    if found == expected:
        return
    theirs, ours = registry_name(weights.config), registry_name(model.config)
    if theirs == ours:  # both custom: say where they differ
        name = next(n for n in {**expected, **found} if found.get(n) != expected.get(n))
        what = (f"a custom architecture unlike this run's ({name}: {found.get(name, 'absent')} in the checkpoint, "
                f"{expected.get(name, 'absent')} in this run)")
    else:
        what = f"{theirs or 'a custom architecture'}, and this run trains {ours or 'a custom architecture'}"
    fix = f"--model {theirs}" if theirs else "the --init its run started from"
    raise ConfigError(f"--resume {checkpoint} holds the weights of {what}; a resume continues the model it saved: "
                      f"pass {fix}, or start a new run from its weights with --init {checkpoint} instead of --resume")


def _instead_of(damaged: Path) -> str:
    """What to resume from when `damaged`'s training state cannot be read: the newest checkpoint before it."""
    earlier = [p for p in sorted(damaged.parent.glob("step_*"))
               if p.name < damaged.name and (p / TRAINING_STATE).is_file()]
    if earlier:
        return f"resume from the checkpoint before it instead: --resume {earlier[-1]} (the steps after it run again)"
    return f"no earlier checkpoint is left beside it; to start a new run from its weights: --init {damaged}"


def restore(model: CLIP, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler, *, resume: str | None,
            out: Path, process: Process) -> tuple[int, Any]:
    """Prepare `out` for the run and return (the first step, this process's data position or None).

    Resuming loads the checkpoint's weights, optimizer and gradient-scaler state and random generators, and cuts the
    log back to its step; a fresh run (or --resume latest before any save) starts at step 0 with a fresh log.
    """
    log_file = out / LOG_FILE
    if process.is_main:
        remove_stale_temporaries(out / "checkpoints")  # what a kill during a save left behind
    checkpoint = _checkpoint_to_resume(resume, out)
    if checkpoint is None:
        if resume and process.is_main:
            print(f"--resume: no checkpoint in {out / 'checkpoints'} yet; starting from step 0")
        if log_file.exists() and process.is_main:
            log_file.unlink()
        return 0, None
    weights = read_checkpoint(checkpoint)
    _check_same_architecture(checkpoint, weights, model)
    model.load_state_dict(weights.state)
    try:
        state = load_training_state(checkpoint)
    except CheckpointError as e:  # no silent fall-back to another checkpoint: the user chooses
        raise CheckpointError(f"{e}; {_instead_of(checkpoint)}") from None
    if state is None:
        raise ConfigError(f"{checkpoint} holds weights only, no optimizer state: use --init to fine-tune from it")
    scales = [group["lr_scale"] for group in optimizer.param_groups]
    optimizer.load_state_dict(state["optimizer"])
    for group, scale in zip(optimizer.param_groups, scales):  # this run's --lr-*-scale, not the saved one
        group["lr_scale"] = scale
    if state.get("scaler"):
        scaler.load_state_dict(state["scaler"])
    start = int(state["step"])
    set_rng_states(state["rng"])
    positions, position = state.get("data_positions"), None
    if positions is not None and len(positions) == process.world_size:
        position = positions[process.rank]
    elif positions is not None and process.is_main:
        print(f"{checkpoint} was saved by {len(positions)} processes, this run has {process.world_size}: the "
              "data order restarts from (seed, step) instead of the exact position")
    if process.is_main:
        truncate_log(log_file, start)  # steps after the checkpoint are done again
        print(f"resumed from {checkpoint} at step {start}")
    return start, position


def save_and_rotate(cfg: TrainConfig, model: CLIP, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
                    *, step: int, data_positions: list[Any]) -> Path:
    """Save step `step`'s checkpoint in <output_dir>/checkpoints, point `latest` at it, keep the newest cfg.keep."""
    checkpoints, name = Path(cfg.output_dir) / "checkpoints", f"step_{step:07d}"
    training_state = {"optimizer": optimizer.state_dict(), "step": step, "rng": rng_states(),
                      "scaler": scaler.state_dict()}
    if any(p is not None for p in data_positions):
        training_state["data_positions"] = data_positions
    path = save_checkpoint(checkpoints / name, model, training_state=training_state,
                           metadata={"step": step, "train_config": dataclasses.asdict(cfg)})
    write_text_atomic(checkpoints / LATEST, name)  # the pointer moves only after the save is complete
    for old in sorted(checkpoints.glob("step_*"))[:-cfg.keep]:
        shutil.rmtree(old, ignore_errors=True)
    return path
