"""recall@10 vs exact, queries/s, size, build time and peak memory of each index kind `index build --from-embeddings`
builds: on synthetic clustered embeddings written in clip-retrieval's layout (float16 .npy shards + parquet), or on
a directory of real ones (`build_kinds(source, ...)`; bench/world_index.py embeds generated images for it).

Each kind is built in its own process (`clipworks index build --from-embeddings`), which reports its own peak RSS
(VmHWM of /proc/self/status; not wait4's ru_maxrss, which counts the high-water mark of the parent's memory the child
was forked from), at a budget equal to the kind's estimated size: the budget at which the rule (budget.py)
takes it. The rule offers flat only up to FLAT_MAX_N vectors and HNSW up to HNSW_MAX_N, and takes flat wherever
flat fits (flat is smaller than HNSW and IVF-Flat). To measure every kind at one N, the child process sets those two
limits for its own kind: flat offered only in the flat row, HNSW offered (up to N) only in the HNSW row. The column
"rule" says whether the unchanged rule takes that kind at that budget. recall@10 and queries/s are those the build
measured on its 1,000 held-out rows at the setting it chose (index.json), with its recall@10 per setting tried.
`--ef-construction 40,80` builds the HNSW row once per value (the child sets budget.HNSW_EF_CONSTRUCTION).

    python bench/budget_index.py --n 1000000                      # appends a table to bench/RESULTS.md
    python bench/budget_index.py --n 100000 --kinds flat,hnsw
    python bench/budget_index.py --n 500000 --kinds hnsw --ef-construction 40,80,128
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
from timing import append_results

from clipworks.search.budget import (
    FLAT_MAX_N,
    HNSW_EF_CONSTRUCTION,
    HNSW_MAX_N,
    IndexPlan,
    choose_index,
    plan_flat,
    plan_hnsw,
    plan_ivf,
    plan_ivfpq,
    pq_sizes,
)

KINDS = ("flat", "hnsw", "ivf", "ivfpq", "opq-ivfpq")
# The child: the rule's two size limits and HNSW's efConstruction from argv, the CLI, then its peak RSS in kB into
# the file argv[1] names.
CHILD = """
import re, sys
from pathlib import Path
from clipworks.search import budget
from clipworks.cli import main
budget.FLAT_MAX_N, budget.HNSW_MAX_N, budget.HNSW_EF_CONSTRUCTION = map(int, sys.argv[2:5])
code = main(sys.argv[5:])
Path(sys.argv[1]).write_text(re.search(r"VmHWM:\\s+(\\d+) kB", Path("/proc/self/status").read_text())[1])
sys.exit(code)
"""
HEADER = ["| kind | rule | faiss | efConstruction | estimated | file | build s | train s | recall@10 | "
          "nprobe / efSearch | queries/s | peak RSS | recall@10 per setting tried |", "|---" * 13 + "|"]


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


def largest_plans(n: int, dim: int) -> dict[str, IndexPlan]:
    """The largest plan of each kind for (N, d), flat and HNSW whatever N: what the chooser takes at its size."""
    plans: dict[str, IndexPlan] = {}
    for plan in [plan_flat(n, dim), plan_hnsw(n, dim), plan_ivf(n, dim), *(plan_ivfpq(n, dim, m)
                                                                           for m in pq_sizes(dim))]:
        plans.setdefault(plan.kind, plan)
    return plans


def build_kinds(source: Path, n: int, dim: int, kinds: list[str], work: Path, checkpoint: str | None = None,
                ef_construction: int = HNSW_EF_CONSTRUCTION) -> list[dict]:
    """Build each kind from `source` into work/idx_KIND in its own process (HNSW with this efConstruction); what each
    build measured, with its wall time and its process's peak RSS."""
    plans, rows = largest_plans(n, dim), []
    for kind in kinds:
        name = kind if kind != "hnsw" or ef_construction == HNSW_EF_CONSTRUCTION else f"hnsw_ef{ef_construction}"
        plan, out = plans[kind], work / f"idx_{name}"
        limits = [n if kind == "flat" else 0, n if kind == "hnsw" else 0]  # FLAT_MAX_N, HNSW_MAX_N in the child
        peak = work / f"peak_{name}.kB"
        command = [sys.executable, "-c", CHILD, str(peak), *map(str, limits), str(ef_construction), "index", "build",
                   "--from-embeddings", str(source), "--max-index-memory", str(plan.bytes), "--out", str(out),
                   "--quiet", *(["--checkpoint", checkpoint] if checkpoint else [])]
        began = time.perf_counter()
        assert subprocess.run(command).returncode == 0, f"{kind}: build failed"
        m = json.loads((out / "index.json").read_text())
        assert m["index"]["kind"] == kind, (kind, m["index"])
        rows.append({"kind": kind, "rule": choose_index(n, dim, plan.bytes).kind == kind, "out": out,
                     "factory": m["index"]["factory"], "ef_construction": m["index"].get("hnsw_ef_construction"),
                     "curve": m["recall_by_setting"], "estimated": m["index"]["bytes"],
                     "file": m["index"]["file_bytes"], "build_s": time.perf_counter() - began, "train_s": m["train_s"],
                     "recall": m["recall_at_10"], "queries_per_s": m["queries_per_s"],
                     "text_recall": m.get("text_recall_at_10"), "decided_by": m.get("decided_by"),
                     "setting": m["spec"]["nprobe"] if m["index"]["nlist"] else m["spec"]["ef_search"]
                     if kind == "hnsw" else None, "peak": int(peak.read_text()) * 1024})
        print(rows[-1], flush=True)
    return rows


