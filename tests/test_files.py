"""Atomic writes keep the old file when writing fails and leave no temporaries."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from clipworks.io.files import write_npz_atomic, write_text_atomic


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
