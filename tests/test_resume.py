"""Step-exact resume: kill -9 a run at random moments, including in the middle of writing a checkpoint, resume it
with `--resume latest` each time, and the final weights are bit-identical to an uninterrupted run. A checkpoint that
cannot be resumed (another model's, a damaged training state) is one line saying what to pass instead."""

from __future__ import annotations

import dataclasses
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from clipworks import cli, load, save_checkpoint
from clipworks.models.clip import CLIP
from clipworks.models.configs import get_config

ARGS = [sys.executable, "-m", "clipworks.cli", "train", "--model", "RN-Tiny", "--steps", "10", "--batch-size", "8",
        "--world-samples", "24", "--save-every", "1", "--keep", "2", "--eval-every", "0", "--quiet"]


def start(out: Path, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([*ARGS, "--output-dir", str(out), "--resume", "latest"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def kill_when(process: subprocess.Popen, condition, timeout: float = 120.0) -> bool:
    """SIGKILL the process as soon as `condition()` holds; False if it finished first."""
    deadline = time.monotonic() + timeout
    while process.poll() is None and time.monotonic() < deadline:
        if condition():
            process.send_signal(signal.SIGKILL)
            process.wait()
            return True
        time.sleep(0.001)
    assert process.wait() == 0, process.stderr.read()[-2000:]
    return False


def test_kill_9_during_saves_and_steps_then_resume_is_bit_identical(tmp_path: Path, world_cache: Path) -> None:
    env = {**os.environ, "CLIPWORKS_CACHE": str(world_cache), "OMP_NUM_THREADS": "1"}
    subprocess.run([*ARGS, "--output-dir", str(tmp_path / "straight")], env=env, check=True, capture_output=True)

    out = tmp_path / "killed"
    checkpoints = out / "checkpoints"
    saving = lambda: any(".tmp-" in p.name for p in checkpoints.glob(".*"))  # noqa: E731 - a save is in flight
    rng = random.Random(0)
    kills_in_save = kills_in_step = 0
    # Twice in the middle of writing a checkpoint, then twice at a random moment after training has started.
    for attempt in range(4):
        process = start(out, env)
        if attempt < 2:
            kills_in_save += kill_when(process, saving)
        else:
            t = time.monotonic() + rng.uniform(0.2, 1.5)
            kills_in_step += kill_when(process, lambda: (out / "log.jsonl").exists() and time.monotonic() > t)
    process = start(out, env)
    assert process.wait() == 0, process.stderr.read()[-2000:]
    assert kills_in_save == 2 and kills_in_step >= 1

    a, _ = load(tmp_path / "straight")
    b, _ = load(out)
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(x, y), name
    steps = [json.loads(line)["step"] for line in (out / "log.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 11))  # each step logged once, in order, despite the repeats after each kill
    assert sorted(p.name for p in checkpoints.iterdir()) == ["latest", "step_0000009", "step_0000010"]  # keep 2


@pytest.mark.parametrize("other, what, fix", [
    ("ViT-Tiny", "holds the weights of ViT-Tiny, and this run trains RN-Tiny", "pass --model ViT-Tiny"),
    ("RN-Tiny embed 64", "holds the weights of a custom architecture, and this run trains RN-Tiny",
     "pass the --init its run started from")], ids=["ViT-Tiny", "custom"])
def test_resume_from_another_models_checkpoint_is_one_line_naming_both(
        other: str, what: str, fix: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    config = get_config(other.split()[0])
    if other.endswith("embed 64"):
        config = dataclasses.replace(config, embed_dim=64)
    checkpoint = save_checkpoint(tmp_path / "other" / "step_0000001", CLIP(config), training_state={"step": 1})
    code = cli.main(["train", "--model", "RN-Tiny", "--steps", "2", "--batch-size", "4", "--world-samples", "8",
                     "--eval-every", "0", "--no-tensorboard", "--quiet", "--output-dir", str(tmp_path / "run"),
                     "--resume", str(checkpoint)])
    err = capsys.readouterr().err
    assert code == 2 and err == (f"clipworks train: error: --resume {checkpoint} {what}; a resume continues the model "
                                 f"it saved: {fix}, or start a new run from its weights with --init {checkpoint} "
                                 "instead of --resume\n")
    assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.parametrize("damage", ["truncated", "random bytes", "truncated, no earlier checkpoint"])
def test_resume_from_a_damaged_training_state_is_one_line_naming_the_checkpoint_before_it(
        damage: str, tiny_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run = shutil.copytree(tiny_run, tmp_path / "run")  # checkpoints at steps 20 and 40
    damaged = run / "checkpoints" / "step_0000040" / "training_state.pt"
    data = damaged.read_bytes()
    damaged.write_bytes(random.Random(0).randbytes(len(data)) if damage == "random bytes" else data[:len(data) // 2])
    if damage.endswith("no earlier checkpoint"):
        shutil.rmtree(run / "checkpoints" / "step_0000020")
    code = cli.main(["train", "--model", "RN-Tiny", "--steps", "41", "--batch-size", "32", "--world-samples", "64",
                     "--eval-every", "0", "--quiet", "--output-dir", str(run), "--resume", "latest"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.splitlines()) == 1 and err.startswith(f"clipworks train: error: {damaged} is damaged")
    if damage.endswith("no earlier checkpoint"):
        assert err.endswith(f"; no earlier checkpoint is left beside it; to start a new run from its weights: --init "
                            f"{damaged.parent}\n")
    else:
        assert err.endswith(f"; resume from the checkpoint before it instead: --resume {run}/checkpoints/step_0000020 "
                            "(the steps after it run again)\n")
        assert cli.main(["train", "--model", "RN-Tiny", "--steps", "21", "--batch-size", "32", "--world-samples", "64",
                         "--eval-every", "0", "--quiet", "--output-dir", str(run), "--resume",
                         str(run / "checkpoints" / "step_0000020")]) == 0  # the line's advice works
        assert (run / "checkpoints" / "latest").read_text() == "step_0000021"
