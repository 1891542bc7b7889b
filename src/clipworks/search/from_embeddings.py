"""`clipworks index build --from-embeddings DIR --max-index-memory SIZE`: an index of precomputed embeddings, of the
kind that fits the budget (`budget.py`), built without ever holding the embeddings in memory.

    1. choose      the kind and its parameters from N, d and the budget
    2. hold out    Q rows as queries (not trained on): their image embeddings and, when DIR has caption embeddings
                   (text_emb/, from `clipworks embed --text`), their captions'; the rest may be sampled for training
    3. train       k-means cells (and PQ codebooks, OPQ rotation) on a sample of at most ~64 rows per cell
    4. add         every row, a chunk at a time from the memory-mapped shards; in the same pass, the queries' exact
                   top-10 (brute force over the chunk) is merged, so ground truth costs no second read
    5. tune        the smallest nprobe (IVF) or efSearch (HNSW) whose recall@10 reaches the target on every query
                   set; a set whose recall compression caps below it asks for the cheapest setting within PLATEAU
                   of its best instead
    6. write       index.faiss, metadata.sqlite (from the parquet rows) and, last, index.json (kind, parameters,
                   estimated and actual size, recall@10 of each query set per setting tried, queries/s)

recall@10 is |found top-10 ∩ exact top-10| / 10, averaged over the queries. An image query is a row of the
collection and its own row is left out of both lists (it would be an easy first hit); a caption keeps its image,
which is a right answer. Image rows alone make an estimate for image-like queries only: a caption's embedding lies
farther from the images it matches (CLIP's modality gap), so text queries need more IVF cells or HNSW candidates
for the same recall (bench/RESULTS.md, "Indexes of real embeddings"). Hence the captions, when there are any.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import SearchIndexError
from ..io.files import write_text_atomic
from ..io.pretrained import is_name
from .budget import PQ_NBITS, IndexPlan, choose_index, format_size
from .catalog import CATALOG, write_catalog
from .embeddings import EmbeddingShards
from .index import FAISS_FILE, MANIFEST, IndexSpec, import_faiss, set_search_parameters, write_faiss
from .store import STORE

K = 10  # recall@K
TRAIN_PER_CELL = 64  # k-means sample per IVF cell (faiss needs at least 39)
PQ_TRAIN = 40 * 2**PQ_NBITS  # PQ codebooks: 40 rows per code centroid (faiss warns below 39)
NPROBES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
PLATEAU = 0.002  # recall@10 a setting may lose to a query set's best and still do, when none reaches the target
EF_SEARCHES = (16, 32, 64, 128, 256, 512)
IMAGE_ONLY = ("recall@10 is estimated on held-out image rows, for image-like queries; text queries may need a larger "
              "setting: embed with --text so that the build also tunes on captions")


@dataclass
class QuerySet:
    """Held-out queries and their exact top-10 over the collection."""

    name: str  # "image rows" | "captions"
    vectors: np.ndarray  # (Q, d) float32
    own: np.ndarray  # (Q,) int64: the id left out of each query's lists, its own row (image rows) or -1 (captions)
    truth: list[set[int]] = field(default_factory=list)  # exact top-10 ids per query, from the add pass


@dataclass(frozen=True)
class Tuning:
    """The search setting chosen, and what each query set measured."""

    setting: int | None  # nprobe (IVF) or efSearch (HNSW); None for exact search
    recall: list[float]  # recall@10 of each query set at it
    queries_per_s: list[float]  # of each query set at it, one batch
    curves: list[dict[str, float]]  # recall@10 of each query set per setting tried
    decided_by: str  # the query set(s) whose recall set it, e.g. "captions"


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
    query_sets = [QuerySet("image rows", shards.take(query_ids), query_ids)]
    if shards.has_text:  # the same rows' captions: what `search "a dog on a beach"` asks
        query_sets.append(QuerySet("captions", shards.take(query_ids, text=True), np.full(n_queries, -1)))

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

    _add_with_truth(index, shards, query_sets, chunk)
    add_s = time.perf_counter() - started - train_s

    tuning = _tune(index, plan, query_sets, target_recall)
    spec = IndexSpec(kind=plan.kind, nlist=plan.nlist, pq_m=plan.pq_m, pq_nbits=plan.pq_nbits,
                     **({"nprobe": tuning.setting} if plan.nlist else {}),
                     **({"hnsw_m": plan.hnsw_m, "ef_search": tuning.setting} if plan.kind == "hnsw" else {}))
    set_search_parameters(index, spec)
    write_faiss(index, out / FAISS_FILE)
    with_text = len(query_sets) == 2
    manifest = {
        "format": 1, "source": "embeddings", "embeddings": str(Path(source).resolve()), "spec": asdict(spec),
        "version": 1, "count": shards.count, "embed_dim": shards.dim, "checkpoint": checkpoint,
        "index": {**asdict(plan), "file_bytes": (out / FAISS_FILE).stat().st_size},
        "max_index_memory": max_memory, "target_recall": target_recall, "held_out_queries": n_queries,
        "tuned_on": " and ".join(q.name for q in query_sets), "decided_by": tuning.decided_by,
        # image rows: the figures of every build; captions: with text_emb/
        "recall_at_10": round(tuning.recall[0], 4), "queries_per_s": round(tuning.queries_per_s[0], 1),
        "recall_by_setting": tuning.curves[0],
        **({"text_recall_at_10": round(tuning.recall[1], 4), "text_queries_per_s": round(tuning.queries_per_s[1], 1),
            "text_recall_by_setting": tuning.curves[1]} if with_text else {"recall_note": IMAGE_ONLY}),
        "train_s": round(train_s, 2), "add_s": round(add_s, 2)}
    write_catalog(out / CATALOG, shards, {"version": "1", "count": str(shards.count), "embed_dim": str(shards.dim),
                                          **({"checkpoint": checkpoint} if checkpoint else {})})
    write_text_atomic(out / MANIFEST, json.dumps(manifest, indent=2))
    setting = (f"{_setting_name(plan)} {tuning.setting} (set by the {tuning.decided_by})"
               if tuning.setting is not None else "exact")
    measured = ", ".join(f"{recall:.3f} on {q.name} ({qps:,.0f} queries/s)" for q, recall, qps
                         in reversed(list(zip(query_sets, tuning.recall, tuning.queries_per_s))))
    say(f"{out}: {plan.kind}, {format_size(manifest['index']['file_bytes'])}, {setting}: recall@10 {measured}"
        + ("" if with_text else f". {IMAGE_ONLY}"), flush=True)
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


def _add_with_truth(index: Any, shards: EmbeddingShards, query_sets: list[QuerySet], chunk: int) -> None:
    """Add every row to the index, a chunk at a time; in the same pass, fill each query set's exact top-10."""
    faiss = import_faiss()
    queries = np.concatenate([q.vectors for q in query_sets])  # (sets * Q, d)
    truth_scores = np.full((len(queries), K + 1), -np.inf, dtype=np.float32)
    truth_ids = np.full((len(queries), K + 1), -1, dtype=np.int64)
    for start, vectors in shards.chunks(chunk):
        index.add(vectors)  # ids are positions, in order: the global ids
        scores, ids = faiss.knn(queries, vectors, min(K + 1, len(vectors)), metric=faiss.METRIC_INNER_PRODUCT)
        truth_scores, truth_ids = _merge(truth_scores, truth_ids, scores, ids + start)
    for query_set, rows in zip(query_sets, np.split(truth_ids, len(query_sets))):
        query_set.truth = [_without(row, own) for row, own in zip(rows, query_set.own)]


