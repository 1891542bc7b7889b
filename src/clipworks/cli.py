"""The `clipworks` command line: models, train, zeroshot, world, demo.

Flags of `clipworks train` are generated from `TrainConfig`'s fields, so the CLI and the Python API cannot drift.
A user's mistake (unknown flag or model, missing file, corrupt data) ends with one line on stderr and exit code 2;
only a bug in clipworks shows a traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import typing
from collections.abc import Sequence
from pathlib import Path

import torch

from .checkpoints import CheckpointError
from .configs import MODELS
from .data import DataError


class UserError(Exception):
    """Bad input from the user: printed as one line, no traceback."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> typing.NoReturn:
        # argparse's default prints the whole usage block; one line with the way forward is enough.
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def _add_dataclass_flags(parser: argparse.ArgumentParser, cls: type) -> None:
    """One --flag per dataclass field, typed from the annotation; the field comment is in the source."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        flag = "--" + f.name.replace("_", "-")
        hint = hints[f.name]
        if hint is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default)
            continue
        args = typing.get_args(hint)
        if typing.get_origin(hint) is typing.Literal:
            parser.add_argument(flag, choices=args, default=f.default)
            continue
        base = next((a for a in args if a is not type(None)), hint) if args else hint
        parser.add_argument(flag, type=base, default=f.default, metavar=f.name.upper())


def _cmd_models(args: argparse.Namespace) -> None:
    from .model import create_model

    print(f"{'name':<14} {'kind':<7} {'image':>5} {'embed':>5} {'parameters':>13}")
    for name, cfg in MODELS.items():
        with torch.device("meta"):
            n = sum(p.numel() for p in create_model(name).parameters())
        print(f"{name:<14} {cfg.vision.kind:<7} {cfg.vision.image_size:>5} {cfg.embed_dim:>5} {n:>13,}")


def _cmd_train(args: argparse.Namespace) -> None:
    from .pipelines import run_training
    from .train import TrainConfig

    cfg = TrainConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)})
    result = run_training(cfg, progress=not args.quiet)
    print(f"checkpoint: {result.checkpoint}")


def _cmd_zeroshot(args: argparse.Namespace) -> None:
    from .pipelines import run_zeroshot

    report = run_zeroshot(args.checkpoint, classes=args.classes, classes_file=args.classes_file,
                          templates=args.template, data=args.data, images=args.images, top=args.top,
                          batch_size=args.batch_size)
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


def _cmd_world(args: argparse.Namespace) -> None:
    from .world import World, WorldConfig

    out = World(WorldConfig(seed=args.seed)).export(args.split, args.n, args.out, task=args.task)
    print(f"wrote {args.n} {args.split} images to {out}")


def _cmd_demo(args: argparse.Namespace) -> None:
    from .demo import run_demo

    run_demo(args.out, steps=args.steps, progress=not args.quiet)


def build_parser() -> argparse.ArgumentParser:
    from .train import TrainConfig

    parser = _Parser(prog="clipworks", description="CLIP models: train, zero-shot, demo.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("models", help="list the model registry")
    p.set_defaults(func=_cmd_models)

    p = sub.add_parser("train", help="contrastive training on the built-in world or a CSV of image paths + captions")
    _add_dataclass_flags(p, TrainConfig)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("zeroshot", help="zero-shot labels for images, or top-1/top-5 on a labelled image set")
    p.add_argument("--checkpoint", required=True, help="a clipworks checkpoint (directory or training run)")
    p.add_argument("--classes", help="comma-separated class names")
    p.add_argument("--classes-file", help="a text file with one class name per line")
    p.add_argument("--template", action="append", help="prompt with '{}' for the class (repeat to ensemble); "
                   "default 'a photo of a {}.'")
    p.add_argument("--data", help="labelled set: a folder with one sub-folder per class, or a CSV of filepath,label")
    p.add_argument("--top", type=int, default=3, help="labels shown per image")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("images", nargs="*", help="image files to label")
    p.set_defaults(func=_cmd_zeroshot)

    p = sub.add_parser("world", help="write images of the built-in world to try the CLI on files")
    p.add_argument("--split", choices=("train", "val", "heldout"), default="heldout")
    p.add_argument("--n", type=int, default=200)
    p.add_argument("--task", default="combination", help="class folders by: colour, shape, size, count, position, "
                   "combination")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True)
    p.set_defaults(func=_cmd_world)

    p = sub.add_parser("demo", help="train a small CLIP on the built-in world and report zero-shot transfer")
    p.add_argument("--out", default="runs/demo")
    p.add_argument("--steps", type=int, default=None, help="optimizer steps (default: the demo's ~5-minute budget)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except (UserError, DataError, CheckpointError, FileNotFoundError, ValueError, TypeError) as e:
        print(f"clipworks {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"clipworks {args.command}: interrupted; checkpoints already written are intact", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
