"""Atomic writes keep the old file when writing fails and leave no temporaries; a full disk is one clear error."""

from __future__ import annotations

import contextlib
import errno
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from clipworks import cli, create_model, load, save_checkpoint
from clipworks.errors import ClipworksError, DiskFullError
from clipworks.io import checkpoints, files
from clipworks.io.files import append_whole, torch_save, write_atomic, write_npz_atomic, write_text_atomic


def test_npz_files_are_written_whole_with_normal_permissions(tmp_path: Path) -> None:
    for compressed in (False, True):
        path = tmp_path / f"cache{compressed}.npz"
        write_npz_atomic(path, compressed=compressed, a=np.arange(5), b=np.array(["x", "y"]))
        with np.load(path) as f:
            assert f["a"].tolist() == [0, 1, 2, 3, 4] and f["b"].tolist() == ["x", "y"]
        assert oct(os.stat(path).st_mode & 0o777) == "0o644"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cacheFalse.npz", "cacheTrue.npz"]


def test_a_failed_write_keeps_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "report.json"
    write_text_atomic(path, "old")

    class Unsaveable:
        def __array__(self, *args: object, **kwargs: object) -> np.ndarray:
            raise RuntimeError("cannot convert")

    with pytest.raises(RuntimeError, match="cannot convert"):
        write_npz_atomic(path, a=Unsaveable())
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]


# ---- a full disk: one error naming the directory and the space, nothing half-written left ------------------------
@pytest.mark.parametrize("failure", [OSError(errno.ENOSPC, "No space left on device"),
                                     SafetensorError("Error while serializing: IoError(Os { code: 28, kind: "
                                                     "StorageFull, message: \"No space left on device\" })"),
                                     RuntimeError("[enforce fail at inline_container.cc:672] . PytorchStreamWriter "
                                                  "failed writing file data/0: file write failed")])
def test_every_writers_way_of_saying_disk_full_becomes_one_error(tmp_path: Path, failure: Exception,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    model = create_model("RN-Tiny", seed=0)
    save_checkpoint(tmp_path / "ckpt", model)
    before = (tmp_path / "ckpt" / "model.safetensors").read_bytes()

    def fail(*args: object, **kwargs: object) -> None:
        raise failure

    monkeypatch.setattr(checkpoints, "save_file", fail)
    with pytest.raises(DiskFullError, match=rf"no space left on the device of {tmp_path}: [\d,.]+ MB free, about "
                                            r"[\d,.]+ MB needed for ckpt; free some space"):
        save_checkpoint(tmp_path / "ckpt", model)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]  # the temporary directory is gone
    assert (tmp_path / "ckpt" / "model.safetensors").read_bytes() == before  # the old checkpoint is untouched
    assert isinstance(DiskFullError("x"), ClipworksError)  # the CLI prints it as one line, exit code 2


def test_a_save_that_fails_leaves_latest_on_the_previous_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                    capsys: pytest.CaptureFixture) -> None:
    saves = []

    def full_after_the_first_save(*args: object, **kwargs: object) -> None:
        saves.append(args[1])
        if len(saves) > 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_save_file(*args, **kwargs)

    real_save_file = checkpoints.save_file
    monkeypatch.setattr(checkpoints, "save_file", full_after_the_first_save)
    run = tmp_path / "run"
    code = cli.main(["train", "--model", "RN-Tiny", "--steps", "2", "--save-every", "1", "--batch-size", "4",
                     "--world-samples", "8", "--eval-every", "0", "--no-tensorboard", "--quiet", "--output-dir",
                     str(run)])
    err = capsys.readouterr().err
    assert len(saves) == 2 and code == 2 and len(err.strip().splitlines()) == 1
    assert f"no space left on the device of {run / 'checkpoints'}" in err
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["latest", "step_0000001"]  # no temporary
    assert (run / "checkpoints" / "latest").read_text() == "step_0000001"
    step_1 = run / "checkpoints" / "step_0000001"
    assert checkpoints.resolve_checkpoint(run) == step_1
    model, _ = load(run)
    weights = load_file(step_1 / "model.safetensors")
    assert all(torch.equal(model.state_dict()[name], tensor) for name, tensor in weights.items())
    assert checkpoints.load_training_state(step_1)["step"] == 1  # resumable


def test_other_write_errors_are_not_called_a_full_disk(tmp_path: Path) -> None:
    with pytest.raises(PermissionError):
        write_atomic(tmp_path / "x", lambda tmp: (_ for _ in ()).throw(PermissionError(errno.EACCES, "denied")))


# torch.save's zip writer out of room mid-file, as measured on a 1 MB tmpfs: "basic_ios::clear: iostream error", then
# this as the archive is closed. A failed write for any other reason reads the same.
STREAM_FAILURE = "[enforce fail at inline_container.cc:672] . unexpected pos 400704 vs 400656"