def _merge(scores: np.ndarray, ids: np.ndarray, new_scores: np.ndarray, new_ids: np.ndarray
           ) -> tuple[np.ndarray, np.ndarray]:
    """The best K+1 of two (Q, *) result lists, by score."""
    all_scores = np.concatenate([scores, new_scores], axis=1)
    all_ids = np.concatenate([ids, new_ids], axis=1)
    order = np.argsort(-all_scores, axis=1, kind="stable")[:, :K + 1]
    return np.take_along_axis(all_scores, order, 1), np.take_along_axis(all_ids, order, 1)


def _without(ids: np.ndarray, own: int) -> set[int]:
    """The first K ids of a result row, the query's `own` row (-1: none) and empty slots (-1) left out."""
    return set([int(i) for i in ids if i != own and i >= 0][:K])


def recall_at_10(found: np.ndarray, own: np.ndarray, truth: list[set[int]]) -> float:
    """Mean |found top-10 ∩ exact top-10| / 10; `found` (Q, K+1) ids, each query's `own` id (-1: none) left out."""
    hits = [len(_without(row, q) & t) / max(1, len(t))
            for row, q, t in zip(found, own, truth)]
    return float(np.mean(hits))


def _tune(index: Any, plan: IndexPlan, query_sets: list[QuerySet], target: float) -> Tuning:
    """The cheapest setting reaching `target` on every query set; a set that never reaches it (compression caps its
    recall) asks instead for the cheapest setting within PLATEAU of its best."""
    faiss = import_faiss()
    if plan.nlist:
        settings, name = [p for p in NPROBES if p <= plan.nlist], "nprobe"
    elif plan.kind == "hnsw":
        settings, name = list(EF_SEARCHES), "efSearch"
    else:
        settings, name = [None], None
    tried: list[tuple[int | None, list[tuple[float, float]]]] = []  # (setting, (recall, queries/s) per query set)
    for setting in settings:
        if name:
            faiss.ParameterSpace().set_index_parameter(index, name, setting)
        tried.append((setting, [_measure(index, q) for q in query_sets]))
        if all(recall >= target for recall, _ in tried[-1][1]):
            break
    curves = [{str(setting): round(measured[i][0], 4) for setting, measured in tried} for i in range(len(query_sets))]
    # What each set needs: the first setting reaching the target, or where it never does, the first within PLATEAU
    # of its best; the setting chosen is the largest need, and the sets that need it decided it.
    needs = []
    for curve in ([measured[i][0] for _, measured in tried] for i in range(len(query_sets))):
        enough = target if max(curve) >= target else max(curve) - PLATEAU
        needs.append(next(j for j, recall in enumerate(curve) if recall >= enough))
    setting, measured = tried[max(needs)]
    return Tuning(setting, [recall for recall, _ in measured], [qps for _, qps in measured], curves,
                  " and ".join(q.name for q, need in zip(query_sets, needs) if need == max(needs)))


def _measure(index: Any, queries: QuerySet) -> tuple[float, float]:
    """(recall@10, queries/s) of the query set searched in one batch."""
    began = time.perf_counter()
    _, found = index.search(queries.vectors, K + 1)
    queries_per_s = len(queries.vectors) / max(time.perf_counter() - began, 1e-9)
    return recall_at_10(found, queries.own, queries.truth), queries_per_s


def _setting_name(plan: IndexPlan) -> str:
    return "nprobe" if plan.nlist else "efSearch" if plan.kind == "hnsw" else "exact"
