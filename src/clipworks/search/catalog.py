"""The metadata of an index built from embeddings: a read-mostly SQLite file filled row by row from the parquet
shards, so a search looks up its k hits by id without any parquet file, or all rows, in memory.

It answers the read side of `Store` (entries, meta, counts), so `Index`, `clipworks search` and `serve` use either.
It has no thumbnails (the embeddings' images are not copied) and no vectors (they are in the faiss file only).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import SearchIndexError
from ..io.files import write_atomic
from .embeddings import EmbeddingShards
from .store import Entry, SqliteFile

CATALOG = "metadata.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS items (id INTEGER PRIMARY KEY, path TEXT NOT NULL, caption TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


def write_catalog(path: Path, shards: EmbeddingShards, meta: dict[str, str]) -> None:
    """Fill a new catalog from the shards' parquet rows, one batch per transaction, in a temporary file that then
    replaces `path` (a full disk: one DiskFullError, the temporary removed)."""

    def fill(tmp: str) -> None:
        db = sqlite3.connect(tmp)  # mkstemp's empty file is an empty database
        try:
            db.executescript(_SCHEMA)
            for start, paths, captions in shards.metadata_rows():
                with db:
                    db.executemany("INSERT INTO items VALUES (?, ?, ?)",
                                   zip(range(start, start + len(paths)), paths, captions))
            with db:
                db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", meta.items())
        finally:
            db.close()

    write_atomic(path, fill)


class Catalog(SqliteFile):
    """The catalog of one index directory, with `Store`'s read interface. Thread-safe as `Store` is."""

    def __init__(self, directory: str | Path) -> None:
        self.path = Path(directory) / CATALOG
        if not self.path.is_file():
            raise SearchIndexError(f"{self.path} is missing; rebuild the index with `clipworks index build "
                                   "--from-embeddings DIR --max-index-memory SIZE --out OUT`")
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False)

    def __len__(self) -> int:
        return int(self.get_meta("count") or 0)

    def n_skipped(self) -> int:
        return 0

    def vectors(self, dim: int) -> tuple[np.ndarray, np.ndarray]:
        raise SearchIndexError(f"{self.path.parent} keeps its vectors in index.faiss only, which is missing or "
                               "stale; rebuild it with `clipworks index build --from-embeddings`")

    def entries(self, ids: Sequence[int]) -> dict[int, Entry]:
        if not ids:
            return {}
        marks = ",".join("?" * len(ids))
        with self._lock:
            rows = self._db.execute(f"SELECT id, path, caption FROM items WHERE id IN ({marks})",
                                    [int(i) for i in ids]).fetchall()
        return {r[0]: Entry(r[0], r[1], r[2], 0, 0, 0) for r in rows}

    def thumbnail(self, item_id: int) -> bytes | None:
        return None
