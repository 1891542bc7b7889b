"""Files written atomically: to a temporary sibling, then renamed over the target, so that readers (and a process
killed mid-write) see the old file or the new one, never a part."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np


def write_atomic(path: str | Path, write: Callable[[str], object]) -> None:
    """`write(tmp)` to a temporary sibling of `path`, then rename it over `path`. The file gets the usual 0644 mode
    (not mkstemp's 0600); the temporary is removed on failure."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def write_text_atomic(path: str | Path, text: str) -> None:
    write_atomic(path, lambda tmp: Path(tmp).write_text(text))


def write_npz_atomic(path: str | Path, *, compressed: bool = False, **arrays: np.ndarray) -> None:
    """`np.savez` (or `savez_compressed`) of `arrays` to `path`, atomically. Written through a file object: given a
    name, numpy would append ".npz" to the temporary's."""

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            (np.savez_compressed if compressed else np.savez)(f, **arrays)

    write_atomic(path, write)


def cache_dir() -> Path:
    """Where clipworks caches what it can recompute (rendered world data): $CLIPWORKS_CACHE, else ~/.cache/clipworks."""
    return Path(os.environ.get("CLIPWORKS_CACHE", "~/.cache/clipworks")).expanduser()
