"""`clipworks index build --from-embeddings DIR --max-index-memory SIZE`: an index of precomputed embeddings, of the
kind that fits the budget (`budget.py`), built without ever holding the embeddings in memory.

    1. choose      the kind and its parameters from N, d and the budget
    2. hold out    Q rows as queries (not trained on); the rest may be sampled for training
    3. train       k-means cells (and PQ codebooks, OPQ rotation) on a sample of at most ~64 rows per cell
    4. add         every row, a chunk at a time from the memory-mapped shards; in the same pass, the queries' exact
                   top-10 (brute force over the chunk) is merged, so ground truth costs no second read
    5. tune        the smallest nprobe (IVF) or efSearch (HNSW) whose recall@10 on the held-out queries reaches the
                   target, else the best measured
    6. write       index.faiss, metadata.sqlite (from the parquet rows) and, last, index.json (kind, parameters,
                   estimated and actual size, recall@10 and queries/s at the chosen setting)

recall@10 is |found top-10 ∩ exact top-10| / 10, averaged over the queries; each query is a row of the collection,
and its own row is left out of both lists (it would be an easy first hit). Queries are rows of the collection, so
the figure is an estimate for queries like them; text queries are another distribution.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import SearchIndexError
from ..io.files import write_atomic, write_text_atomic
from ..io.pretrained import is_name
from .budget import PQ_NBITS, IndexPlan, choose_index, format_size
from .catalog import CATALOG, write_catalog
from .embeddings import EmbeddingShards
from .index import FAISS_FILE, MANIFEST, IndexSpec, import_faiss, set_search_parameters
from .store import STORE

K = 10  # recall@K
TRAIN_PER_CELL = 64  # k-means sample per IVF cell (faiss needs at least 39)
PQ_TRAIN = 40 * 2**PQ_NBITS  # PQ codebooks: 40 rows per code centroid (faiss warns below 39)
NPROBES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
PLATEAU = 0.002  # recall@10 a setting may lose to the best one and still be chosen, when none reaches the target
EF_SEARCHES = (16, 32, 64, 128, 256, 512)


def build_from_embeddings(source: str | Path, *, out: str | Path, max_memory: int, checkpoint: str | None = None,
                          target_recall: float = 0.95, queries: int = 1000, chunk: int = 16_384, seed: int = 0,
                          progress: bool = True) -> dict[str, Any]:
    """Build the index at `out` from clip-retrieval-layout embeddings at `source`; returns what index.json holds."""
    faiss = import_faiss()
    if checkpoint is not None and not is_name(checkpoint):
        checkpoint = str(Path(checkpoint).resolve())  # queries load it from anywhere
    shards = EmbeddingShards(source)
    plan = choose_index(shards.count, shards.dim, max_memory)
    out = Path(out)
    if (out / STORE).exists():
        raise SearchIndexError(f"{out} holds an index built from images (items.sqlite); give another --out")
    out.mkdir(parents=True, exist_ok=True)
    (out / MANIFEST).unlink(missing_ok=True)  # until the new one is written, OUT is not an index
    say = print if progress else (lambda *a, **k: None)
    say(f"{shards.count:,} vectors of dimension {shards.dim} in {len(shards.shards)} shards; "
        f"{plan.kind} ({plan.factory}) fits {format_size(max_memory)}: about {format_size(plan.bytes)}", flush=True)

    rng = np.random.default_rng(seed)
    n_queries = min(queries, max(1, shards.count // 10))
    query_ids = np.sort(rng.choice(shards.count, n_queries, replace=False))
    query_vectors = shards.take(query_ids)

    started = time.perf_counter()
    index = faiss.index_factory(shards.dim, plan.factory, faiss.METRIC_INNER_PRODUCT)
    if plan.hnsw_ef_construction:  # the factory string cannot say it
        faiss.downcast_index(index).hnsw.efConstruction = plan.hnsw_ef_construction
    if plan.pq_m:
        # Polysemous training (Hamming-ordered codes, for a filter these indexes do not use) costs minutes.
        faiss.downcast_index(faiss.extract_index_ivf(index)).do_polysemous_training = False
    if not index.is_trained:
        index.train(shards.take(_training_ids(shards.count, plan, query_ids, rng)))
    train_s = time.perf_counter() - started

    truth_scores = np.full((n_queries, K + 1), -np.inf, dtype=np.float32)
    truth_ids = np.full((n_queries, K + 1), -1, dtype=np.int64)
    for start, vectors in shards.chunks(chunk):
        index.add(vectors)  # ids are positions, in order: the global ids
        scores, ids = faiss.knn(query_vectors, vectors, min(K + 1, len(vectors)), metric=faiss.METRIC_INNER_PRODUCT)
        truth_scores, truth_ids = _merge(truth_scores, truth_ids, scores, ids + start)
    add_s = time.perf_counter() - started - train_s
    truth = [_without(row, q) for row, q in zip(truth_ids, query_ids)]

    setting, recall, qps, curve = _tune(index, plan, query_vectors, query_ids, truth, target_recall)
    spec = IndexSpec(kind=plan.kind, nlist=plan.nlist, pq_m=plan.pq_m, pq_nbits=plan.pq_nbits,
                     **({"nprobe": setting} if plan.nlist else {}),
                     **({"hnsw_m": plan.hnsw_m, "ef_search": setting} if plan.kind == "hnsw" else {}))
    set_search_parameters(index, spec)
    write_atomic(out / FAISS_FILE, lambda tmp: faiss.write_index(index, tmp))
    manifest = {
        "format": 1, "source": "embeddings", "embeddings": str(Path(source).resolve()), "spec": asdict(spec),
        "version": 1, "count": shards.count, "embed_dim": shards.dim, "checkpoint": checkpoint,
        "index": {**asdict(plan), "file_bytes": (out / FAISS_FILE).stat().st_size},
        "max_index_memory": max_memory,
        "recall_at_10": round(recall, 4), "queries_per_s": round(qps, 1), "held_out_queries": n_queries,
        "recall_by_setting": curve, "target_recall": target_recall,
        "train_s": round(train_s, 2), "add_s": round(add_s, 2)}
    write_catalog(out / CATALOG, shards, {"version": "1", "count": str(shards.count), "embed_dim": str(shards.dim),
                                          **({"checkpoint": checkpoint} if checkpoint else {})})
    write_text_atomic(out / MANIFEST, json.dumps(manifest, indent=2))
    say(f"{out}: {plan.kind}, {format_size(manifest['index']['file_bytes'])}, recall@10 {recall:.3f} at "
        f"{_setting_name(plan)} {setting}, {qps:,.0f} queries/s", flush=True)
    return manifest


def _training_ids(count: int, plan: IndexPlan, held_out: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Rows to train on: enough for the cells and codebooks, the held-out queries excluded while rows remain."""
    want = max(TRAIN_PER_CELL * (plan.nlist or 1), PQ_TRAIN if plan.pq_m else 0)
    pool = count - len(held_out)
    if pool <= want:  # a small collection: train on everything not held out (or everything, if that is nothing)
        rest = np.setdiff1d(np.arange(count), held_out)
        return rest if len(rest) else np.arange(count)
    picked = rng.choice(pool, want, replace=False)
    # map [0, pool) onto the ids that are not held out, in order
    return np.sort(picked + np.searchsorted(held_out - np.arange(len(held_out)), picked, side="right"))