@pytest.mark.parametrize("free", [4096, 2**40])
def test_torch_saves_stream_error_is_a_full_disk_only_when_the_rest_cannot_fit(
        free: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    """The second save's training state fails mid-file; `free` bytes are left then (a full disk, or plenty)."""
    real_save, real_free, failed = torch.save, files.free_bytes, []

    def save_then_fail(obj: object, path: Path) -> None:
        if "step_0000001" in path.parent.name:  # the first save is written whole
            return real_save(obj, path)
        Path(path).write_bytes(b"PK\x03\x04" + bytes(4000))  # the part that was written
        failed.append(path)
        try:
            raise RuntimeError("basic_ios::clear: iostream error")
        except RuntimeError:
            raise RuntimeError(STREAM_FAILURE)

    monkeypatch.setattr(torch, "save", save_then_fail)
    monkeypatch.setattr(files, "free_bytes", lambda directory: free if failed else real_free(directory))
    run = tmp_path / "run"
    args = ["train", "--model", "RN-Tiny", "--steps", "2", "--save-every", "1", "--batch-size", "4",
            "--world-samples", "8", "--eval-every", "0", "--no-tensorboard", "--quiet", "--output-dir", str(run)]
    if free < 2**20:
        assert cli.main(args) == 2
        err = capsys.readouterr().err
        assert re.fullmatch(rf"clipworks train: error: no space left on the device of "
                            rf"{re.escape(str(run / 'checkpoints'))}: 4\.0 kB free, about [\d,.]+ MB needed for "
                            r"step_0000002; free some space or write somewhere else \(nothing was replaced\)\n", err)
    else:  # room enough: not a full disk, so a bug's traceback, not a misleading message
        with pytest.raises(RuntimeError, match=re.escape(STREAM_FAILURE)):
            cli.main(args)
    assert len(failed) == 1
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["latest", "step_0000001"]  # no temporary
    assert checkpoints.resolve_checkpoint(run).name == "step_0000001"
    assert checkpoints.load_training_state(run)["step"] == 1  # `latest` is still resumable


@contextlib.contextmanager
def _small_tmpfs(path: Path, size: str) -> Iterator[Path]:
    path.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                                           capture_output=True).returncode != 0:
        pytest.skip("mounting a small tmpfs needs root (or mount is refused here): the real full-disk cases cannot "
                    "run; the simulated ones (tests/test_full_disk_writers.py) still do")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def test_a_real_full_disk_mid_write_and_a_training_run_that_cannot_save(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    with _small_tmpfs(tmp_path / "small", "1m") as small:
        (small / "old.bin").write_bytes(b"old")
        with pytest.raises(DiskFullError, match=f"no space left on the device of {small}"):
            write_atomic(small / "old.bin", lambda tmp: Path(tmp).write_bytes(b"x" * 3 * 2**20))  # ENOSPC mid-write
        assert (small / "old.bin").read_bytes() == b"old" and [p.name for p in small.iterdir()] == ["old.bin"]
        monkeypatch.setenv("CLIPWORKS_CACHE", str(tmp_path))
        code = cli.main(["train", "--model", "RN-Tiny", "--steps", "1", "--batch-size", "4", "--world-samples", "8",
                         "--eval-every", "0", "--no-tensorboard", "--precision", "fp32", "--output-dir",
                         str(small / "run"), "--quiet"])
        err = capsys.readouterr().err
        assert code == 2, err
        assert f"no space left on the device of {small / 'run' / 'checkpoints'}" in err
        assert "MB needed" in err and len(err.strip().splitlines()) == 1
        assert not list((small / "run" / "checkpoints").glob(".*")) and not (small / "run" / "checkpoints" /
                                                                              "latest").exists()


def test_a_real_full_disk_mid_torch_save_is_one_error(tmp_path: Path) -> None:
    with _small_tmpfs(tmp_path / "small", "1m") as small:
        state = {"a": torch.zeros(100_000), "b": torch.zeros(600_000)}  # 2.8 MB: the disk fills in "b"
        with pytest.raises(DiskFullError, match=f"no space left on the device of {small}: 0 bytes free"):
            write_atomic(small / "state.pt", lambda tmp: torch_save(state, tmp))
        assert not list(small.iterdir())


def test_a_real_full_disk_under_clipworks_world_the_log_and_the_index_store(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from clipworks.search.store import Record, Store

    with _small_tmpfs(tmp_path / "small", "1m") as small:
        (small / "world").mkdir()
        (small / "world" / "captions.csv").write_text("earlier")
        assert cli.main(["world", "--n", "400", "--out", str(small / "world")]) == 2  # 400 PNGs of a 4 kB page each
        err = capsys.readouterr().err
        assert re.fullmatch(rf"clipworks world: error: no space left on the device of {small}: [\d,.]+ (MB|kB) free, "
                            r"not enough for 400 images and their CSVs; free some space or write somewhere else "
                            r"\(nothing was replaced\)\n", err), err
        assert (small / "world" / "captions.csv").read_text() == "earlier"
        assert sorted(p.relative_to(small).as_posix() for p in small.rglob("*")) == ["world", "world/captions.csv"]

        store = Store(small / "index")
        log = small / "log.jsonl"
        log.write_text('{"step": 1}\n')
        with open(small / "filler", "wb") as f, contextlib.suppress(OSError):  # takes the rest of the disk
            f.write(b"x" * 2**20)
        with pytest.raises(DiskFullError, match=rf"no space left on the device of {small}: .* for log.jsonl;"):
            append_whole(log, b'{"step": 2}\n' * 1000)
        assert log.read_text() == '{"step": 1}\n'
        record = Record("a.png", "src", "a caption", 1, 0, 8, 8, np.zeros(16, np.float32), bytes(50_000))
        with pytest.raises(DiskFullError, match=rf"no space left on the device of {small / 'index'}: .* about "
                                                r"[\d,.]+ kB needed for items.sqlite;"):
            store.put([record])
        assert len(store) == 0 and not list(small.rglob(".*")) and not list(small.rglob("*-journal"))
