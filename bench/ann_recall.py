"""Recall@10 and speed of the approximate index kinds (ivf, hnsw) against exact flat search, on synthetic embeddings.

Vectors are L2-normalised 512-d points around 2,000 random centres (CLIP embeddings of a photo collection are
clustered, not uniform; uniform random vectors are the worst case for any approximate index). Queries are fresh
points from the same distribution. Ground truth is the flat index's top 10. Indexes are built by
`clipworks.search.index.make_faiss_index`, exactly as `clipworks index build --kind ...` builds them.

    .venv/bin/python bench/ann_recall.py --n 1000000      # appends a table to bench/RESULTS.md
"""

import argparse
import time
from pathlib import Path

import numpy as np

from clipworks.search.index import IndexSpec, make_faiss_index


def clustered(n: int, dim: int, centres: np.ndarray, rng: np.random.Generator, spread: float = 1.0) -> np.ndarray:
    out = np.empty((n, dim), dtype=np.float32)
    for lo in range(0, n, 100_000):  # in blocks: 1M x 512 float64 temporaries would be 4 GB
        hi = min(n, lo + 100_000)
        x = centres[rng.integers(len(centres), size=hi - lo)] + spread * rng.standard_normal((hi - lo, dim)) / np.sqrt(
            dim)
        out[lo:hi] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--hnsw-n", type=int, default=None, help="build HNSW on the first N only (its build is slow)")
    parser.add_argument("--out", default=str(Path(__file__).with_name("RESULTS.md")))
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((2000, args.dim)) / np.sqrt(args.dim)
    data = clustered(args.n, args.dim, centres, rng)
    queries = clustered(args.queries, args.dim, centres, rng)
    ids = np.arange(args.n, dtype=np.int64)

    rows = []

    def measure(name: str, spec: IndexSpec, n: int, truth: np.ndarray | None) -> np.ndarray:
        start = time.perf_counter()
        index = make_faiss_index(spec, ids[:n], data[:n])
        build = time.perf_counter() - start
        start = time.perf_counter()
        _, found = index.search(queries, 10)
        search = time.perf_counter() - start
        recall = 1.0 if truth is None else float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, truth)]))
        rows.append((name, n, build, args.queries / search, recall))
        print(f"{name:<34} n={n:>9,} build {build:7.1f} s  {args.queries / search:9.0f} queries/s  "
              f"recall@10 {recall:.4f}", flush=True)
        return found

    truth = measure("flat (exact)", IndexSpec("flat"), args.n, None)
    for nprobe in (16, 32, 64):
        measure(f"ivf nlist=2*sqrt(N), nprobe={nprobe}", IndexSpec("ivf", nprobe=nprobe), args.n, truth)
    hnsw_n = args.hnsw_n or args.n
    hnsw_truth = truth if hnsw_n == args.n else measure("flat (exact)", IndexSpec("flat"), hnsw_n, None)
    for ef in (64, 128):
        measure(f"hnsw M=32, efSearch={ef}", IndexSpec("hnsw", ef_search=ef), hnsw_n, hnsw_truth)

    lines = ["\n## Approximate search: recall@10 and speed vs exact (bench/ann_recall.py)\n",
             f"{args.dim}-d L2-normalised vectors around 2,000 centres, {args.queries} queries in one batch, faiss "
             "on 2 cores (shared machine; speeds are indicative, ratios within a row set are what matter).\n",
             "| index | vectors | build s | queries/s | speed-up vs flat | recall@10 |", "|---|---|---|---|---|---|"]
    flat_qps = {n: qps for name, n, _, qps, _ in rows if name.startswith("flat")}
    for name, n, build, qps, recall in rows:
        lines.append(f"| {name} | {n:,} | {build:.1f} | {qps:,.0f} | {qps / flat_qps[n]:.1f}x | {recall:.4f} |")
    with open(args.out, "a") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
