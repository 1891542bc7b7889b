"""`clipworks benchmark`: the paper's evaluation suite (zero-shot, linear probe, retrieval) on datasets in their own
on-disk layouts, one result file per (model, dataset, task) and a merged table like the paper's."""

from __future__ import annotations

import argparse

from ..errors import DataError
from .parsing import precision_flag


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("benchmark", help="the paper's benchmark suite on datasets under --root: a JSON per (model, "
                       "dataset, task) and a merged table (resumable)")
    p.add_argument("--checkpoint", required=True, nargs="+", metavar="CHECKPOINT",
                   help="one or more checkpoints (directory, training run or weights) or pretrained names; OpenAI's "
                        "(ViT-B-32, RN50, ...) get the paper's figures beside theirs")
    p.add_argument("--datasets", required=True, help="comma-separated dataset keys (cifar10,mnist,...), "
                   "collections (paper27, imagenet-robustness, retrieval), or NAME=PATH for a labelled set of your "
                   "own (class folders or a filepath,label CSV; zero-shot with its folder names)")
    p.add_argument("--root", help="a folder holding one folder per dataset, named by its key (ROOT/cifar10, "
                   "ROOT/imagenet, ...), each in that dataset's own layout")
    p.add_argument("--task", choices=("zeroshot", "linear-probe", "retrieval"), default="zeroshot",
                   help="what to evaluate (default: zeroshot)")
    p.add_argument("--out", default="runs/benchmark", help="where cells/, cache/, table.md and table.csv go; a "
                   "second run into it skips the cells already done")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: cuda when available)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--workers", type=int, default=0, help="DataLoader worker processes for reading images")
    precision_flag(p, "embeds")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_benchmark)


def _cmd_benchmark(args: argparse.Namespace) -> None:
    from ..evaluation.benchmark import run_benchmark

    datasets = [d.strip() for d in args.datasets.split(",") if d.strip()]
    cells = run_benchmark(args.checkpoint, datasets, root=args.root, task=args.task, out=args.out,
                          device=args.device, precision=args.precision, batch_size=args.batch_size,
                          workers=args.workers, progress=not args.quiet)
    print(f"table: {args.out}/table.md and table.csv")
    missing = [c for c in cells if c.status == "missing"]
    if missing:  # exit code 2, one line: the other cells and the table are written
        names = ", ".join(f"{c.model} {c.dataset}" for c in missing[:5]) + (", ..." if len(missing) > 5 else "")
        raise DataError(f"{len(missing)} of {len(cells)} cells missing ({names}); the reasons are above and in "
                        f"{args.out}/table.md")