RULE_NOTE = (f"Rule \"no\": the rule's N limits (flat up to {FLAT_MAX_N:,}, HNSW up to {HNSW_MAX_N:,}) were set "
             "for that row (flat offered above its limit, or left out where it would be taken instead of HNSW or "
             "IVF-Flat; HNSW offered above its limit). Peak RSS is the build process's VmHWM: the imports (torch, "
             "faiss, pyarrow), the pages of the memory-mapped .npy shards read (file-backed, reclaimable), the index, "
             "the training sample and a chunk.")


def baseline_rss() -> int:
    """Peak RSS in bytes of a process that only imports what a build imports (torch, faiss, pyarrow, the CLI)."""
    code = ("import re, faiss, pyarrow.parquet, torch, clipworks.cli, clipworks.search.from_embeddings; "
            "print(re.search(r'VmHWM:\\s+(\\d+) kB', open('/proc/self/status').read())[1])")
    return int(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout) * 1024


def table_row(r: dict) -> str:
    curve = ", ".join(f"{setting}: {recall:.3f}" for setting, recall in r["curve"].items() if setting != "None")
    return (f"| {r['kind']} | {'yes' if r['rule'] else 'no'} | {r['factory']} | {r['ef_construction'] or '-'} | "
            f"{r['estimated'] / 1e6:,.1f} MB | {r['file'] / 1e6:,.1f} MB | {r['build_s']:.0f} | {r['train_s']:.0f} | "
            f"{r['recall']:.3f} | {r['setting'] or '-'} | {r['queries_per_s']:,.0f} | {r['peak'] / 1e9:.2f} GB | "
            f"{curve or '-'} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--work", default="/tmp/budget_index")
    parser.add_argument("--kinds", default=",".join(KINDS))
    parser.add_argument("--ef-construction", default=str(HNSW_EF_CONSTRUCTION),
                        help="HNSW's efConstruction values, comma-separated: one HNSW row each")
    args = parser.parse_args()
    work = Path(args.work) / f"{args.n}_{args.dim}"
    source = work / "emb"
    if not source.exists():
        write_collection(source, args.n, args.dim)
    load = os.getloadavg()[0]
    rows = []
    for kind in args.kinds.split(","):
        for ef in map(int, args.ef_construction.split(",")) if kind == "hnsw" else [HNSW_EF_CONSTRUCTION]:
            rows += build_kinds(source, args.n, args.dim, [kind], work, ef_construction=ef)
    import faiss

    append_results(
        "Indexes by memory budget (bench/budget_index.py)", f"faiss-cpu {faiss.__version__}",
        f"{args.n:,} x {args.dim} float16 synthetic clustered vectors (2,000 centres, 16 directions of spread each, "
        f"plus noise). Each row: one kind built in its own process at a budget equal to its estimated size. "
        f"{RULE_NOTE} A process that only imports what a build imports peaks at {baseline_rss() / 1e9:.2f} GB. "
        f"recall@10 and queries/s (1,000 held-out rows in one batch) at the setting the build chose (target 0.95); "
        f"build s is the build process's wall time. "
        f"Load average {load:.1f} before, {os.getloadavg()[0]:.1f} after (other jobs on the 2 cores).",
        HEADER + [table_row(r) for r in rows])


if __name__ == "__main__":
    main()
