"""Files written atomically: to a temporary sibling, then renamed over the target, so that readers (and a process
killed mid-write) see the old file or the new one, never a part.

A write that fails because the file system is full becomes one `DiskFullError` naming the directory, the space free
and the space needed, whatever library did the writing (an OSError ENOSPC from Python, safetensors' SafetensorError,
torch.save's RuntimeError, SQLite's "database or disk is full"); the temporary is removed and the target untouched.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import DiskFullError

# Messages by which writers that do not raise OSError report a full disk.
_FULL_MESSAGES = ("no space left", "disk is full", "file write failed", "disk quota exceeded")


def free_bytes(directory: str | Path) -> int:
    return shutil.disk_usage(directory).free


def nbytes(obj: Any) -> int:
    """The bytes of every tensor and array in a nested structure: what writing it will need, roughly."""
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, np.ndarray):
        return obj.nbytes
    if isinstance(obj, dict):
        return sum(nbytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(nbytes(v) for v in obj)
    return 0


def _disk_full(directory: Path, needed: int) -> DiskFullError:
    mb = lambda n: f"{n / 2**20:,.1f} MB"  # noqa: E731
    need = f", about {mb(needed)} needed" if needed else ""
    return DiskFullError(f"no space left on the device of {directory}: {mb(free_bytes(directory))} free{need}; free "
                         "some space or write somewhere else (nothing was replaced)")


@contextlib.contextmanager
def full_disk_is_one_error(directory: str | Path, needed: int = 0) -> Iterator[None]:
    """Writing into `directory`: refused up front when `needed` bytes (if known) cannot fit, and an exception raised
    inside turned into DiskFullError when the disk is what failed."""
    if needed and free_bytes(directory) < needed:
        raise _disk_full(Path(directory), needed)
    try:
        yield
    except DiskFullError:
        raise
    except Exception as e:
        full = (isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT)
                or any(m in str(e).lower() for m in _FULL_MESSAGES))
        if not full:
            raise
        raise _disk_full(Path(directory), needed) from None


def write_atomic(path: str | Path, write: Callable[[str], object], *, needed: int = 0) -> None:
    """`write(tmp)` to a temporary sibling of `path`, then rename it over `path`. The file gets the usual 0644 mode
    (not mkstemp's 0600); the temporary is removed on failure. `needed`: the bytes it will take, if known."""
    path = Path(path)
    with full_disk_is_one_error(path.parent, needed):
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        os.close(fd)
        try:
            write(tmp)
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        finally:
            Path(tmp).unlink(missing_ok=True)


def write_dir_atomic(path: str | Path, write: Callable[[Path], object], *, needed: int = 0,
                     keep_others: bool = False) -> Path:
    """`write(tmp)` fills a temporary sibling directory, which then replaces `path` (an existing one included). The
    directory gets mode 0755 (not mkdtemp's 0700); the temporary is removed on failure. `keep_others`: move the
    written files into `path` one by one instead, leaving files of other names in it alone (exports into a folder
    the user chose)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with full_disk_is_one_error(path.parent, needed):
        tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.tmp-"))
        try:
            write(tmp)
            os.chmod(tmp, 0o755)
            if keep_others:
                path.mkdir(exist_ok=True)
                for file in tmp.iterdir():
                    os.replace(file, path / file.name)
                tmp.rmdir()
            elif path.exists():
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


def write_text_atomic(path: str | Path, text: str) -> None:
    write_atomic(path, lambda tmp: Path(tmp).write_text(text))


def write_npz_atomic(path: str | Path, *, compressed: bool = False, **arrays: np.ndarray) -> None:
    """`np.savez` (or `savez_compressed`) of `arrays` to `path`, atomically. Written through a file object: given a
    name, numpy would append ".npz" to the temporary's."""

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            (np.savez_compressed if compressed else np.savez)(f, **arrays)

    write_atomic(path, write, needed=nbytes(arrays))


def cache_dir() -> Path:
    """Where clipworks caches what it can recompute (rendered world data): $CLIPWORKS_CACHE, else ~/.cache/clipworks."""
    return Path(os.environ.get("CLIPWORKS_CACHE", "~/.cache/clipworks")).expanduser()
