"""The `clipworks` command line: models, train, zeroshot, convert, interpolate, world, shards, demo, eval, benchmark,
index, search, serve, embed.

Flags of `clipworks train` are generated from `TrainConfig`'s fields, so the CLI and the Python API cannot drift;
`--config FILE` and `--recipe paper` (listed by `clipworks recipes`) supply values that explicit flags override.
A user's mistake (unknown flag or model, missing file, corrupt data) ends with one line on stderr and exit code 2;
only a bug in clipworks shows a traceback.

One module per group of commands (`model`, `train`, `evaluate`, `benchmark`, `search`), each adding its parsers;
this one builds the whole parser and runs a command.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence

from ..errors import ClipworksError
from . import benchmark, embed, evaluate, model, search, train
from .parsing import Parser


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="clipworks", description="CLIP models: train, zero-shot, demo.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    model.add_parsers(sub)
    train.add_parsers(sub)
    evaluate.add_parsers(sub)
    benchmark.add_parsers(sub)
    search.add_parsers(sub)
    embed.add_parsers(sub)
    return parser


def _one_line_warning(message: Warning | str, category: type[Warning], *args: object, **kwargs: object) -> None:
    print(f"clipworks: warning: {message}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _one_line_warning  # a warning for the user (e.g. emulated bf16), not a source line
            args.func(args)
    except (ClipworksError, FileNotFoundError) as e:  # the user's input; anything else is a bug: a traceback
        print(f"clipworks {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"clipworks {args.command}: interrupted; checkpoints already written are intact", file=sys.stderr)
        return 130
    return 0

