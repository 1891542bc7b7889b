"""The demo: a quick version checks the report it writes; the full demo (slow marker) checks the accuracy targets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clipworks.demo import run_demo


def test_short_demo_writes_report_metrics_and_plot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import clipworks.demo as demo

    # Same code path at a size that runs in seconds: fewer pairs, steps and evaluation images.
    monkeypatch.setattr(demo, "DEMO_CONFIG", demo.DEMO_CONFIG.__class__(
        **{**demo.DEMO_CONFIG.__dict__, "world_samples": 512, "batch_size": 64, "eval_every": 4, "save_every": 0}))
    monkeypatch.setattr(demo, "EVAL_SAMPLES", 64)
    metrics = run_demo(tmp_path, steps=8, progress=False)
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["step"] == 8 and saved["zeroshot_combination"] == metrics["zeroshot_combination"]
    report = (tmp_path / "report.md").read_text()
    assert "held-out colour+shape pairs, among all 48 pairs" in report and "| image → text |" in report
    assert (tmp_path / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "checkpoints" / "step_0000008" / "model.safetensors").is_file()


@pytest.mark.slow
def test_full_demo_reaches_its_targets(tmp_path: Path) -> None:
    metrics = run_demo(tmp_path, progress=False)
    assert metrics["zeroshot_colour"] >= 0.9
    assert metrics["zeroshot_shape"] >= 0.9
    assert metrics["zeroshot_combination"] >= 0.5  # 48 classes: chance is 2.1%
