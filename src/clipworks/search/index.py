"""A searchable index of an image collection: CLIP image embeddings in faiss, metadata in a SQLite sidecar.

Search by text or image is CLIP's retrieval (Radford et al. 2021, Sec. 3.1.5 and Table 13) turned into a tool:
embed every image once, then rank them by cosine similarity (inner product of L2-normalised embeddings) to the
embedding of a query text or image.

An index directory holds
    items.sqlite   every image's path, caption, size, embedding and thumbnail (`store.py`); the source of truth
    index.faiss    the vectors in faiss, keyed by the items' ids; derived from items.sqlite
    index.json     the faiss kind and parameters, the store version index.faiss was built from, the checkpoint
Building is incremental and resumable by the same mechanism: images are embedded in chunks, each committed to
items.sqlite in one transaction, and an image whose (path, size, mtime) is already there is not embedded again. So a
second build embeds only new or changed files, and a build killed halfway resumes where its last chunk ended.
index.faiss and index.json are rewritten (atomically) at the end; if they are stale on load (a build was killed
after a commit), the faiss index is rebuilt from the store.

Index kinds: "flat" (exact inner product, the default), "ivf" (inverted lists: k-means cells, `nprobe` of them
searched) and "hnsw" (a graph, `ef_search` candidates). Their measured recall@10 and speed are in bench/RESULTS.md.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..data.images import UnreadableImage
from ..distributed import exit_with_parent
from ..errors import SearchIndexError
from ..hardware import resolve_precision
from ..io.checkpoints import load
from ..io.files import write_atomic, write_text_atomic
from ..io.pretrained import is_name
from ..models.clip import CLIP
from ..models.encode import embed_images, encode_texts
from ..models.inference import optimize_for_inference
from .catalog import Catalog
from .sources import Item, list_items, read_image
from .store import Entry, Record, Store

MANIFEST = "index.json"
FAISS_FILE = "index.faiss"
KINDS = ("flat", "ivf", "hnsw", "ivfpq", "opq-ivfpq")  # the last two only from embeddings (from_embeddings.py)
THUMBNAIL_SIZE = 256  # longer side of stored thumbnails, in pixels
SERVE_EXTRA = "pip install 'clipworks[serve]'"


def import_faiss() -> Any:
    try:
        import faiss
    except ImportError:
        raise SearchIndexError(f"search indexes need faiss, which is not installed: {SERVE_EXTRA}") from None
    return faiss


@dataclass(frozen=True)
class IndexSpec:
    """Which faiss index holds the vectors."""

    kind: str = "flat"  # flat (exact) | ivf | hnsw | ivfpq | opq-ivfpq (approximate)
    nlist: int | None = None  # ivf: number of k-means cells; None = 2 * sqrt(N), at least 39 vectors per cell
    nprobe: int = 32  # ivf: cells searched per query
    hnsw_m: int = 32  # hnsw: graph neighbours per vector
    ef_search: int = 128  # hnsw: candidate list length per query
    pq_m: int | None = None  # ivfpq, opq-ivfpq: code bytes per vector
    pq_nbits: int | None = None  # ivfpq, opq-ivfpq: bits per code

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise SearchIndexError(f"unknown index kind {self.kind!r}; choose one of {', '.join(KINDS)}")
        for name in ("nprobe", "hnsw_m", "ef_search") + (("nlist",) if self.nlist is not None else ()):
            if getattr(self, name) < 1:
                raise SearchIndexError(f"{name} must be at least 1, got {getattr(self, name)}")


def make_faiss_index(spec: IndexSpec, ids: np.ndarray, vectors: np.ndarray) -> Any:
    """A faiss index of `vectors` (N, D) float32, L2-normalised, searched by inner product, returning `ids`."""
    faiss = import_faiss()
    dim = vectors.shape[1]
    if spec.kind == "ivf" and len(vectors):
        nlist = min(spec.nlist or max(1, min(round(2 * math.sqrt(len(vectors))), len(vectors) // 39)), len(vectors))
        index = faiss.index_factory(dim, f"IVF{nlist},Flat", faiss.METRIC_INNER_PRODUCT)
        # k-means on at most 64 vectors per cell (a fixed random sample): enough for the cells, and it keeps
        # training at 1M vectors to about a minute on 2 cores.
        sample = np.random.default_rng(0).permutation(len(vectors))[:64 * nlist]
        index.train(vectors[np.sort(sample)])
        index.nprobe = spec.nprobe
    elif spec.kind == "hnsw":
        index = faiss.index_factory(dim, f"IDMap2,HNSW{spec.hnsw_m}", faiss.METRIC_INNER_PRODUCT)
    else:  # flat, or an empty ivf (nothing to train cells on yet)
        index = faiss.index_factory(dim, "IDMap2,Flat", faiss.METRIC_INNER_PRODUCT)
    if len(vectors):
        index.add_with_ids(vectors, ids)
    set_search_parameters(index, spec)
    return index


def write_faiss(index: Any, path: Path) -> None:
    """`faiss.write_index` atomically, refused up front when the vectors' codes alone cannot fit (floats for flat,
    IVF-Flat and HNSW, PQ bytes otherwise; ids, cells and graph links come on top)."""
    try:
        code = index.sa_code_size()
    except RuntimeError:  # HNSW has no standalone codes: it keeps the floats
        code = 4 * index.d
    write_atomic(path, lambda tmp: import_faiss().write_index(index, tmp), needed=index.ntotal * code)


def set_search_parameters(index: Any, spec: IndexSpec) -> None:
    faiss = import_faiss()
    if spec.kind == "hnsw":
        faiss.ParameterSpace().set_index_parameter(index, "efSearch", spec.ef_search)
    elif spec.kind in ("ivf", "ivfpq", "opq-ivfpq") and faiss.try_extract_index_ivf(index) is not None:
        faiss.ParameterSpace().set_index_parameter(index, "nprobe", spec.nprobe)  # also through an OPQ transform


def model_fingerprint(model: CLIP) -> str:
    """A hash of the weights: the same model gives the same key whatever its file format or path."""
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:24]


@dataclass(frozen=True)
class Hit:
    """One search result: the item's id, its cosine similarity to the query, and its metadata."""

    id: int
    score: float
    path: str
    caption: str
    size: int
    width: int
    height: int

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class BuildReport:
    embedded: int = 0  # images embedded by this run (new or changed)
    unchanged: int = 0  # already in the index with the same size and mtime
    removed: int = 0  # in the index from this source, but no longer in it
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason) of unreadable images met now


