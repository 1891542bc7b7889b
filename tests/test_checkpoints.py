"""clipworks checkpoints: exact round trip, atomic writes, and one clear error for each kind of bad file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import clipworks.io.checkpoints as ckpt
from clipworks import create_model, load, save_checkpoint
from clipworks.errors import CheckpointError


def test_round_trip_is_exact_and_gives_the_models_preprocessing(tmp_path: Path) -> None:
    model = create_model("ViT-Tiny", seed=3)
    save_checkpoint(tmp_path / "c", model, metadata={"note": "x"})
    loaded, preprocess = load(tmp_path / "c")
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), name
    assert loaded.config == model.config and not loaded.training
    assert preprocess.size == 64 and preprocess.train is False
    assert json.loads((tmp_path / "c" / "config.json").read_text())["note"] == "x"


def test_a_crash_during_save_leaves_the_previous_checkpoint_intact(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    first = create_model("RN-Tiny", seed=0)
    save_checkpoint(tmp_path / "c", first)

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(ckpt, "save_file", crash)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(tmp_path / "c", create_model("RN-Tiny", seed=1))
    loaded, _ = load(tmp_path / "c")
    assert torch.equal(loaded.text_projection, first.text_projection)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c"]  # no temporary directory left behind


def test_truncated_weights_name_the_file(tmp_path: Path) -> None:
    save_checkpoint(tmp_path / "c", create_model("RN-Tiny"))
    weights = tmp_path / "c" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match=r"model.safetensors: unreadable safetensors file .*truncated"):
        load(tmp_path / "c")


def test_weights_that_do_not_match_the_config(tmp_path: Path) -> None:
    save_checkpoint(tmp_path / "c", create_model("RN-Tiny"))
    config = json.loads((tmp_path / "c" / "config.json").read_text())
    config["model"]["embed_dim"] = 64
    (tmp_path / "c" / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="weights do not match config.json"):
        load(tmp_path / "c")


def test_wrong_kinds_of_path(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no such file or directory"):
        load(tmp_path / "missing")
    (tmp_path / "model.pt").write_bytes(b"\x80\x04")
    with pytest.raises(CheckpointError, match="not a clipworks checkpoint"):
        load(tmp_path / "model.pt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="missing model.safetensors or config.json"):
        load(tmp_path / "empty")
    (tmp_path / "empty" / "model.safetensors").write_bytes(b"")
    (tmp_path / "empty" / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not a clipworks config"):
        load(tmp_path / "empty")
