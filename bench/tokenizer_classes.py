"""Time per character of `Tokenizer.encode` (no truncation) and `tokenize(..., truncate=True)` on 100k-character
texts of each hostile input class (issue 14, item 4: "≤ 1 µs per character on any input"), with a fresh tokenizer
per run so no cache helps. Prints the median of a few runs per class, in wall time and in the process's CPU time
(on a shared machine the wall time also counts the time other jobs held the cores), and, with `--profile CLASS`,
a cProfile of one encode. `--against OLD_SRC` times another source tree's tokenizer too, alternately run by run
with this one, as "before".

Run: PYTHONPATH=src .venv/bin/python bench/tokenizer_classes.py [--append] [--repeats N] [--only WORD]
     [--against OLD_SRC] [--profile CLASS]
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import importlib
import importlib.util
import pstats
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import NamedTuple

import torch
from timing import append_results, cpu_line

from clipworks.models import tokenizer as tokenizer_module
from clipworks.models.tokenizer import get_tokenizer

N = 100_000


def _random(alphabet: str, rng: random.Random, n: int = N) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


def _cjk(rng: random.Random) -> str:
    return "".join(chr(rng.randint(0x4E00, 0x9FFF)) for _ in range(N))


def _emoji(rng: random.Random) -> str:
    return "".join(chr(rng.randint(0x1F300, 0x1FAFF)) for _ in range(N))


def _words(rng: random.Random, alphabet: str, sizes: tuple[int, int], sep: str = " ") -> str:
    out: list[str] = []
    n = 0
    while n < N:
        word = _random(alphabet, rng, rng.randint(*sizes))
        out.append(word)
        n += len(word) + len(sep)
    return sep.join(out)[:N]


def inputs() -> dict[str, str]:
    """Each class of input, N characters, seeded."""
    rng = random.Random(0)
    letters = "abcdefghijklmnopqrstuvwxyz"
    scripts = (letters + "ÀÉÎØÜßàéîøüñçΑΒΓαβγδεЖЗИжзийкاببتثעבריתไทย한국어日本語中文" + "0123456789"
               + ".,;:!?'\"-()" + "😀👍🏽🇫🇷♥★")
    entities = ["&amp;", "&lt;", "&gt;", "&quot;", "&#39;", "&#x263a;", "&nbsp;", "&eacute;", "&amp;amp;", "&copy;"]
    return {
        "random ASCII letters": _random(letters, rng),
        "random ASCII printable": _random("".join(chr(c) for c in range(32, 127)), rng),
        "random CJK": _cjk(rng),
        "random emoji": _emoji(rng),
        "mixed scripts": _random(scripts, rng),
        "one repeated letter": "a" * N,
        "one repeated CJK": "語" * N,
        "one repeated emoji": "😀" * N,
        "many short words": _words(rng, letters, (1, 8)),
        "many short CJK/Latin words": _words(rng, letters + "日本語中文한국어éüñ", (1, 6)),
        "whitespace-heavy": _words(rng, letters, (1, 4), sep=" \t\n\u00a0\u2028 "),
        "HTML-entity-heavy": "".join(rng.choice(entities) + _random(letters, rng, rng.randint(0, 3))
                                     for _ in range(N // 5))[:N],
        "control characters": _random(letters + "\x00\x01\x07\x1b\x7f\u200b\u200d\ufeff", rng),
        "mojibake": ("â€™Ã©Ã¨ " + _random(letters, rng, 8) + " ") * (N // 20),
    }


class PerChar(NamedTuple):
    wall: float  # median µs per character, wall clock
    cpu: float  # median µs per character, this process's CPU time


def other_tokenizer(src: Path) -> ModuleType:
    """The `clipworks.models.tokenizer` module of another source tree (say an older checkout's src), loaded beside
    this one as the package `other_models` (the models package imports its own modules relatively)."""
    models = src / "clipworks" / "models"
    spec = importlib.util.spec_from_file_location("other_models", models / "__init__.py",
                                                  submodule_search_locations=[str(models)])
    package = importlib.util.module_from_spec(spec)
    sys.modules["other_models"] = package
    spec.loader.exec_module(package)
    return importlib.import_module("other_models.tokenizer")


def per_char(how: str, text: str, repeats: int = 5, modules: Sequence[ModuleType] = (tokenizer_module,), *,
             fresh: bool = True, statistic: Callable[[list[float]], float] = statistics.median) -> list[PerChar]:
    """Median (or another `statistic` of the runs) µs per character of `how` ("encode": `Tokenizer.encode`;
    "tokenize": `tokenize(..., truncate=True)`) on `text` with each module's tokenizer, each run on a fresh tokenizer
    (no warm cache), or with not `fresh` on the module's shared tokenizer with its id caches emptied (its tables stay
    in the CPU's caches from earlier runs). The modules take turns run by run, so load from elsewhere on the machine
    hits them alike."""
    walls, cpus = [[] for _ in modules], [[] for _ in modules]
    for _ in range(repeats):
        for module, wall_times, cpu_times in zip(modules, walls, cpus):
            if fresh:
                module.get_tokenizer.cache_clear()
                # The dropped tokenizer (~26 MB) is in reference cycles (its caches hold its bound methods): free
                # it now, or hundreds of runs pile up gigabytes until a full collection, and later runs slow down.
                gc.collect()
            tokenizer = module.get_tokenizer()
            tokenizer._word_ids.clear()
            tokenizer._chunk_ids.clear()
            wall, cpu = time.perf_counter(), time.process_time()
            tokenizer.encode(text) if how == "encode" else module.tokenize(text, truncate=True)
            wall_times.append(time.perf_counter() - wall)
            cpu_times.append(time.process_time() - cpu)
    return [PerChar(statistic(w) / len(text) * 1e6, statistic(c) / len(text) * 1e6)
            for w, c in zip(walls, cpus)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--append", action="store_true", help="append the table to bench/RESULTS.md")
    parser.add_argument("--profile", help="cProfile one encode of this class")
    parser.add_argument("--repeats", type=int, default=5, help="runs per class and method; the median is shown")
    parser.add_argument("--only", help="time only the classes whose name contains this")
    parser.add_argument("--against", type=Path, help="another source tree (its src directory) to time alternately "
                                                        "with this one, as 'before'")
    args = parser.parse_args()
    texts = {name: text for name, text in inputs().items() if args.only is None or args.only in name}
    if args.profile:
        profile = cProfile.Profile()
        profile.runcall(get_tokenizer().encode, texts[args.profile])
        pstats.Stats(profile).sort_stats("tottime").print_stats(15)
        return
    modules = (tokenizer_module,) if args.against is None else (other_tokenizer(args.against), tokenizer_module)
    print(cpu_line())
    header = ["encode µs/char (CPU)", "tokenize(truncate=True) µs/char (CPU)"]
    if args.against:
        header = [f"{how}, {when}" for how in header for when in ("before", "after")]
    table = ["| input (100,000 characters) | " + " | ".join(header) + " |", "|---|" + "---:|" * len(header)]
    for name, text in texts.items():
        cells = [f"{t.wall:.{digits}f} ({t.cpu:.{digits}f})" for how, digits in (("encode", 2), ("tokenize", 3))
                 for t in per_char(how, text, args.repeats, modules)]
        row = f"| {name} | " + " | ".join(cells) + " |"
        print(row, flush=True)
        table.append(row)
    if args.append:
        against = f"; 'before' is {args.against}, timed alternately run by run" if args.against else ""
        append_results("Tokenizer per input class (bench/tokenizer_classes.py)", f"torch {torch.__version__}",
                       f"Median of {args.repeats} runs, each on a fresh tokenizer (empty caches), of one "
                       f"100,000-character text: wall time (the process's CPU time){against}.", table)


if __name__ == "__main__":
    main()
