"""Two processes under torchrun (gloo, CPU), and K micro-batches (GradCache), train exactly like one process on
the combined batch; two processes resume their shard streams exactly."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from clipworks import cli, load
from clipworks.data.shard_files import shard_pattern, write_shards
from clipworks.data.world import World, WorldConfig
from clipworks.io.checkpoints import load_training_state

ARGS = ["train", "--model", "ViT-Tiny", "--steps", "3", "--batch-size", "8", "--world-samples", "16",
        "--precision", "fp32", "--warmup-steps", "1", "--lr", "1e-3", "--eps", "1e-3", "--eval-every", "0", "--quiet"]


def run(command: list[str], tmp_path: Path) -> None:
    env = {**os.environ, "CLIPWORKS_CACHE": str(tmp_path / "cache")}
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]


def losses(run_dir: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (run_dir / "log.jsonl").read_text().splitlines()]


def assert_same_training(a: Path, b: Path) -> None:
    # Same global-batch loss at every step (each process computed only its rows against all gathered columns) ...
    assert losses(b) == pytest.approx(losses(a), rel=1e-6)  # fp32 rounding
    # ... and the same parameters after three AdamW updates. Adam's step lr * g / (|g| + eps) turns the rounding
    # noise of gradients that are mathematically zero (e.g. the key bias of attention) into updates of up to lr;
    # eps = lr keeps that magnification at 1, so the comparison measures the gradients, not the noise.
    one, _ = load(a)
    two, _ = load(b)
    for (name, x), (_, y) in zip(one.state_dict().items(), two.state_dict().items()):
        torch.testing.assert_close(y, x, atol=1e-6, rtol=0, msg=name)


def test_two_processes_match_one_process_on_the_combined_batch(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    assert torchrun, "torchrun ships with torch; it should sit beside the interpreter"
    # The single-process runs in this process (no interpreter and torch start-up); torchrun's in their own.
    monkeypatch.setenv("CLIPWORKS_CACHE", str(tmp_path / "cache"))
    assert cli.main([*ARGS, "--output-dir", str(tmp_path / "one")]) == 0
    run([torchrun, "--standalone", "--nproc-per-node", "2", "-m", "clipworks.cli", *ARGS,
         "--output-dir", str(tmp_path / "two")], tmp_path)
    assert_same_training(tmp_path / "one", tmp_path / "two")
    # Gradient accumulation that keeps every negative (GradCache), alone and under two processes.
    assert cli.main([*ARGS, "--micro-batches", "4", "--output-dir", str(tmp_path / "micro")]) == 0
    assert_same_training(tmp_path / "one", tmp_path / "micro")
    run([torchrun, "--standalone", "--nproc-per-node", "2", "-m", "clipworks.cli", *ARGS, "--micro-batches", "2",
         "--output-dir", str(tmp_path / "two-micro")], tmp_path)
    assert_same_training(tmp_path / "one", tmp_path / "two-micro")



def test_two_processes_resume_their_shard_streams_exactly(tmp_path: Path) -> None:
    world = World(WorldConfig(image_size=32))
    pattern = shard_pattern(write_shards(((s.image, s.caption, {}) for i in range(40)
                                          for s in [world.sample("train", i)]), tmp_path / "shards",
                                         samples_per_shard=5))
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    common = [torchrun, "--standalone", "--nproc-per-node", "2", "-m", "clipworks.cli", "train", "--data", pattern,
              "--model", "ViT-Tiny", "--steps", "5", "--batch-size", "8", "--workers", "1", "--eval-every", "0",
              "--quiet"]
    run([*common, "--save-every", "3", "--output-dir", str(tmp_path / "straight")], tmp_path)
    middle = tmp_path / "straight" / "checkpoints" / "step_0000003"
    positions = load_training_state(middle)["data_positions"]
    # 20 samples a process, 4 a step: step 3 is the third batch of epoch 0 on each process.
    assert positions == [{"epoch": 0, "consumed": [3], "next": 0, "skipped": 0}] * 2
    run([*common, "--resume", str(middle), "--output-dir", str(tmp_path / "resumed")], tmp_path)
    a, _ = load(tmp_path / "straight")
    b, _ = load(tmp_path / "resumed")
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(x, y), name
