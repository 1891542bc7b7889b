"""What every command's parser shares: one-line argparse errors and the --precision flag."""

from __future__ import annotations

import argparse
import typing

from ..hardware import PRECISIONS


class Parser(argparse.ArgumentParser):
    """argparse, with errors as one line and a pointer to --help."""

    def error(self, message: str) -> typing.NoReturn:
        # argparse's default prints the whole usage block; one line with the way forward is enough.
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def precision_flag(p: argparse.ArgumentParser, what: str, *, default: str | None = "auto") -> None:
    """--precision, for a command whose model `what` (e.g. "embeds images and queries")."""
    p.add_argument("--precision", choices=PRECISIONS, default=default, help=f"the precision the model {what} in; "
                   "auto: bf16 where this CPU (or GPU) computes it natively, else fp32 (default: "
                   f"{default or 'the one the index was built at'})")
