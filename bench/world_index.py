"""recall@10 and queries/s of each index kind `index build --from-embeddings` builds, on real CLIP embeddings: a
model trained here (`clipworks train`, RN-Tiny on the built-in world's generated images and captions, fp32), N of
the world's validation images exported as PNGs and embedded by `clipworks embed` under torchrun (2 processes), each
kind built from that directory by bench/budget_index.py (one process per kind, its budget = the kind's size).

Three query sets, each against exact search over the same vectors: the build's own 1,000 held-out image rows
(image to image) and their captions' embeddings (text to image, what `clipworks search "a red circle"` asks), on
which the build tunes nprobe / efSearch (index.json); and the caption embeddings of 1,000 other rows, searched on
the index as `search` opens it. A second table gives those other captions' recall@10 and queries/s per setting.
Appends both tables to bench/RESULTS.md.

    python bench/world_index.py [--n 100000] [--steps 300]
    python bench/world_index.py --queries-only        # the second table again, on the indexes left in --work
    python bench/world_index.py --embeddings /tmp/world_index/emb --work /tmp/world_rebuild
                                                      # both tables, every kind built again from a run's embeddings
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import faiss
import numpy as np
from budget_index import KINDS, RULE_NOTE, build_kinds
from timing import append_results

from clipworks.data.world import World, WorldConfig
from clipworks.search.index import Index

TEXT_QUERIES = 1000
SETTINGS = (2, 4, 8, 16, 32, 64, 128)  # nprobe / efSearch values of the text-query table


def train(run: Path, steps: int) -> dict:
    """RN-Tiny on 20,000 world pairs in fp32 (the demo's optimiser settings); the last evaluation's metrics."""
    command = [sys.executable, "-m", "clipworks.cli", "train", "--model", "RN-Tiny", "--steps", str(steps),
               "--batch-size", "128", "--world-samples", "20000", "--lr", "1.5e-3", "--warmup-steps", "50",
               "--beta2", "0.98", "--eps", "1e-8", "--precision", "fp32", "--eval-every", str(steps),
               "--save-every", str(steps), "--output-dir", str(run), "--quiet"]
    subprocess.run(command, check=True)
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    return [r["eval"] for r in records if "eval" in r][-1]


def embed(images: Path, run: Path, out: Path) -> dict:
    """`clipworks embed` of the exported CSV (images and captions), two processes; its summary."""
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    result = subprocess.run([torchrun, "--standalone", "--nproc-per-node", "2", "-m", "clipworks.cli", "embed",
                             str(images / "captions.csv"), "--checkpoint", str(run), "--out", str(out), "--text",
                             "--shard-size", "10000", "--batch-size", "256", "--precision", "fp32", "--quiet"],
                            capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def text_queries(emb: Path) -> tuple[np.ndarray, np.ndarray, float]:
    """(queries, exact top-10 ids, share of ties at the cut): TEXT_QUERIES caption embeddings of the collection in
    `emb`, searched exactly over its image embeddings."""
    vectors = np.concatenate([np.load(f) for f in sorted((emb / "img_emb").glob("*.npy"))]).astype(np.float32)
    texts = np.concatenate([np.load(f) for f in sorted((emb / "text_emb").glob("*.npy"))]).astype(np.float32)
    picked = np.random.default_rng(1).choice(len(texts), TEXT_QUERIES, replace=False)
    queries = np.ascontiguousarray(texts[picked])
    scores, truth = faiss.knn(queries, vectors, 11, metric=faiss.METRIC_INNER_PRODUCT)
    ties = float(np.mean(scores[:, 10] >= scores[:, 9] - 1e-6))  # the 11th as good as the 10th: a tie at the cut
    return queries, truth[:, :10], ties


def text_recall(index: Any, queries: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """(recall@10, queries/s) of the queries in one batch: a warm-up search, then the median of 3 timings."""
    _, found = index.search(queries, 10)
    times = []
    for _ in range(3):
        began = time.perf_counter()
        index.search(queries, 10)
        times.append(time.perf_counter() - began)
    return float(np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, truth)])), len(queries) / sorted(times)[1]


def text_curve_note(ties: float, load: float) -> str:
    return (f"recall@10 of {TEXT_QUERIES:,} caption embeddings of the collection against exact search (ties at the "
            f"cut: {ties:.1%} of them), and queries/s in one batch (median of 3 after a warm-up), per search "
            "setting, on each index opened memory-mapped as `search` opens it. The build chose its setting for "
            "recall@10 0.95 on its held-out image rows and, with text_emb/, on their captions. Load average "
            f"{load:.1f} before, {os.getloadavg()[0]:.1f} after (other jobs on the 2 cores).")


def text_curve(work: Path, kinds: list[str], queries: np.ndarray, truth: np.ndarray) -> list[str]:
    """Rows of recall@10 and queries/s of text queries per nprobe / efSearch, on each index as `search` opens it
    (memory-mapped); the setting the build chose (for image queries) is marked."""
    lines = ["| kind | setting | recall@10 text queries | text queries/s | chosen by the build |", "|---" * 5 + "|"]
    for kind in kinds:
        index_dir = work / f"idx_{kind}"
        if not (index_dir / "index.json").is_file():
            continue
        manifest = json.loads((index_dir / "index.json").read_text())
        spec, nlist = manifest["spec"], manifest["index"]["nlist"]
        index = Index.load(index_dir).faiss_index
        name, chosen = (("nprobe", spec["nprobe"]) if kind in ("ivf", "ivfpq", "opq-ivfpq") else
                        ("efSearch", spec["ef_search"]) if kind == "hnsw" else (None, None))
        for setting in sorted({v for v in SETTINGS if not nlist or v <= nlist} | {chosen}) if name else [None]:
            if name:
                faiss.ParameterSpace().set_index_parameter(index, name, setting)
            recall, qps = text_recall(index, queries, truth)
            lines.append(f"| {kind} | {f'{name} {setting}' if name else 'exact'} | {recall:.3f} | {qps:,.0f} | "
                         f"{'yes' if setting == chosen else ''} |")
            print(lines[-1], flush=True)
    return lines


INDEX_HEADER = ["| kind | rule | faiss | file | build s | nprobe / efSearch | set by | recall@10 image rows | "
                "recall@10 captions | recall@10 other captions | image queries/s | other captions queries/s | "
                "peak RSS |", "|---" * 13 + "|"]
QUERY_NOTE = ("Image rows and captions: the build's own 1,000 held-out rows and their captions' embeddings (its "
              "index.json: one batch, one timing, at the setting it chose for recall@10 0.95 on both; \"set by\" "
              f"names the set that needed it); other captions: {TEXT_QUERIES:,} caption embeddings of the "
              "collection in one batch, on the index opened as `search` opens it (memory-mapped), median of 3 "
              "after a warm-up; all against exact inner-product search")


def index_rows(rows: list[dict], queries: np.ndarray, truth: np.ndarray) -> list[str]:
    """One line per kind built: what its build measured, and the other captions searched on the written index."""
    lines = list(INDEX_HEADER)
    for r in rows:
        recall, qps = text_recall(Index.load(r["out"]).faiss_index, queries, truth)
        lines.append(f"| {r['kind']} | {'yes' if r['rule'] else 'no'} | {r['factory']} | {r['file'] / 1e6:,.1f} MB | "
                     f"{r['build_s']:.0f} | {r['setting'] or '-'} | {r['decided_by'] if r['setting'] else '-'} | "
                     f"{r['recall']:.3f} | {r['text_recall']:.3f} | {recall:.3f} | {r['queries_per_s']:,.0f} | "
                     f"{qps:,.0f} | {r['peak'] / 1e9:.2f} GB |")
        print(lines[-1], flush=True)
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000, help="world images to embed and index")
    parser.add_argument("--steps", type=int, default=300, help="training steps of the model")
    parser.add_argument("--work", default="/tmp/world_index")
    parser.add_argument("--kinds", default=",".join(KINDS))
    parser.add_argument("--queries-only", action="store_true", help="only the text-query table, on the indexes a "
                        "previous run left in --work")
    parser.add_argument("--embeddings", metavar="DIR", help="build every kind again from the embeddings (with "
                        "text_emb/) a previous run wrote, DIR = its WORK/emb, into --work; no training or embedding")
    args = parser.parse_args()
    work, kinds = Path(args.work), args.kinds.split(",")
    load = os.getloadavg()[0]
    if args.queries_only:
        queries, truth, ties = text_queries(work / "emb")
        append_results("Text queries on the indexes of real embeddings (bench/world_index.py --queries-only)",
                       f"faiss-cpu {faiss.__version__}", text_curve_note(ties, load) + f" Indexes of {work} (the "
                       "last full run).", text_curve(work, kinds, queries, truth))
        return
    if args.embeddings:
        emb = Path(args.embeddings)
        summary = json.loads((emb / "summary.json").read_text())
        queries, truth, ties = text_queries(emb)
        rows = build_kinds(emb, summary["rows"], summary["embed_dim"], kinds, work)
        append_results(
            "Indexes of real embeddings, rebuilt (bench/world_index.py --embeddings)", f"faiss-cpu {faiss.__version__}",
            f"Every kind built again by `index build --from-embeddings` from {emb} ({summary['rows']:,} world images "
            f"and their captions embedded by a previous full run, {summary['embed_dim']} dimensions, fp16), each in "
            f"its own process at a budget equal to its estimated size. {RULE_NOTE} {QUERY_NOTE} (for {ties:.1%} of "
            f"the other captions the 11th exact score equals the 10th within 1e-6). Load average {load:.1f} before, "
            f"{os.getloadavg()[0]:.1f} after (other jobs on the 2 cores).", index_rows(rows, queries, truth))
        append_results("Text queries on the rebuilt indexes of real embeddings (bench/world_index.py --embeddings)",
                       f"faiss-cpu {faiss.__version__}", text_curve_note(ties, load),
                       text_curve(work, kinds, queries, truth))
        return
    began = time.perf_counter()
    metrics = train(work / "run", args.steps)
    train_s = time.perf_counter() - began
    began = time.perf_counter()
    images = World(WorldConfig(seed=0)).export("val", args.n, work / "world")
    export_s = time.perf_counter() - began
    summary = embed(images, work / "run", work / "emb")
    queries, truth, ties = text_queries(work / "emb")
    n, dim = summary["rows"], summary["embed_dim"]
    rows = build_kinds(work / "emb", n, dim, kinds, work, checkpoint=str(work / "run"))
    zeroshot = ", ".join(f"{k.removeprefix('zeroshot_')} {v:.1%}" for k, v in metrics.items()
                         if k.startswith("zeroshot_")) + f"; text to image R@10 {metrics['text_to_image_R@10']:.1%}"
    append_results(
        "Indexes of real embeddings (bench/world_index.py)", f"faiss-cpu {faiss.__version__}",
        f"The model: RN-Tiny trained here from random weights, {args.steps} steps of batch 128 on 20,000 world pairs, "
        f"fp32, {train_s / 60:.1f} min (zero-shot at the end: {zeroshot}). The collection: {n:,} world "
        f"validation images (64x64 PNG, exported in {export_s:.0f} s) embedded by `clipworks embed --text` under "
        f"torchrun, 2 processes, fp32: {summary['images_per_s']:.0f} images/s in all, stored fp16, "
        f"{dim} dimensions. Each row: one kind built by `index build --from-embeddings` in its own "
        f"process at a budget equal to its estimated size. {RULE_NOTE} {QUERY_NOTE} (for {ties:.1%} of the other "
        f"captions the 11th exact score equals the 10th within 1e-6: a tie at the cut that no index can resolve). "
        f"Load average {load:.1f} before, {os.getloadavg()[0]:.1f} after (other jobs on the 2 cores).",
        index_rows(rows, queries, truth))
    append_results("Text queries on the indexes of real embeddings (bench/world_index.py)",
                   f"faiss-cpu {faiss.__version__}", text_curve_note(ties, load),
                   text_curve(work, kinds, queries, truth))


if __name__ == "__main__":
    main()
