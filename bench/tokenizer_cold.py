"""Time per character of encoding one new word right after the CPU's caches were flushed (a process that did other
work, e.g. ran the model, since its last text), clipworks against open_clip's `SimpleTokenizer` (OpenAI's
algorithm: ftfy, the split pattern, the Python merge loop), both on the same words, one call at a time. Issue 14's
bound ("≤ 1 µs per character on any input") holds warm (bench/tokenizer_word_lengths.py --warm); this shows what a
cold call adds: a roughly fixed latency from memory (the merge tables, the code), which on a 100-character word is
more than the work itself, and which the reference pays as well.

Each cell is the median over a few words of one call's wall time after 64 MB were written (more than the last-level
cache of the CPU classes here), in µs per character, ours → open_clip's, and open_clip's time as a multiple of ours.

Run: PYTHONPATH=src .venv-bench/bin/python bench/tokenizer_cold.py [--append] [--words N]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

import numpy as np
import open_clip
import torch
from timing import append_results, cpu_line
from tokenizer_word_lengths import KINDS, word

from clipworks.models.tokenizer import get_tokenizer

LENGTHS = (100, 300, 1000, 3000)
_FLUSH_BYTES = 64 * 2**20


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--append", action="store_true", help="append the table to bench/RESULTS.md")
    parser.add_argument("--words", type=int, default=7, help="words per kind and length; the median is shown")
    args = parser.parse_args()
    print(cpu_line())
    ours, theirs = get_tokenizer(), open_clip.tokenizer.SimpleTokenizer()
    specials = dict(theirs.cache)  # its cache starts with the special tokens, which it needs
    flush = np.zeros(_FLUSH_BYTES // 8)
    rng = random.Random(0)
    table = ["| characters | " + " | ".join(KINDS) + " |", "|---:|" + "---:|" * len(KINDS)]
    print("\n".join(table))
    for n in LENGTHS:
        cells = []
        for alphabet in KINDS.values():
            times: dict[str, list[float]] = {"ours": [], "theirs": []}
            for _ in range(args.words):
                text = word(alphabet, n, rng)
                for name, encode in (("ours", ours.encode), ("theirs", theirs.encode)):
                    ours._word_ids.clear()
                    ours._chunk_ids.clear()
                    theirs.cache = dict(specials)
                    flush += 1.0  # every cache line of 64 MB written: the tables above are out of the CPU's caches
                    start = time.perf_counter()
                    encode(text)
                    times[name].append((time.perf_counter() - start) / n * 1e6)
            mine, reference = statistics.median(times["ours"]), statistics.median(times["theirs"])
            cells.append(f"{mine:.2f} → {reference:.2f} ({reference / mine:.1f}×)")
        row = f"| {n:,} | " + " | ".join(cells) + " |"
        print(row, flush=True)
        table.append(row)
    if args.append:
        append_results("Tokenizer, one word after the CPU caches were flushed (bench/tokenizer_cold.py)",
                       f"torch {torch.__version__}, open_clip {open_clip.__version__}",
                       f"`encode` of one new word of n characters right after 64 MB were written, µs per character "
                       f"(median of {args.words} words): clipworks → open_clip's SimpleTokenizer (OpenAI's "
                       "algorithm), and open_clip's time as a multiple of ours.", table)


if __name__ == "__main__":
    main()
