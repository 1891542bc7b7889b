"""clipworks checkpoints: exact round trip, atomic writes, and one clear error for each kind of bad file, including
hostile configs and weights, native or foreign, refused before anything is built from them."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import clipworks
import clipworks.io.checkpoints as ckpt
from clipworks import cli, create_model, load, save_checkpoint
from clipworks.errors import CheckpointError
from clipworks.io.export import save_hf
from clipworks.models.configs import CLIPConfig, TextConfig, VisionConfig


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


@pytest.mark.parametrize("umask", [0o022, 0o027], ids=["umask 022", "umask 027"])
def test_checkpoint_and_export_files_get_the_modes_the_umask_gives(umask: int, tmp_path: Path) -> None:
    """Not mkdtemp's 0700, nor the 0600 safetensors' save_file gives its file whatever the umask."""
    model = create_model("ViT-Tiny")
    old = os.umask(umask)
    try:
        save_checkpoint(tmp_path / "run" / "step_0000001", model, training_state={"step": 1})
        save_hf(model, tmp_path / "hf")
    finally:
        os.umask(old)
    modes = {p.relative_to(tmp_path).as_posix(): p.stat().st_mode & 0o777 for p in tmp_path.rglob("*")}
    written = {"run/step_0000001/model.safetensors", "run/step_0000001/training_state.pt", "hf/model.safetensors"}
    assert written < modes.keys()
    assert modes == {name: (0o777 if (tmp_path / name).is_dir() else 0o666) & ~umask for name in modes}
    if umask == 0o022:
        assert modes["run/step_0000001"] == 0o755 and modes["run/step_0000001/model.safetensors"] == 0o644


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


# ---------------------------------------------------------------- hostile checkpoints (issue 14)
# Each case edits a tiny real checkpoint; each must be refused with one CheckpointError naming the file and what is
# wrong, before anything is built from the bad size (a million layers used to hang the loader).

HOSTILE_BASES = {
    "vit": CLIPConfig(32, VisionConfig(32, 64, 2, 16), TextConfig(context_length=16, vocab_size=1000, width=64,
                                                                  layers=2)),
    "rn": CLIPConfig(32, VisionConfig(64, 16, (1, 1, 1, 1)), TextConfig(context_length=16, vocab_size=1000, width=64,
                                                                        layers=1)),
}


def set_config(*keys: str, value: object, named: str = "config.json") -> Callable[[Path], str]:
    """An edit setting config.json's ["model"][keys...] to `value`; it returns the file the error must name."""
    def edit(directory: Path) -> str:
        config = json.loads((directory / "config.json").read_text())
        node = config["model"]
        for key in keys[:-1]:
            node = node[key]
        node[keys[-1]] = value
        (directory / "config.json").write_text(json.dumps(config))
        return named
    return edit


def write_config(text: str) -> Callable[[Path], str]:
    def edit(directory: Path) -> str:
        (directory / "config.json").write_text(text)
        return "config.json"
    return edit


def edit_tensors(change: Callable[[dict[str, torch.Tensor]], None]) -> Callable[[Path], str]:
    def edit(directory: Path) -> str:
        state = load_file(str(directory / "model.safetensors"))
        change(state)
        save_file(state, str(directory / "model.safetensors"))
        return "model.safetensors"
    return edit


