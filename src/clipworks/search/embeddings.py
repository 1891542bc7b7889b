"""A directory of precomputed embeddings in clip-retrieval's layout (what `clipworks embed` writes):

    DIR/img_emb/img_emb_NNNNN.npy            (rows, d) float16 or float32, L2-normalised
    DIR/metadata/metadata_NNNNN.parquet      one row per embedding row, in the same order: image_path, caption, ...
    DIR/text_emb/text_emb_NNNNN.npy          optional (`embed --text`): (rows, d) the captions' embeddings, row-aligned

Shard NNNNN's rows get the global ids that follow those of the shards before it (by name), so id = the row's
position in the concatenation of all shards. The .npy files are memory-mapped and read a chunk at a time: a
collection larger than memory never needs to fit in it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import SearchIndexError

PARQUET_EXTRA = "pip install 'clipworks[embed]'"
PATH_COLUMNS = ("image_path", "path", "key", "url")  # the first present names the image of each row


@dataclass(frozen=True)
class Shard:
    vectors: Path  # img_emb_NNNNN.npy
    metadata: Path | None  # metadata_NNNNN.parquet, when there is one
    text: Path | None  # text_emb_NNNNN.npy, when the directory has caption embeddings
    rows: int
    start: int  # global id of its first row


class EmbeddingShards:
    """The shards of DIR, checked: at least one row, one dimension, float16/32 2-D arrays, metadata row counts, and
    caption embeddings (if any) for every shard, row-aligned with its images."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        if not self.directory.is_dir():
            raise SearchIndexError(f"{self.directory} does not exist; give the --out directory of `clipworks embed`")
        files = sorted((self.directory / "img_emb").glob("img_emb_*.npy"))
        self.has_text = any((self.directory / "text_emb").glob("text_emb_*.npy"))
        if not files:
            raise SearchIndexError(f"{self.directory} holds no embeddings (no img_emb/img_emb_*.npy); give the "
                                   "--out directory of `clipworks embed`")
        self.shards: list[Shard] = []
        self.dim: int | None = None
        start = 0
        for path in files:
            array = _open(path)
            _check_array(path, array)
            if self.dim is None:
                self.dim = array.shape[1]
            elif array.shape[1] != self.dim:
                raise SearchIndexError(f"{path} has dimension {array.shape[1]}, but {files[0].name} has {self.dim}: "
                                       "all shards must come from one model")
            suffix = re.sub(r"^img_emb_", "", path.stem)
            meta = self.directory / "metadata" / f"metadata_{suffix}.parquet"
            text = self.directory / "text_emb" / f"text_emb_{suffix}.npy" if self.has_text else None
            if text is not None:
                self._check_text(text, path, array.shape[0])
            self.shards.append(Shard(path, meta if meta.is_file() else None, text, array.shape[0], start))
            start += array.shape[0]
        self.count = start
        if self.count == 0:
            raise SearchIndexError(f"the embeddings in {self.directory} have no rows")

    def _check_text(self, text: Path, images: Path, rows: int) -> None:
        """text_emb_NNNNN.npy: present, float16/32, the images' dimension and row count (caption i is image i's)."""
        fix = (f"complete it with `clipworks embed --text`, or remove {self.directory / 'text_emb'} to tune on "
               "images only")
        if not text.is_file():
            raise SearchIndexError(f"{text.parent} has caption embeddings for some shards but not {text.name}; {fix}")
        array = _open(text)
        _check_array(text, array)
        if array.shape != (rows, self.dim):
            raise SearchIndexError(f"{text} has shape {array.shape} but {images.name} has {(rows, self.dim)}: caption "
                                   f"embeddings must be row-aligned with the images, from the same model; {fix}")

    def chunks(self, rows: int) -> Iterator[tuple[int, np.ndarray]]:
        """(first global id, (<= rows, d) float32) over every row in id order; one chunk in memory at a time."""
        for shard in self.shards:
            array = _open(shard.vectors)
            for begin in range(0, shard.rows, rows):
                yield shard.start + begin, np.ascontiguousarray(array[begin:begin + rows], dtype=np.float32)

    def take(self, ids: np.ndarray, *, text: bool = False) -> np.ndarray:
        """(len(ids), d) float32 rows of these global ids (sorted or not): image embeddings, or with `text` those
        of the rows' captions."""
        ids = np.asarray(ids, dtype=np.int64)
        out = np.empty((len(ids), self.dim), dtype=np.float32)
        starts = np.array([s.start for s in self.shards])
        which = np.searchsorted(starts, ids, side="right") - 1
        for s in np.unique(which):
            picked = which == s
            shard = self.shards[s]
            local = ids[picked] - shard.start
            order = np.argsort(local)  # sequential reads from the mapped file
            rows = np.empty((len(local), self.dim), dtype=np.float32)
            rows[order] = _open(shard.text if text else shard.vectors)[local[order]]
            out[picked] = rows
        return out

    def metadata_rows(self, batch: int = 65_536) -> Iterator[tuple[int, list[str], list[str]]]:
        """(first global id, image paths, captions) per batch of parquet rows, streamed (never a whole file).
        A shard without a metadata file gives paths "img_emb_NNNNN.npy#ROW" and empty captions."""
        for shard in self.shards:
            if shard.metadata is None:
                for begin in range(0, shard.rows, batch):
                    ids = range(begin, min(begin + batch, shard.rows))
                    yield shard.start + begin, [f"{shard.vectors.name}#{i}" for i in ids], [""] * len(ids)
                continue
            pq = import_parquet()
            table = pq.ParquetFile(shard.metadata)
            names = table.schema_arrow.names
            if table.metadata.num_rows != shard.rows:
                raise SearchIndexError(f"{shard.metadata} has {table.metadata.num_rows} rows but {shard.vectors.name} "
                                       f"has {shard.rows}: each metadata row describes one embedding row")
            path_column = next((c for c in PATH_COLUMNS if c in names), None)
            columns = [c for c in (path_column, "caption") if c is not None and c in names]
            begin = 0
            for record_batch in table.iter_batches(batch_size=batch, columns=columns or None):
                n = record_batch.num_rows
                data = record_batch.to_pydict()
                paths = ([str(p) for p in data[path_column]] if path_column
                         else [f"{shard.vectors.name}#{i}" for i in range(begin, begin + n)])
                captions = [c or "" for c in data["caption"]] if "caption" in data else [""] * n
                yield shard.start + begin, paths, captions
                begin += n


def _check_array(path: Path, array: np.ndarray) -> None:
    if array.ndim != 2 or array.dtype not in (np.float16, np.float32):
        raise SearchIndexError(f"{path} holds a {array.dtype} array of shape {array.shape}; expected (rows, dim) "
                               "float16 or float32")


def _open(path: Path) -> np.ndarray:
    try:
        return np.load(path, mmap_mode="r")
    except (ValueError, OSError) as e:
        raise SearchIndexError(f"{path} is not a readable .npy array ({e})") from None


def import_parquet():  # noqa: ANN201 -- pyarrow.parquet, an optional module
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise SearchIndexError(f"reading metadata parquet files needs pyarrow, which is not installed: "
                               f"{PARQUET_EXTRA}") from None
    return pq
