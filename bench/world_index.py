"""recall@10 and queries/s of each index kind `index build --from-embeddings` builds, on real CLIP embeddings: a
model trained here (`clipworks train`, RN-Tiny on the built-in world's generated images and captions, fp32), N of
the world's validation images exported as PNGs and embedded by `clipworks embed` under torchrun (2 processes), each
kind built from that directory by bench/budget_index.py (one process per kind, its budget = the kind's size).

Two query sets, each against exact search over the same vectors: the build's own 1,000 held-out image rows (image
to image, what index.json reports) and the caption embeddings of 1,000 other rows (text to image, what
`clipworks search "a red circle"` asks). Appends a table to bench/RESULTS.md.

    python bench/world_index.py [--n 100000] [--steps 300]
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

import faiss
import numpy as np
from budget_index import KINDS, RULE_NOTE, build_kinds
from timing import append_results

from clipworks.data.world import World, WorldConfig
from clipworks.search.index import Index

TEXT_QUERIES = 1000


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


def text_recall(index_dir: Path, queries: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """(recall@10, queries/s) of text queries on the index as `search` opens it (memory-mapped, its setting)."""
    index = Index.load(index_dir).faiss_index
    began = time.perf_counter()
    _, found = index.search(queries, 10)
    qps = len(queries) / (time.perf_counter() - began)
    return float(np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, truth)])), qps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000, help="world images to embed and index")
    parser.add_argument("--steps", type=int, default=300, help="training steps of the model")
    parser.add_argument("--work", default="/tmp/world_index")
    parser.add_argument("--kinds", default=",".join(KINDS))
    args = parser.parse_args()
    work = Path(args.work)
    load = os.getloadavg()[0]
    began = time.perf_counter()
    metrics = train(work / "run", args.steps)
    train_s = time.perf_counter() - began
    began = time.perf_counter()
    images = World(WorldConfig(seed=0)).export("val", args.n, work / "world")
    export_s = time.perf_counter() - began
    summary = embed(images, work / "run", work / "emb")

    vectors = np.concatenate([np.load(f) for f in sorted((work / "emb" / "img_emb").glob("*.npy"))]).astype(
        np.float32)
    texts = np.concatenate([np.load(f) for f in sorted((work / "emb" / "text_emb").glob("*.npy"))]).astype(
        np.float32)
    picked = np.random.default_rng(1).choice(len(texts), TEXT_QUERIES, replace=False)
    queries = np.ascontiguousarray(texts[picked])
    scores, truth = faiss.knn(queries, vectors, 11, metric=faiss.METRIC_INNER_PRODUCT)  # exact
    ties = float(np.mean(scores[:, 10] >= scores[:, 9] - 1e-6))  # the 11th as good as the 10th: a tie at the cut
    truth = truth[:, :10]
    rows = build_kinds(work / "emb", len(vectors), vectors.shape[1], args.kinds.split(","), work,
                       checkpoint=str(work / "run"))
    lines = ["| kind | rule | faiss | file | build s | recall@10 image queries | recall@10 text queries | "
             "nprobe / efSearch | image queries/s | text queries/s | peak RSS |", "|---" * 11 + "|"]
    for r in rows:
        recall, qps = text_recall(r["out"], queries, truth)
        lines.append(f"| {r['kind']} | {'yes' if r['rule'] else 'no'} | {r['factory']} | {r['file'] / 1e6:,.1f} MB | "
                     f"{r['build_s']:.0f} | {r['recall']:.3f} | {recall:.3f} | {r['setting'] or '-'} | "
                     f"{r['queries_per_s']:,.0f} | {qps:,.0f} | {r['peak'] / 1e9:.2f} GB |")
        print(lines[-1], flush=True)

    zeroshot = ", ".join(f"{k.removeprefix('zeroshot_')} {v:.1%}" for k, v in metrics.items()
                         if k.startswith("zeroshot_")) + f"; text to image R@10 {metrics['text_to_image_R@10']:.1%}"
    append_results(
        "Indexes of real embeddings (bench/world_index.py)", f"faiss-cpu {faiss.__version__}",
        f"The model: RN-Tiny trained here from random weights, {args.steps} steps of batch 128 on 20,000 world pairs, "
        f"fp32, {train_s / 60:.1f} min (zero-shot at the end: {zeroshot}). The collection: {len(vectors):,} world "
        f"validation images (64x64 PNG, exported in {export_s:.0f} s) embedded by `clipworks embed --text` under "
        f"torchrun, 2 processes, fp32: {summary['images_per_s']:.0f} images/s in all, stored fp16, "
        f"{vectors.shape[1]} dimensions. Each row: one kind built by `index build --from-embeddings` in its own "
        f"process at a budget equal to its estimated size. {RULE_NOTE} Image queries: the build's 1,000 held-out "
        f"rows in one batch (its own measurement, at the setting it chose for recall@10 0.95); text queries: "
        f"{TEXT_QUERIES:,} caption embeddings of the collection, in one batch, on the index opened as `search` "
        f"opens it; both against exact inner-product search (for {ties:.1%} of the text queries the 11th exact score "
        f"equals the 10th within 1e-6: a tie at the cut that no index can resolve). Load average {load:.1f} before, "
        f"{os.getloadavg()[0]:.1f} after (other jobs on the 2 cores).", lines)


if __name__ == "__main__":
    main()
