"""Time per character of `Tokenizer.encode` on a single word of each length from 100 to 100,000 characters, for
several kinds of word (issue 14, item 4: "≤ 1 µs per character on any input"). bench/tokenizer_classes.py times
100,000-character texts only; a word of one to a few thousand characters takes other paths of `Merges.apply` (its
thresholds count UTF-8 bytes, so a CJK character is 3 symbols, an emoji 4). Each run is on a fresh tokenizer (no
cache helps; words over 256 characters are not cached anyway), so its merge table starts out of the CPU's caches, as
in a process that did other work since its last text; with `--warm`, on one tokenizer that has just encoded another
word of the same kind and length, its id caches emptied before each run. Timed in wall time and in the process's
CPU time (on a shared machine the wall time also counts the time other jobs held the cores); the median of a few
runs is shown. `--against OLD_SRC` times another source tree's tokenizer too, alternately run by run with this one,
as "before" (so each run follows one of the other tree's, which evicts part of its tables from the caches: warm, not
hot).

Run: PYTHONPATH=src .venv/bin/python bench/tokenizer_word_lengths.py [--append] [--repeats N] [--warm] [--best]
     [--against OLD_SRC]
"""

from __future__ import annotations

import argparse
import random
import statistics
from pathlib import Path

import torch
from timing import append_results, cpu_line
from tokenizer_classes import other_tokenizer, per_char

from clipworks.models import tokenizer as tokenizer_module
from clipworks.models.cleaning import clean
from clipworks.models.tokenizer import _WORD_PATTERN

LENGTHS = (100, 300, 600, 1000, 1023, 1024, 1200, 1500, 2000, 3000, 5000, 10_000, 30_000, 100_000)
# Each kind is one word to the split pattern: letters of any script, or a run of characters that are neither
# letters, digits nor spaces.
KINDS = {
    "random letters": "abcdefghijklmnopqrstuvwxyz",
    "random CJK": "".join(map(chr, range(0x4E00, 0xA000))),
    "random emoji": "".join(map(chr, range(0x1F300, 0x1FB00))),  # the range bench/tokenizer_classes.py draws from
    "mixed letters": "abcdefghijklmnopqrstuvwxyzÀÉÎØÜßàéîøüñçΑΒΓαβγδεЖЗИжзийкاببتثעבריתไทย한국어日本語中文",
    "random punctuation": "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~",
}


def word(alphabet: str, n: int, rng: random.Random) -> str:
    """n characters drawn from `alphabet` that are one word after cleaning (ftfy may take accented letters for
    mojibake and decode them into something else: then they are drawn again)."""
    while len(_WORD_PATTERN.findall(clean(text := "".join(rng.choices(alphabet, k=n))))) != 1:
        pass
    return text


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--append", action="store_true", help="append the table to bench/RESULTS.md")
    parser.add_argument("--repeats", type=int, default=5, help="runs per kind and length; the median is shown")
    parser.add_argument("--best", action="store_true", help="show the fastest run instead of the median: on a shared "
                        "machine whose speed drifts by the second, the code's own speed (timeit's advice)")
    parser.add_argument("--warm", action="store_true", help="one tokenizer per source tree, warmed on a word of "
                                                                "the same kind and length")
    parser.add_argument("--against", type=Path, help="another source tree (its src directory) to time alternately "
                                                        "with this one, as 'before'")
    args = parser.parse_args()
    modules = (tokenizer_module,) if args.against is None else (other_tokenizer(args.against), tokenizer_module)
    print(cpu_line())
    rng = random.Random(0)
    table = ["| characters | " + " | ".join(KINDS) + " |", "|---:|" + "---:|" * len(KINDS)]
    print("\n".join(table))
    worst = {kind: [(0.0, 0.0)] * len(modules) for kind in KINDS}  # (wall, CPU) per module
    for n in LENGTHS:
        cells = []
        for kind, alphabet in KINDS.items():
            text = word(alphabet, n, rng)
            if args.warm:
                for module in modules:
                    module.get_tokenizer().encode(word(alphabet, n, rng))
            times = per_char("encode", text, args.repeats, modules, fresh=not args.warm,
                             statistic=min if args.best else statistics.median)
            worst[kind] = [(max(w, t.wall), max(c, t.cpu)) for (w, c), t in zip(worst[kind], times)]
            cells.append(" → ".join(f"{t.wall:.2f} ({t.cpu:.2f})" for t in times))
        row = f"| {n:,} | " + " | ".join(cells) + " |"
        print(row, flush=True)
        table.append(row)
    table.append("| **worst** | " + " | ".join(" → ".join(f"**{w:.2f}** ({c:.2f})" for w, c in worst[kind])
                                              for kind in KINDS) + " |")
    print(table[-1])
    if args.append:
        against = (f" Each cell is before → after; 'before' is {args.against}, timed alternately run by run."
                   if args.against else "")
        how = ("one warm tokenizer, its id caches emptied before each run" if args.warm else
               "each on a fresh tokenizer")
        append_results("Tokenizer per word length (bench/tokenizer_word_lengths.py)", f"torch {torch.__version__}",
                       f"`encode` of one word of n characters, µs per character: "
                       f"{'fastest' if args.best else 'median'} of {args.repeats} runs, "
                       f"{how}, wall time (the process's CPU time).{against}", table)


if __name__ == "__main__":
    main()