HOSTILE = {  # case: (base model, edit, what the message says after "<file>: ")
    "a million text layers": ("vit", set_config("text", "layers", value=10**6),
                              "text.layers = 1000000 is out of bounds: allowed 1..512"),
    "1e5 ResNet blocks per stage": ("rn", set_config("vision", "layers", value=[10**5] * 4),
                                    "vision.layers[0] = 100000 is out of bounds: allowed 1..384"),
    "negative width": ("vit", set_config("vision", "width", value=-64),
                       "vision.width = -64 is out of bounds: allowed 1..32768"),
    "zero heads": ("vit", set_config("text", "head_width", value=128),
                   "text.head_width 128 is wider than text.width 64: that gives 0 attention heads"),
    "zero head width": ("rn", set_config("vision", "head_width", value=0),
                        "vision.head_width = 0 is out of bounds: allowed 1..16384"),
    "width not divisible by heads": ("vit", set_config("text", "width", value=96),
                                     "text.width 96 is not a multiple of text.head_width 64"),
    "context length 0": ("vit", set_config("text", "context_length", value=0),
                         "text.context_length = 0 is out of bounds: allowed 2..8192"),
    "image size not divisible by patch": ("vit", set_config("vision", "image_size", value=40),
                                          "vision.image_size 40 is not a multiple of patch_size 16"),
    "huge vocab": ("vit", set_config("text", "vocab_size", value=10**12),
                   "text.vocab_size = 1000000000000 is out of bounds: allowed 1..4194304"),
    "huge embed dim": ("rn", set_config("embed_dim", value=2**40),
                       "embed_dim = 1099511627776 is out of bounds: allowed 1..16384"),
    "string for an int": ("vit", set_config("text", "layers", value="12"), "text.layers must be an integer, got '12'"),
    "unknown activation": ("vit", set_config("activation", value="relu"), "activation 'relu' is not one of"),
    "config not a JSON object": ("vit", write_config("[1, 2, 3]"),
                                 "not a JSON object with vision_config and text_config objects"),
    "model config not a JSON object": ("vit", write_config('{"model": "ViT-B-32"}'),
                                       "the model config is not a JSON object (found str)"),
    "tensor shape disagrees": ("vit", edit_tensors(lambda s: s.update(text_projection=torch.zeros(64, 31))),
                               "weights do not match config.json (size mismatch for text_projection: expected "
                               "(64, 32) from the config, found (64, 31))"),
    "config shape disagrees": ("rn", set_config("text", "context_length", value=20, named="model.safetensors"),
                               "weights do not match config.json (size mismatch for positional_embedding: expected "
                               "(20, 64) from the config, found (16, 64))"),
    "missing tensor": ("rn", edit_tensors(lambda s: s.pop("visual.attnpool.c_proj.bias")),
                       "weights do not match config.json (missing tensor visual.attnpool.c_proj.bias of shape (32,))"),
    "unexpected tensor": ("vit", edit_tensors(lambda s: s.update({"visual.extra.weight": torch.zeros(3)})),
                          "weights do not match config.json (unexpected tensor visual.extra.weight of shape (3,))"),
}


@pytest.fixture(scope="module")
def hostile_bases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hostile")
    return {kind: save_checkpoint(root / kind, create_model(cfg, seed=0)) for kind, cfg in HOSTILE_BASES.items()}


def hostile_checkpoint(case: str, bases: dict[str, Path], tmp_path: Path) -> tuple[Path, str]:
    """(checkpoint directory, regex for the error: the file it names, then the message)."""
    kind, edit, message = HOSTILE[case]
    directory = Path(shutil.copytree(bases[kind], tmp_path / "hostile"))
    return directory, rf"{re.escape(str(directory / edit(directory)))}: .*{re.escape(message)}"


@pytest.mark.parametrize("case", list(HOSTILE))
def test_a_hostile_checkpoint_is_refused_at_once(case: str, hostile_bases: dict[str, Path], tmp_path: Path,
                                                 capsys: pytest.CaptureFixture) -> None:
    directory, error = hostile_checkpoint(case, hostile_bases, tmp_path)
    _assert_refused_at_once(directory, error, tmp_path, capsys)


def _assert_refused_at_once(path: Path, error: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """One CheckpointError from `load`, and one line with exit code 2 from `clipworks convert`, nothing written."""
    start = time.perf_counter()
    with pytest.raises(CheckpointError, match=f"^{error}"):
        load(path)
    assert cli.main(["convert", str(path), str(tmp_path / "out"), "--to", "native"]) == 2
    assert time.perf_counter() - start < 5  # a bound against a hang or a runaway allocation, not a speed test
    assert re.fullmatch(rf"clipworks convert: error: {error}.*\n", capsys.readouterr().err)  # one line, no traceback
    assert not (tmp_path / "out").exists()


@pytest.mark.slow  # a fresh interpreter importing torch takes seconds; the cases above call the same `cli.main`
def test_a_hostile_checkpoint_through_the_command_line(hostile_bases: dict[str, Path], tmp_path: Path) -> None:
    directory, error = hostile_checkpoint("a million text layers", hostile_bases, tmp_path)
    src = Path(clipworks.__file__).parents[1]  # the subprocess runs this same clipworks
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(src), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, "-m", "clipworks.cli", "convert", str(directory), str(tmp_path / "out"),
                             "--to", "native"], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 2
    assert re.fullmatch(rf"clipworks convert: error: {error}.*\n", result.stderr)  # one line, no traceback


