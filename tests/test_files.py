"""Atomic writes keep the old file when writing fails and leave no temporaries; a full disk is one clear error."""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from safetensors import SafetensorError

from clipworks import cli, create_model, save_checkpoint
from clipworks.errors import ClipworksError, DiskFullError
from clipworks.io import checkpoints
from clipworks.io.files import write_atomic, write_npz_atomic, write_text_atomic


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


def test_other_write_errors_are_not_called_a_full_disk(tmp_path: Path) -> None:
    with pytest.raises(PermissionError):
        write_atomic(tmp_path / "x", lambda tmp: (_ for _ in ()).throw(PermissionError(errno.EACCES, "denied")))


@contextlib.contextmanager
def _small_tmpfs(path: Path, size: str) -> Iterator[Path]:
    path.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                                           capture_output=True).returncode != 0:
        pytest.skip("mounting a small tmpfs needs root (or mount is refused here): the real full-disk cases cannot "
                    "run; the simulated ones above still do")
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
