"""Files written atomically: to a temporary sibling, then renamed over the target, so that readers (and a process
killed mid-write) see the old file or the new one, never a part; logs are appended a whole record or nothing. What is
written gets the modes a plain `open` and `mkdir` give under the umask (0644 and 0755 under umask 022), whatever the
temporary's (mkstemp's 0600, mkdtemp's 0700) or the writing library's (safetensors' save_file creates 0600).

A write that fails because the file system is full becomes one `DiskFullError` naming the directory, the space free,
the space needed where it is known (else what was being written), whatever library did the writing (an OSError
ENOSPC from Python, safetensors' SafetensorError, torch.save's RuntimeError, faiss's RuntimeError, SQLite's
"database or disk is full"); the temporary is removed and the target untouched. torch.save's zip writer reports a
write that failed mid-file only as a stream error, whatever the cause: `torch_save` calls that a full disk only when
the file system has no room left for the rest of the file.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch

from ..errors import DiskFullError

# Messages by which writers that do not raise OSError report a full disk.
_FULL_MESSAGES = ("no space left", "disk is full", "file write failed", "disk quota exceeded")
# How torch.save's zip writer reports any failed write of its stream: "basic_ios::clear: iostream error", then, as the
# archive is closed, "[enforce fail at inline_container.cc:672] . unexpected pos N vs M". Not by itself a full disk.
_STREAM_ERRORS = ("iostream error", "unexpected pos")
# What a torch.save file holds beyond its tensors' bytes (pickled structure, zip headers, 64-byte alignment): the
# room that must be left for a failed write to count as a full disk when all the tensor bytes were already written.
_ARCHIVE_OVERHEAD = 2**20


def free_bytes(directory: str | Path) -> int:
    """The bytes free on the file system of `directory` (of its nearest existing parent, if it is not made yet)."""
    directory = Path(directory).absolute()
    while not directory.exists() and directory != directory.parent:
        directory = directory.parent
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


def _size(n: int) -> str:
    if n >= 2**20 // 10:
        return f"{n / 2**20:,.1f} MB"
    return f"{n / 2**10:,.1f} kB" if n >= 2**10 else f"{n} bytes"


def _disk_full(directory: Path, needed: int, what: str) -> DiskFullError:
    need = f"about {_size(needed)} needed for {what}" if needed else f"not enough for {what}"
    return DiskFullError(f"no space left on the device of {directory}: {_size(free_bytes(directory))} free, {need}; "
                         "free some space or write somewhere else (nothing was replaced)")


def _is_full(e: BaseException) -> bool:
    return (isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT)
            or any(m in str(e).lower() for m in _FULL_MESSAGES))


@contextlib.contextmanager
def full_disk_is_one_error(directory: str | Path, needed: int = 0, *, what: str,
                           check_first: bool = True) -> Iterator[None]:
    """Writing `what` into `directory`: refused up front when `needed` bytes (if known) cannot fit, and an exception
    raised inside turned into DiskFullError when the disk is what failed. `check_first=False`: `needed` is an
    estimate for the message only (a database may fit new rows into pages it already has)."""
    if needed and check_first and free_bytes(directory) < needed:
        raise _disk_full(Path(directory), needed, what)
    try:
        yield
    except DiskFullError:
        raise
    except Exception as e:
        if not _is_full(e):
            raise
        raise _disk_full(Path(directory), needed, what) from None


def torch_save(obj: Any, path: str | Path) -> None:
    """`torch.save(obj, path)`; a stream error with less room left on the file system than the rest of the file
    would take (its tensors' bytes not yet written, plus the archive's overhead) is raised as OSError ENOSPC."""
    try:
        torch.save(obj, path)
    except RuntimeError as e:
        if not any(m in str(e) for m in _STREAM_ERRORS):
            raise
        path = Path(path)
        written = path.stat().st_size if path.exists() else 0
        if free_bytes(path.parent) >= max(nbytes(obj) - written, 0) + _ARCHIVE_OVERHEAD:
            raise  # room enough: something other than the disk failed
        raise OSError(errno.ENOSPC, f"No space left on device (torch.save: {e})") from e


def _umask() -> int:
    """The process's file-creation mask: from /proc/self/status on Linux, elsewhere read by setting it and back (for
    that moment a file another thread creates gets the stricter 0o077)."""
    with contextlib.suppress(OSError, ValueError, StopIteration):
        status = Path("/proc/self/status").read_text().splitlines()
        return int(next(line for line in status if line.startswith("Umask:")).split()[1], 8)
    mask = os.umask(0o077)
    os.umask(mask)
    return mask


def _give_normal_modes(root: Path) -> None:
    """`root` and everything under it get the modes a new file and directory get under the umask."""
    mask = _umask()
    for path in [root, *root.rglob("*")] if root.is_dir() else [root]:
        os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~mask)


def write_atomic(path: str | Path, write: Callable[[str], object], *, needed: int = 0) -> None:
    """`write(tmp)` to a temporary sibling of `path`, then rename it over `path`. The file gets a new file's mode
    (0644 under umask 022, not mkstemp's 0600); the temporary is removed on failure. `needed`: the bytes it will take
    at least, if known."""
    path = Path(path)
    with full_disk_is_one_error(path.parent, needed, what=path.name):
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        os.close(fd)
        try:
            write(tmp)
            _give_normal_modes(Path(tmp))
            os.replace(tmp, path)
        finally:
            Path(tmp).unlink(missing_ok=True)


def write_dir_atomic(path: str | Path, write: Callable[[Path], object], *, needed: int = 0,
                     keep_others: bool = False, what: str | None = None) -> Path:
    """`write(tmp)` fills a temporary sibling directory, which then replaces `path` (an existing one included). Its
    directories and files get a new one's mode (0755 and 0644 under umask 022, whatever mkdtemp or the writer gave
    them); the temporary is removed on failure. `keep_others`: move the
    written files into `path` one by one instead (subfolders merged), leaving files of other names in it alone
    (exports into a folder the user chose). `what`: how a full disk's message names it (default: its name)."""
    path = Path(path)
    with full_disk_is_one_error(path.parent, needed, what=what or path.name):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.tmp-"))
        try:
            write(tmp)
            _give_normal_modes(tmp)
            if keep_others:
                for file in sorted(p for p in tmp.rglob("*") if not p.is_dir()):
                    target = path / file.relative_to(tmp)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    os.replace(file, target)
                shutil.rmtree(tmp)
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


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    write_atomic(path, lambda tmp: Path(tmp).write_bytes(data), needed=len(data))