def hostile_foreign(case: str, directory: Path) -> tuple[Path, str, str]:
    """(path to load, file the error names, what it says): foreign weights whose config, written or inferred from
    shapes, is absurd or disagrees with them (issue 14)."""
    model = create_model(HOSTILE_BASES["vit"], seed=7)
    state = model.state_dict()
    if case.startswith("open_clip"):
        bad = {"layers": 10**6} if "layers" in case else {"heads": 0}
        text = {"context_length": 16, "vocab_size": 1000, "width": 64, "heads": 1, "layers": 2, **bad}
        vision = {"image_size": 32, "layers": 2, "width": 64, "patch_size": 16}
        config = {"model_cfg": {"embed_dim": 32, "vision_cfg": vision, "text_cfg": text}}
        (directory / "open_clip_config.json").write_text(json.dumps(config))
        torch.save(state, directory / "open_clip_pytorch_model.bin")
        message = "text.layers = 1000000 is out of bounds: allowed 1..512" if "layers" in case else \
            "text_cfg.heads = 0; at least one attention head is needed"
        return directory, "open_clip_config.json", f"not an open_clip model config ({message}"
    if case.startswith("HF"):
        save_hf(model, directory)
        config = json.loads((directory / "config.json").read_text())
        if case == "HF zero heads":
            config["vision_config"]["num_attention_heads"] = 0
            message = "vision_config.num_attention_heads 0 does not split the vision tower's width 64"
        else:
            config["text_config"] = [64, 2]
            message = "not a JSON object with vision_config and text_config objects"
        (directory / "config.json").write_text(json.dumps(config))
        return directory, "config.json", message
    inferred = "weights do not match the architecture read from the file"
    if case == "inferred context length out of bounds":
        state["positional_embedding"] = torch.zeros(10**4, 64)
        message = "cannot infer the architecture from the weights (text.context_length = 10000 is out of bounds"
    elif case == "empty positional grid":
        state["visual.positional_embedding"] = torch.zeros(0, 64)
        message = "cannot infer the architecture from the weights"
    elif case == "shape disagrees with the inferred config":
        state["positional_embedding"] = torch.zeros(16, 48)
        message = f"{inferred} (size mismatch for positional_embedding: expected (16, 64) from the config, found " \
                  "(16, 48))"
    else:  # a gap in the block numbers: two text blocks counted, the second not where it should be
        state = {"transformer.resblocks.7." + k[24:] if k.startswith("transformer.resblocks.1.") else k: v
                 for k, v in state.items()}
        # 12 tensors in a block: 12 missing at index 1, 12 unexpected at index 7; the first is reported.
        message = f"{inferred} (missing tensor transformer.resblocks.1.ln_1.weight of shape (64,); 23 more differences)"
    torch.save(state, directory / "model.pt")
    return directory / "model.pt", "model.pt", message


@pytest.mark.parametrize("case", ["open_clip a million text layers", "open_clip zero heads", "HF zero heads",
                                  "HF tower config not an object", "inferred context length out of bounds",
                                  "empty positional grid", "shape disagrees with the inferred config",
                                  "gap in the block numbers"])
def test_a_hostile_foreign_checkpoint_is_refused_at_once(case: str, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture) -> None:
    path, named, message = hostile_foreign(case, tmp_path)
    _assert_refused_at_once(path, rf"{re.escape(str(tmp_path / named))}: {re.escape(message)}", tmp_path, capsys)
