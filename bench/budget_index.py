"""recall@10 vs exact, queries/s, build time and peak memory of each index kind `index build --from-embeddings`
chooses, on synthetic clustered embeddings written in clip-retrieval's layout (float16 .npy shards + parquet).

Each kind is forced by giving the budget that makes the chooser pick it (budget.py), and built in its own process
(`clipworks index build --from-embeddings`), so its peak RSS (ru_maxrss of the child) is its own. recall@10 and
queries/s are those the build measured on its 1,000 held-out rows at the setting it chose (index.json).

    .venv/bin/python bench/budget_index.py --n 1000000      # appends a table to bench/RESULTS.md
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from clipworks.search.budget import candidates


def write_collection(root: Path, n: int, dim: int, shard_rows: int = 250_000) -> None:
    """n unit vectors around 2,000 centres, each cluster spread in 16 directions (low intrinsic dimension) plus
    isotropic noise; in shards of `shard_rows` float16 rows."""
    (root / "img_emb").mkdir(parents=True)
    (root / "metadata").mkdir()
    shape = np.random.default_rng(1234)
    centres = shape.standard_normal((2000, dim)).astype(np.float32)
    spreads = shape.standard_normal((2000, 16, dim)).astype(np.float32) * 0.4
    rng = np.random.default_rng(0)
    for s, lo in enumerate(range(0, n, shard_rows)):
        rows = min(shard_rows, n - lo)
        out = np.empty((rows, dim), dtype=np.float16)
        for a in range(0, rows, 50_000):
            m = min(50_000, rows - a)
            c = rng.integers(0, 2000, m)
            x = (centres[c] + np.einsum("nr,nrd->nd", rng.standard_normal((m, 16)).astype(np.float32), spreads[c])
                 + 0.1 * rng.standard_normal((m, dim)).astype(np.float32))
            out[a:a + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
        np.save(root / "img_emb" / f"img_emb_{s:05d}.npy", out)
        pq.write_table(pa.table({"image_path": [f"{lo + i}.jpg" for i in range(rows)], "caption": [""] * rows}),
                       root / "metadata" / f"metadata_{s:05d}.parquet")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--work", default="/tmp/budget_index")
    parser.add_argument("--kinds", default="flat,hnsw,ivf,ivfpq,opq-ivfpq")
    parser.add_argument("--out", default=str(Path(__file__).with_name("RESULTS.md")))
    args = parser.parse_args()
    work = Path(args.work)
    source = work / f"emb_{args.n}_{args.dim}"
    if not source.exists():
        write_collection(source, args.n, args.dim)
    plans = {}
    for plan in candidates(args.n, args.dim):  # the largest of each kind: what the chooser picks at that budget
        plans.setdefault(plan.kind, plan)
    rows = []
    for kind in args.kinds.split(","):
        if kind not in plans:
            continue
        plan = plans[kind]
        out = work / f"idx_{kind}"
        budget = plan.bytes
        began = time.perf_counter()
        child = subprocess.Popen([sys.executable, "-m", "clipworks.cli", "index", "build", "--from-embeddings",
                                  str(source), "--max-index-memory", str(budget), "--out", str(out), "--quiet"])
        _, status, usage = os.wait4(child.pid, 0)  # this child's own peak RSS
        assert status == 0, f"{kind}: build failed"
        peak = usage.ru_maxrss  # KiB
        m = json.loads((out / "index.json").read_text())
        rows.append((kind, m["index"]["factory"], m["index"]["bytes"], m["index"]["file_bytes"],
                     time.perf_counter() - began, m["train_s"], m["recall_at_10"], m["spec"].get("nprobe")
                     if m["index"]["nlist"] else m["spec"].get("ef_search"), m["queries_per_s"],
                     peak * 1024))
        print(rows[-1], flush=True)
    cpu = torch.backends.cpu.get_cpu_capability()
    lines = [f"\n## Indexes by memory budget (bench/budget_index.py) — {time.strftime('%Y-%m-%d')}, {cpu}, "
             f"faiss-cpu, {args.n:,} x {args.dim} float16 clustered, 2 threads\n",
             "Each row: the kind the chooser picks at a budget equal to its estimated size; recall@10 and queries/s "
             "on 1,000 held-out rows at the setting the build chose (target 0.95).\n",
             "| kind | faiss | estimated | file | build s | train s | recall@10 | nprobe/efSearch | queries/s "
             "| peak RSS |", "|---|---|---|---|---|---|---|---|---|---|"]
    for kind, factory, est, size, build, train, recall, setting, qps, peak in rows:
        lines.append(f"| {kind} | {factory} | {est / 1e6:,.1f} MB | {size / 1e6:,.1f} MB | {build:.0f} | {train:.0f} "
                     f"| {recall:.3f} | {setting} | {qps:,.0f} | "
                     f"{peak / 1e9:.2f} GB |")
    text = "\n".join(lines) + "\n"
    print(text)
    with open(args.out, "a") as f:
        f.write(text)


if __name__ == "__main__":
    main()