def _merge(scores: np.ndarray, ids: np.ndarray, new_scores: np.ndarray, new_ids: np.ndarray
           ) -> tuple[np.ndarray, np.ndarray]:
    """The best K+1 of two (Q, *) result lists, by score."""
    all_scores = np.concatenate([scores, new_scores], axis=1)
    all_ids = np.concatenate([ids, new_ids], axis=1)
    order = np.argsort(-all_scores, axis=1, kind="stable")[:, :K + 1]
    return np.take_along_axis(all_scores, order, 1), np.take_along_axis(all_ids, order, 1)


def _without(ids: np.ndarray, own: int) -> set[int]:
    """The first K ids of a result row, the query's own row and empty slots (-1) left out."""
    return set([int(i) for i in ids if i != own and i >= 0][:K])


def recall_at_10(found: np.ndarray, query_ids: np.ndarray, truth: list[set[int]]) -> float:
    """Mean |found top-10 ∩ exact top-10| / 10; `found` (Q, K+1) ids, the query's own row left out."""
    hits = [len(_without(row, q) & t) / max(1, len(t))
            for row, q, t in zip(found, query_ids, truth)]
    return float(np.mean(hits))


def _tune(index: Any, plan: IndexPlan, queries: np.ndarray, query_ids: np.ndarray, truth: list[set[int]],
          target: float) -> tuple[int | None, float, float, dict[str, float]]:
    """(setting, recall@10, queries/s, recall per setting tried): the cheapest setting reaching `target`."""
    faiss = import_faiss()
    if plan.nlist:
        settings, name = [p for p in NPROBES if p <= plan.nlist], "nprobe"
    elif plan.kind == "hnsw":
        settings, name = list(EF_SEARCHES), "efSearch"
    else:
        settings, name = [None], None
    curve, tried = {}, []
    for setting in settings:
        if name:
            faiss.ParameterSpace().set_index_parameter(index, name, setting)
        began = time.perf_counter()
        _, found = index.search(queries, K + 1)
        qps = len(queries) / max(time.perf_counter() - began, 1e-9)
        recall = recall_at_10(found, query_ids, truth)
        curve[str(setting)] = round(recall, 4)
        tried.append((setting, recall, qps))
        if recall >= target:
            return setting, recall, qps, curve
    # Below the target (compression limits recall): the cheapest setting within PLATEAU of the best measured.
    best = max(recall for _, recall, _ in tried)
    setting, recall, qps = next(t for t in tried if t[1] >= best - PLATEAU)
    return setting, recall, qps, curve


def _setting_name(plan: IndexPlan) -> str:
    return "nprobe" if plan.nlist else "efSearch" if plan.kind == "hnsw" else "exact"
