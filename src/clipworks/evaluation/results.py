"""How evaluation results are written: `<out>/<name>.json` for programs and `<out>/<name>.md` for people."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..io.files import write_text_atomic


def write_results(out: str | os.PathLike, name: str, results: dict[str, Any], markdown: str) -> Path:
    """Both files, each written atomically; returns the markdown file's path."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / f"{name}.json", json.dumps(results, indent=2))
    write_text_atomic(out / f"{name}.md", markdown)
    return out / f"{name}.md"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A markdown table; floats with four decimals."""
    cell = lambda v: f"{v:.4f}" if isinstance(v, float) else str(v)  # noqa: E731
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows])
