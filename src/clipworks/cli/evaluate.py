"""`clipworks zeroshot` (the quick answer) and `clipworks eval ...` (the paper's evaluations, written to files)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..errors import ConfigError
from ..evaluation.prompts import DEFAULT_TEMPLATE
from .parsing import Parser, precision_flag


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("zeroshot", help="zero-shot labels for images, or top-1/top-5 on a labelled image set")
    p.add_argument("--checkpoint", required=True,
                   help="a checkpoint (directory, training run or weights) or a pretrained name")
    p.add_argument("--classes", help="comma-separated class names")
    p.add_argument("--classes-file", help="a text file with one class name per line")
    p.add_argument("--template", action="append", help="prompt with '{}' for the class (repeat to ensemble); "
                   f"default {DEFAULT_TEMPLATE!r}")
    p.add_argument("--data", help="labelled set: a folder with one sub-folder per class, or a CSV of filepath,label")
    p.add_argument("--top", type=int, default=3, help="labels shown per image")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    precision_flag(p, "embeds")
    p.add_argument("images", nargs="*", help="image files to label")
    p.set_defaults(func=_cmd_zeroshot)

    group = sub.add_parser("eval", help="the paper's evaluations: zero-shot, linear probe, few-shot, retrieval, "
                           "robustness, and a report on the built-in world")
    evals = group.add_subparsers(dest="eval_command", required=True, parser_class=Parser)

    def prompt_flags(p: argparse.ArgumentParser) -> None:
        names = p.add_mutually_exclusive_group()
        names.add_argument("--classnames", choices=("imagenet", "cifar10", "cifar100"),
                           help="built-in class names (in sorted-folder or label order)")
        names.add_argument("--classes-file", help="one class name per line (default: the folder names or labels)")
        p.add_argument("--templates", default="default", help="imagenet80, imagenet7, cifar, default "
                       f"({DEFAULT_TEMPLATE!r}) or a file with one template per line")

    p = evals.add_parser("zeroshot", help="top-1/top-5, per-class recall, confusion matrix; one prompt vs ensemble")
    _eval_common(p, out="runs/eval/zeroshot")
    p.add_argument("--data", required=True, help="a folder of class folders, or a CSV of filepath,label")
    prompt_flags(p)
    p.set_defaults(func=_cmd_eval_zeroshot)

    p = evals.add_parser("linear-probe", help="logistic regression on frozen features; --shots k for few-shot")
    _eval_common(p, out="runs/eval/linear_probe")
    p.add_argument("--train", required=True, help="labelled training set (class folders or filepath,label CSV)")
    p.add_argument("--test", required=True, help="labelled test set with the same classes")
    p.add_argument("--val-fraction", type=float, default=0.2, help="share of --train held out to choose C")
    p.add_argument("--shots", type=int, default=None, help="k examples per class (few-shot probe)")
    p.add_argument("--seeds", type=int, default=5, help="few-shot draws to average")
    p.set_defaults(func=_cmd_eval_linear_probe)

    p = evals.add_parser("retrieval", help="recall@1/5/10 image->text and text->image on a caption CSV")
    _eval_common(p, out="runs/eval/retrieval")
    p.add_argument("--data", required=True, help="CSV of filepath,caption; repeated filepaths = several captions")
    p.add_argument("--image-key", default="filepath")
    p.add_argument("--caption-key", default="caption")
    p.set_defaults(func=_cmd_eval_retrieval)

    p = evals.add_parser("robustness", help="one zero-shot classifier on several datasets with the same classes")
    _eval_common(p, out="runs/eval/robustness")
    p.add_argument("--data", required=True, action="append", metavar="NAME=DIR", help="repeat for each dataset")
    p.add_argument("--probe-train", default=None, help="also fit a linear probe on this set and test it on each")
    prompt_flags(p)
    p.set_defaults(func=_cmd_eval_robustness)

    p = evals.add_parser("report", help="the paper's findings in miniature on the built-in world (PNG/markdown/JSON)")
    _eval_common(p, out="runs/eval/report")
    p.add_argument("--n-train", type=int, default=2000, help="world training images for the probes")
    p.add_argument("--n-test", type=int, default=1000, help="world images per test set")
    p.add_argument("--seeds", type=int, default=5, help="few-shot draws per k")
    p.add_argument("--world-seed", type=int, default=None, help="the world's seed (default: the one the checkpoint "
                   "was trained on, from its config.json)")
    p.set_defaults(func=_cmd_eval_report)


def _cmd_zeroshot(args: argparse.Namespace) -> None:
    from ..evaluation.commands import run_zeroshot
    from ..evaluation.prompts import classnames

    names = None
    if args.classes:
        names = [c.strip() for c in args.classes.split(",") if c.strip()]
    elif args.classes_file:
        names = classnames(args.classes_file)
    report = run_zeroshot(args.checkpoint, args.data, images=args.images, classnames=names,
                          templates=args.template or [DEFAULT_TEMPLATE], top=args.top, device="cpu",
                          batch_size=args.batch_size, precision=args.precision, progress=False)
    if args.json:
        print(json.dumps(report, indent=2))
        return
    if "accuracy" in report:
        acc = report["accuracy"]
        print(f"{report['n_images']} images, {report['n_classes']} classes: top-1 {acc['top1']:.3f}  "
              f"top-5 {acc['top5']:.3f}  (chance {1 / report['n_classes']:.3f})"
              + (f"; skipped {report['n_skipped']} unreadable" if report.get("n_skipped") else ""))
    for item in report.get("predictions", []):
        labels = ", ".join(f"{p['label']} {p['prob']:.2f}" for p in item["top"])
        print(f"{item['image']}: {labels}")


def _eval_common(p: argparse.ArgumentParser, *, out: str) -> None:
    p.add_argument("--checkpoint", required=True,
                   help="a checkpoint (directory, training run or weights) or a pretrained name")
    p.add_argument("--out", default=out, help="where the JSON and markdown results go")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: cuda when available)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--workers", type=int, default=0, help="DataLoader worker processes for reading images")
    p.add_argument("--cache-dir", default=None, help="image-feature cache (default: <out>/cache)")
    precision_flag(p, "embeds")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _eval_kwargs(args: argparse.Namespace) -> dict:
    return dict(out=args.out, device=args.device, precision=args.precision, batch_size=args.batch_size,
                workers=args.workers,
                cache_dir=args.cache_dir, progress=not args.quiet)


def _eval_prompts(args: argparse.Namespace) -> tuple[list[str] | None, list[str]]:
    from ..evaluation import prompts

    names = args.classnames or args.classes_file
    return (prompts.classnames(names) if names else None), prompts.templates(args.templates)


def _cmd_eval_zeroshot(args: argparse.Namespace) -> None:
    from ..evaluation.commands import run_zeroshot

    classnames, templates = _eval_prompts(args)
    r = run_zeroshot(args.checkpoint, args.data, classnames=classnames, templates=templates, **_eval_kwargs(args))
    for name, m in r["prompts"].items():
        print(f"{name:<16} top-1 {m['top1']:.4f}  top-5 {m['top5']:.4f}  mean per-class recall "
              f"{m['mean_per_class_recall']:.4f}")
    print(f"{r['n_images']} images, {len(r['classes'])} classes; results in {args.out}/zeroshot.{{json,md}}")


def _cmd_eval_linear_probe(args: argparse.Namespace) -> None:
    from ..evaluation.commands import run_linear_probe

    r = run_linear_probe(args.checkpoint, args.train, args.test, val_fraction=args.val_fraction, shots=args.shots,
                         seeds=args.seeds, **_eval_kwargs(args))
    if args.shots:
        f = r["few_shot"]
        print(f"{args.shots}-shot linear probe ({args.seeds} seeds): top-1 {f['mean']:.4f} ± {f['std']:.4f}")
    else:
        print(f"linear probe: top-1 {r['top1']:.4f} (C = {r['c']:.3g}, validation top-1 {r['val_top1']:.4f})")
    print(f"results in {args.out}/linear_probe.{{json,md}}")


def _cmd_eval_retrieval(args: argparse.Namespace) -> None:
    from ..evaluation.commands import run_retrieval

    r = run_retrieval(args.checkpoint, args.data, image_key=args.image_key, caption_key=args.caption_key,
                      **_eval_kwargs(args))
    for direction in ("image_to_text", "text_to_image"):
        print(f"{direction.replace('_', ' '):<14} " + "  ".join(f"R@{k} {r[f'{direction}_R@{k}']:.4f}"
                                                             for k in (1, 5, 10)))
    print(f"{r['n_images']} images, {r['n_captions']} captions; results in {args.out}/retrieval.{{json,md}}")


def _cmd_eval_robustness(args: argparse.Namespace) -> None:
    from ..evaluation.commands import run_robustness

    datasets = {}
    for item in args.data:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise ConfigError(f"--data {item!r}: expected NAME=DIR (e.g. --data flat=world/flat)")
        datasets[name] = path
    classnames, templates = _eval_prompts(args)
    r = run_robustness(args.checkpoint, datasets, classnames=classnames, templates=templates,
                       probe_train=args.probe_train, **_eval_kwargs(args))
    for name, m in r["datasets"].items():
        probe = f"  linear probe {m['linear_probe_top1']:.4f}" if "linear_probe_top1" in m else ""
        print(f"{name:<20} zero-shot top-1 {m['zeroshot_top1']:.4f}{probe}")
    print(f"results in {args.out}/robustness.{{json,md}}")


def _cmd_eval_report(args: argparse.Namespace) -> None:
    from ..evaluation.report import run_report

    run_report(args.checkpoint, out=args.out, n_train=args.n_train, n_test=args.n_test, seeds=args.seeds,
               world_seed=args.world_seed, device=args.device, precision=args.precision, batch_size=args.batch_size,
               cache_dir=args.cache_dir, progress=not args.quiet)
    print((Path(args.out) / "report.md").read_text())

