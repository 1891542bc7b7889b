"""The sidecar store of a search index: one SQLite file holding every indexed image's metadata, embedding and
thumbnail.

SQLite because each write is one transaction: `put` commits a whole chunk of embedded images or nothing, so a crash
mid-build loses at most the chunk in flight, and a second build finds everything committed before it. Rows are keyed
by the image's `path` (a resolved file path, or `shard.tar#key` for a webdataset sample); `size` and `mtime_ns` tell
whether the file changed since it was embedded. An image changed in place keeps its id (an update, not a new row),
so ids, and the thumbnail URLs made from them, stay stable across rebuilds.

Thumbnails are stored, not read from the user's files at serving time: the server never opens a path that a request
could influence, only rows of this table by integer id.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..io.files import full_disk_is_one_error

STORE = "items.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    id INTEGER PRIMARY KEY,
    path TEXT UNIQUE NOT NULL,     -- resolved file path, or shard.tar#key
    source TEXT NOT NULL,          -- the SRC it came from (a rebuild of SRC drops its rows whose file is gone)
    caption TEXT NOT NULL,
    size INTEGER NOT NULL,         -- bytes of the image file (or tar member)
    mtime_ns INTEGER NOT NULL,     -- of the file (or shard)
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    vector BLOB NOT NULL,          -- float32 (embed_dim,), L2-normalised
    thumbnail BLOB NOT NULL        -- JPEG, longer side at most THUMBNAIL_SIZE
);
CREATE TABLE IF NOT EXISTS skipped (  -- unreadable images, not retried until their size or mtime changes
    path TEXT PRIMARY KEY, source TEXT NOT NULL, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL,
    reason TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


@dataclass(frozen=True)
class Record:
    """One embedded image, as `Store.put` takes it."""

    path: str
    source: str
    caption: str
    size: int
    mtime_ns: int
    width: int
    height: int
    vector: np.ndarray  # float32 (embed_dim,)
    thumbnail: bytes


@dataclass(frozen=True)
class Entry:
    """What a search result shows about an image."""

    id: int
    path: str
    caption: str
    size: int
    width: int
    height: int


class SqliteFile:
    """One SQLite connection used under a lock (the server's worker threads share it), with a `meta` key/value
    table: what `Store` and the catalog of an index built from embeddings (catalog.py) have in common."""

    path: Path
    _lock: threading.Lock
    _db: sqlite3.Connection

    @contextlib.contextmanager
    def _writing(self, needed: int = 0) -> Iterator[None]:
        """A transaction under the lock; a full disk ("database or disk is full") is one DiskFullError, the
        transaction rolled back. `needed`: the bytes of the rows written, for the message."""
        with full_disk_is_one_error(self.path.parent, needed, what=self.path.name, check_first=False), self._lock, \
                self._db:
            yield

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def get_meta(self, key: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        with self._writing():
            self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    @property
    def version(self) -> int:
        """Bumped by every change to the items: the faiss file records the version it was built from."""
        return int(self.get_meta("version") or 0)


class Store(SqliteFile):
    """The SQLite file of one index directory. Thread-safe: one connection, used under a lock (the server's worker
    threads share it)."""

    def __init__(self, directory: str | Path) -> None:
        self.path = Path(directory) / STORE
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False)
        with self._writing():
            self._db.executescript(_SCHEMA)

    # ---------------------------------------------------------------- reads
    def states(self) -> dict[str, tuple[int, int]]:
        """path -> (size, mtime_ns) of every embedded or skipped image."""
        with self._lock:
            rows = self._db.execute("SELECT path, size, mtime_ns FROM items UNION ALL "
                                    "SELECT path, size, mtime_ns FROM skipped").fetchall()
        return {path: (size, mtime) for path, size, mtime in rows}

    def paths_of(self, source: str) -> set[str]:
        with self._lock:
            rows = self._db.execute("SELECT path FROM items WHERE source = ? UNION ALL "
                                    "SELECT path FROM skipped WHERE source = ?", (source, source)).fetchall()
        return {r[0] for r in rows}

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM items").fetchone()[0]

    def n_skipped(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM skipped").fetchone()[0]

    def vectors(self, dim: int) -> tuple[np.ndarray, np.ndarray]:
        """(ids (N,) int64, vectors (N, dim) float32) of all items, in id order."""
        with self._lock:
            rows = self._db.execute("SELECT id, vector FROM items ORDER BY id").fetchall()
        ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        vectors = np.empty((len(rows), dim), dtype=np.float32)
        for i, (_, blob) in enumerate(rows):
            vectors[i] = np.frombuffer(blob, dtype=np.float32)
        return ids, vectors

    def entries(self, ids: Sequence[int]) -> dict[int, Entry]:
        if not ids:
            return {}
        marks = ",".join("?" * len(ids))
        with self._lock:
            rows = self._db.execute(f"SELECT id, path, caption, size, width, height FROM items WHERE id IN ({marks})",
                                    [int(i) for i in ids]).fetchall()
        return {r[0]: Entry(*r) for r in rows}

    def thumbnail(self, item_id: int) -> bytes | None:
        """The JPEG of item `item_id`, or None when there is none (any int: ids beyond SQLite's 64-bit integers
        have no row, and sqlite3 would raise OverflowError on them)."""
        if not -(2**63) <= item_id < 2**63:
            return None
        with self._lock:
            row = self._db.execute("SELECT thumbnail FROM items WHERE id = ?", (item_id,)).fetchone()
        return row[0] if row else None

    # ---------------------------------------------------------------- writes (one transaction each)
    def put(self, records: Iterable[Record], skipped: Iterable[tuple[str, str, int, int, str]] = ()) -> None:
        """Insert or update embedded images (by path, keeping ids) and record unreadable ones, in one commit."""
        records, skipped = list(records), list(skipped)
        if not records and not skipped:
            return
        needed = sum(4 * r.vector.size + len(r.thumbnail) + len(r.path) + len(r.caption) for r in records)
        with self._writing(needed):
            self._db.executemany(
                "INSERT INTO items (path, source, caption, size, mtime_ns, width, height, vector, thumbnail) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(path) DO UPDATE SET source = excluded.source, "
                "caption = excluded.caption, size = excluded.size, mtime_ns = excluded.mtime_ns, "
                "width = excluded.width, height = excluded.height, vector = excluded.vector, "
                "thumbnail = excluded.thumbnail",
                [(r.path, r.source, r.caption, r.size, r.mtime_ns, r.width, r.height,
                  np.ascontiguousarray(r.vector, dtype=np.float32).tobytes(), r.thumbnail) for r in records])
            self._db.executemany("DELETE FROM skipped WHERE path = ?", [(r.path,) for r in records])
            self._db.executemany("INSERT OR REPLACE INTO skipped VALUES (?, ?, ?, ?, ?)", skipped)
            self._db.executemany("DELETE FROM items WHERE path = ?", [(s[0],) for s in skipped])
            self._bump()

    def remove(self, paths: Iterable[str]) -> int:
        """Forget these images (embedded or skipped); returns how many embedded ones were removed."""
        paths = [(p,) for p in paths]
        with self._writing():
            before = self._db.total_changes
            self._db.executemany("DELETE FROM items WHERE path = ?", paths)
            removed = self._db.total_changes - before
            self._db.executemany("DELETE FROM skipped WHERE path = ?", paths)
            self._bump()
        return removed

    def _bump(self) -> None:
        self._db.execute("INSERT INTO meta VALUES ('version', '1') "
                         "ON CONFLICT(key) DO UPDATE SET value = CAST(value AS INTEGER) + 1")
