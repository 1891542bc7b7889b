"""Time per character of `Tokenizer.encode` (no truncation) and `tokenize(..., truncate=True)` on 100k-character
texts of each hostile input class (issue 14, item 4: "≤ 1 µs per character on any input"), with a fresh tokenizer
per run so no cache helps. Prints the median of a few runs per class, in wall time and in the process's CPU time
(on a shared machine the wall time also counts the time other jobs held the cores), and, with `--profile CLASS`,
a cProfile of one encode.

Run: PYTHONPATH=src .venv/bin/python bench/tokenizer_classes.py [--append] [--repeats N] [--only WORD] [--profile CLASS]
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import random
import statistics
import time
from collections.abc import Callable
from typing import NamedTuple

import torch
from timing import append_results, cpu_line

from clipworks.models.tokenizer import Tokenizer, get_tokenizer, tokenize

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


def per_char(fn: Callable[[str], object], text: str, repeats: int = 5) -> PerChar:
    """Median µs per character of fn(text), each run on a fresh tokenizer (no warm cache)."""
    walls, cpus = [], []
    for _ in range(repeats):
        get_tokenizer.cache_clear()
        tokenizer = get_tokenizer()
        wall, cpu = time.perf_counter(), time.process_time()
        fn(text) if fn is not Tokenizer.encode else tokenizer.encode(text)
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return PerChar(statistics.median(walls) / len(text) * 1e6, statistics.median(cpus) / len(text) * 1e6)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--append", action="store_true", help="append the table to bench/RESULTS.md")
    parser.add_argument("--profile", help="cProfile one encode of this class")
    parser.add_argument("--repeats", type=int, default=5, help="runs per class and method; the median is shown")
    parser.add_argument("--only", help="time only the classes whose name contains this")
    args = parser.parse_args()
    texts = {name: text for name, text in inputs().items() if args.only is None or args.only in name}
    if args.profile:
        get_tokenizer()
        profile = cProfile.Profile()
        profile.runcall(get_tokenizer().encode, texts[args.profile])
        pstats.Stats(profile).sort_stats("tottime").print_stats(15)
        return
    print(cpu_line())
    table = ["| input (100,000 characters) | encode µs/char (CPU) | tokenize(truncate=True) µs/char (CPU) |",
             "|---|---:|---:|"]
    for name, text in texts.items():
        encode = per_char(Tokenizer.encode, text, args.repeats)
        truncated = per_char(lambda t: tokenize(t, truncate=True), text, args.repeats)
        row = f"| {name} | {encode.wall:.2f} ({encode.cpu:.2f}) | {truncated.wall:.3f} ({truncated.cpu:.3f}) |"
        print(row, flush=True)
        table.append(row)
    if args.append:
        append_results("Tokenizer per input class (bench/tokenizer_classes.py)", f"torch {torch.__version__}",
                       f"Median of {args.repeats} runs, each on a fresh tokenizer (empty caches), of one "
                       "100,000-character text: wall time (the process's CPU time).",
                       table)


if __name__ == "__main__":
    main()