class _Embeddable(torch.utils.data.Dataset):
    """(index, pixels, thumbnail JPEG, width, height) per item, or (index, reason) for an unreadable one."""

    def __init__(self, items: list[Item], transform: Any) -> None:
        self.items, self.transform = items, transform

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple:
        try:
            image = read_image(self.items[i])
            pixels = self.transform(image)
            thumb = image.convert("RGB")
            thumb.thumbnail((THUMBNAIL_SIZE, THUMBNAIL_SIZE))
            buffer = io.BytesIO()
            thumb.save(buffer, "JPEG", quality=85)
        except UnreadableImage as e:
            return i, e.reason
        except Exception as e:  # a decoded image the transform or the JPEG encoder cannot take
            return i, f"{type(e).__name__}: {e}"
        return i, pixels, buffer.getvalue(), image.width, image.height


def _keep_list(batch: list) -> list:
    return batch


def _readable(loader: Iterable[list[tuple]], unreadable: list[tuple[int, str]], bar: Any
              ) -> Iterator[tuple[torch.Tensor, list[tuple]] | None]:
    """Per loader batch: (pixels, items) of its readable images, or None when it has none; the (index, reason) of
    each unreadable image is appended to `unreadable`."""
    for batch in loader:
        unreadable.extend(b for b in batch if len(b) == 2)
        good = [b for b in batch if len(b) == 5]
        bar.update(len(batch))
        yield (torch.stack([b[1] for b in good]), good) if good else None