def write_text_atomic(path: str | Path, text: str) -> None:
    write_atomic(path, lambda tmp: Path(tmp).write_text(text), needed=len(text))  # a byte or more per character


def write_made_in_memory(path: str | Path, make: Callable[[BinaryIO], object]) -> None:
    """`make(f)` writes a file's bytes to `f`, here a buffer in memory; they then go to `path` atomically. For files
    whose size is known only once made (compressed arrays, PNG figures, parquet tables): a disk without room for
    them is refused before anything is written."""
    buffer = io.BytesIO()
    make(buffer)
    write_bytes_atomic(path, buffer.getvalue())


def write_npz_atomic(path: str | Path, *, compressed: bool = False, **arrays: np.ndarray) -> None:
    """`np.savez` (or `savez_compressed`, made in memory first) of `arrays` to `path`, atomically. Written through a
    file object: given a name, numpy would append ".npz" to the temporary's."""
    if compressed:
        write_made_in_memory(path, lambda f: np.savez_compressed(f, **arrays))
        return

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)

    write_atomic(path, write, needed=nbytes(arrays))


def append_whole(path: str | Path, data: bytes) -> None:
    """Append `data` to `path` (made if missing) whole or not at all: a write that fails (a full disk) cuts the file
    back to its old length, so the records before stay readable and no half record follows them."""
    path = Path(path)
    with full_disk_is_one_error(path.parent, len(data), what=path.name):
        existed = path.exists()
        with open(path, "ab", buffering=0) as f:
            size = f.seek(0, os.SEEK_END)
            try:
                view, done = memoryview(data), 0
                while done < len(data):  # an unbuffered write may take part of the data before the error
                    done += f.write(view[done:])
            except BaseException:
                f.truncate(size)
                if not existed:
                    path.unlink(missing_ok=True)
                raise


def cache_dir() -> Path:
    """Where clipworks caches what it can recompute (rendered world data): $CLIPWORKS_CACHE, else ~/.cache/clipworks."""
    return Path(os.environ.get("CLIPWORKS_CACHE", "~/.cache/clipworks")).expanduser()