class Index:
    """A search index directory: `Index.build(src, checkpoint=..., out=...)`, then `search("a red car", k=10)`.

    `Index.load(dir)` opens an existing one; the model is loaded on the first text or image query (from the
    checkpoint the index was built with, or the one given).
    """

    def __init__(self, directory: str | Path, *, checkpoint: str | Path | None = None, spec: IndexSpec | None = None,
                 device: str = "cpu", precision: str | None = None) -> None:
        self.directory = Path(directory)
        manifest = self._read_manifest()
        # Built from embeddings: metadata in a catalog, vectors only in index.faiss, which is memory-mapped.
        self.from_embeddings = manifest.get("source") == "embeddings"
        self.store: Store | Catalog = Catalog(self.directory) if self.from_embeddings else Store(self.directory)
        self.spec = spec or IndexSpec(**manifest.get("spec", {}))
        self.checkpoint = str(checkpoint) if checkpoint is not None else self.store.get_meta("checkpoint")
        self.device = device
        # The precision of the copy that embeds images and queries; None: the one the index was built at (indexes
        # from before it was recorded were fp32), so queries are computed as the stored vectors were.
        self.precision = precision or self.store.get_meta("precision") or "fp32"
        self._model: CLIP | None = None
        self._query_model: CLIP | None = None
        self._preprocess: Any = None
        self._faiss: Any = None
        if manifest and (self.directory / FAISS_FILE).is_file() and manifest.get("version") == self.store.version:
            faiss = import_faiss()
            # IO_FLAG_MMAP maps IVF lists; IO_FLAG_MMAP_IFC (faiss >= 1.10) the vectors of flat and HNSW indexes
            # (with it, faiss refuses to map IVF lists: one or the other).
            flat = self.spec.kind in ("flat", "hnsw")
            mmap = faiss.IO_FLAG_MMAP | (getattr(faiss, "IO_FLAG_MMAP_IFC", 0) if flat else 0)
            flags = mmap | faiss.IO_FLAG_READ_ONLY if self.from_embeddings else 0
            self._faiss = faiss.read_index(str(self.directory / FAISS_FILE), flags)
            set_search_parameters(self._faiss, self.spec)

    # ---------------------------------------------------------------- opening
    @classmethod
    def load(cls, directory: str | Path, *, checkpoint: str | Path | None = None, device: str = "cpu",
             precision: str | None = None) -> Index:
        """Open an index directory `build` wrote. A stale faiss file (a build stopped early) is rebuilt in memory."""
        directory = Path(directory)
        if not (directory / MANIFEST).is_file() and not (directory / "items.sqlite").is_file():
            raise SearchIndexError(f"{directory} is not a search index (no {MANIFEST}); create one with "
                                   "`clipworks index build SRC --checkpoint CKPT --out DIR`")
        return cls(directory, checkpoint=checkpoint, device=device, precision=precision)

    @classmethod
    def build(cls, source: str | Path, *, checkpoint: str | Path, out: str | Path, spec: IndexSpec | None = None,
              batch_size: int = 64, workers: int = 0, precision: str = "auto", device: str = "cpu",
              image_key: str = "filepath", caption_key: str = "caption", chunk: int = 1024,
              progress: bool = True) -> tuple[Index, BuildReport]:
        """Create or update the index at `out` from `source` (image folder, CSV or shards) and save it.

        Incremental: only new or changed images are embedded; images of `source` that are gone are dropped.
        """
        precision = resolve_precision(precision, device).name  # recorded, so later queries match the vectors
        index = cls(out, checkpoint=checkpoint, spec=spec, device=device, precision=precision)
        index.store.set_meta("precision", precision)
        report = index.add(source, batch_size=batch_size, workers=workers, image_key=image_key,
                           caption_key=caption_key, chunk=chunk, progress=progress, prune=True)
        index.save()
        return index, report

    # ---------------------------------------------------------------- the model
    @property
    def model(self) -> CLIP:
        if self._model is None:
            if self.checkpoint is None:
                raise SearchIndexError(f"{self.directory} records no checkpoint; pass the one it was built with")
            model, self._preprocess = load(self.checkpoint, device=self.device)
            stored_dim = self.store.get_meta("embed_dim")
            if stored_dim is not None and int(stored_dim) != model.config.embed_dim:
                raise SearchIndexError(f"{self.checkpoint} embeds into {model.config.embed_dim} dimensions but the "
                                       f"vectors of {self.directory} have {stored_dim}; use the model that made them")
            fingerprint, stored = model_fingerprint(model), self.store.get_meta("fingerprint")
            if stored is not None and stored != fingerprint:
                raise SearchIndexError(f"{self.checkpoint} is not the model {self.directory} was built with "
                                       f"({self.store.get_meta('checkpoint')}); its embeddings are not comparable. "
                                       "Use that checkpoint, or build a new index with --out")
            self.store.set_meta("fingerprint", fingerprint)
            named = is_name(self.checkpoint)  # a pretrained name stays a name: it means the same weights anywhere
            self.store.set_meta("checkpoint", self.checkpoint if named else str(Path(self.checkpoint).resolve()))
            self.store.set_meta("embed_dim", str(model.config.embed_dim))
            self._model = model
        return self._model

    @property
    def query_model(self) -> CLIP:
        """The model's `optimize_for_inference` copy at the index's precision, which embeds images and queries: in fp32
        equal to the model within 1e-5; bf16 (where `auto` picks it: a CPU with native bf16) at cosine >= 0.999."""
        if self._query_model is None:
            self._query_model = optimize_for_inference(self.model, self.precision)
        return self._query_model

    @property
    def preprocess(self) -> Any:
        self.model  # noqa: B018 -- loads the model and its preprocessing
        return self._preprocess

    @property
    def embed_dim(self) -> int:
        stored = self.store.get_meta("embed_dim")
        return int(stored) if stored is not None else self.model.config.embed_dim

    def __len__(self) -> int:
        return len(self.store)

    # ---------------------------------------------------------------- adding images
    @torch.no_grad()
    def add(self, source: str | Path, *, batch_size: int = 64, workers: int = 0, image_key: str = "filepath",
            caption_key: str = "caption", chunk: int = 1024, progress: bool = True,
            prune: bool = False) -> BuildReport:
        """Embed the new or changed images of `source`, committing every `chunk` images. `prune`: also drop the
        images that came from `source` before and are no longer in it. Call `save()` to write the faiss file."""
        from tqdm import tqdm

        items, source_key = list_items(source, image_key=image_key, caption_key=caption_key)
        model = self.model  # loads it, and refuses a checkpoint other than the index's, before anything changes
        states = self.store.states()
        report = BuildReport()
        todo = []
        for item in items:
            if states.get(item.path) == (item.size, item.mtime_ns):
                report.unchanged += 1
            else:
                todo.append(item)
        if prune:
            gone = self.store.paths_of(source_key) - {item.path for item in items}
            report.removed = self.store.remove(gone) if gone else 0
        # Folded, prepacked weights (bench/RESULTS.md for the speed on each CPU class), shared with the queries.
        if todo:
            model = self.query_model
        loader = torch.utils.data.DataLoader(_Embeddable(todo, self.preprocess), batch_size=batch_size,
                                             num_workers=workers, collate_fn=_keep_list,
                                             worker_init_fn=exit_with_parent)
        records: list[Record] = []
        bad: list[tuple[str, str, int, int, str]] = []
        bar = tqdm(total=len(todo), desc="embedding", unit="img", disable=not progress or not todo)
        unreadable: list[tuple[int, str]] = []

        def take_unreadable() -> None:
            for i, reason in unreadable:
                item = todo[i]
                bad.append((item.path, source_key, item.size, item.mtime_ns, reason))
                report.skipped.append((item.path, reason))
            unreadable.clear()

        for vectors, good in embed_images(model, _readable(loader, unreadable, bar)):
            take_unreadable()
            for (i, _, thumb, width, height), vector in zip(good, vectors.numpy()):
                item = todo[i]
                records.append(Record(item.path, source_key, item.caption, item.size, item.mtime_ns, width,
                                      height, vector, thumb))
            if len(records) + len(bad) >= chunk:
                self.store.put(records, bad)  # one transaction: a crash after it keeps these
                report.embedded += len(records)
                records, bad = [], []
        take_unreadable()
        self.store.put(records, bad)
        report.embedded += len(records)
        bar.close()
        if len(items) and len(report.skipped) == len(todo) == len(items):
            raise SearchIndexError(f"none of the {len(items)} images in {source} could be read, e.g. "
                                   f"{report.skipped[0][0]} ({report.skipped[0][1]})")
        self._faiss = None  # rebuilt from the store on the next search or save
        return report

    # ---------------------------------------------------------------- faiss and saving
    @property
    def faiss_index(self) -> Any:
        if self._faiss is None:
            ids, vectors = self.store.vectors(self.embed_dim)
            self._faiss = make_faiss_index(self.spec, ids, vectors)
        return self._faiss

    def save(self) -> None:
        """Write index.faiss and index.json atomically (the store is already committed)."""
        version = self.store.version
        manifest = {"format": 1, "spec": self.spec.__dict__, "version": version, "count": len(self.store),
                    "embed_dim": self.embed_dim, "checkpoint": self.store.get_meta("checkpoint")}
        write_faiss(self.faiss_index, self.directory / FAISS_FILE)
        write_text_atomic(self.directory / MANIFEST, json.dumps(manifest, indent=2))

    def _read_manifest(self) -> dict[str, Any]:
        path = self.directory / MANIFEST
        if not path.is_file():
            return {}
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise SearchIndexError(f"{path} is not valid JSON ({e}); delete it to rebuild it from the store") from e

    # ---------------------------------------------------------------- searching
    @torch.no_grad()
    def encode_text(self, texts: list[str]) -> np.ndarray:
        """(N, E) float32 L2-normalised text embeddings."""
        return encode_texts(self.query_model, texts).numpy()

    @torch.no_grad()
    def encode_image(self, image: Image.Image) -> np.ndarray:
        """(1, E) float32 L2-normalised embedding of one PIL image, preprocessed as the indexed images were."""
        (vector, _), = embed_images(self.query_model, [(self.preprocess(image).unsqueeze(0), None)])
        return vector.numpy()

    def search(self, query: str | Image.Image | np.ndarray, k: int = 10) -> list[Hit]:
        """The k images most similar to a text, an image or an embedding (E,), best first."""
        if k < 1:
            raise SearchIndexError(f"k must be at least 1, got {k}")
        if isinstance(query, str):
            vector = self.encode_text([query])
        elif isinstance(query, Image.Image):
            vector = self.encode_image(query)
        else:
            vector = np.asarray(query, dtype=np.float32).reshape(1, -1)
            vector = vector / max(float(np.linalg.norm(vector)), 1e-12)
        return self.search_vectors(vector, k)[0]

    def search_vectors(self, vectors: np.ndarray, k: int) -> list[list[Hit]]:
        """Top-k hits for each row of `vectors` (Q, E) float32, L2-normalised."""
        index = self.faiss_index
        k = min(k, index.ntotal)
        if k == 0:
            return [[] for _ in range(len(vectors))]
        scores, ids = index.search(np.ascontiguousarray(vectors, dtype=np.float32), k)
        entries = self.store.entries(sorted({int(i) for i in ids.ravel() if i >= 0}))
        return [[_hit(entries[int(i)], float(s)) for s, i in zip(row_s, row_i) if int(i) in entries]
                for row_s, row_i in zip(scores, ids)]

    def thumbnail(self, item_id: int) -> bytes | None:
        return self.store.thumbnail(item_id)

    def describe(self) -> str:
        return (f"{len(self)} images, {self.spec.kind} index, embed dim {self.embed_dim}"
                + (f", {self.store.n_skipped()} unreadable skipped" if self.store.n_skipped() else ""))


def _hit(entry: Entry, score: float) -> Hit:
    return Hit(entry.id, score, entry.path, entry.caption, entry.size, entry.width, entry.height)


def iter_hits_table(hits: list[Hit]) -> Iterator[str]:
    """Lines of a plain-text results table."""
    yield f"{'rank':>4}  {'score':>6}  {'id':>6}  path / caption"
    for rank, hit in enumerate(hits, 1):
        yield f"{rank:>4}  {hit.score:>6.3f}  {hit.id:>6}  {hit.path}" + (f"  {hit.caption}" if hit.caption else "")
