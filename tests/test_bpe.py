"""Tests for clipworks.models.bpe: `Merges.apply` against OpenAI's own `bpe()` on small made-up merge tables.

CLIP's table ranks every merge after the merges that make its parts and makes each string once, so some of the
reference's rules never show in CLIP's ids: a round that creates a pair ranked before its own, a string made by
two merges. Random tables over a few letters have both, and words over a few letters meet ties, runs and
overlapping pairs ("a a a") all the time. Words of thousands of symbols take the array rounds, cuts and pieces.
(Parity with OpenAI's tokenizer on CLIP's own table is in test_tokenizer.py.)
"""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
from reference import openai_simple_tokenizer

from clipworks.models import bpe
from clipworks.models.bpe import _ARRAY_ROUNDS_FROM, Merges
from clipworks.models.pair_table import PairTable

END = "</w>"


class Toy:
    """A made-up merge table, as `Merges` over ids and as OpenAI's SimpleTokenizer (whose `bpe` reads only
    `bpe_ranks` and `cache`) over strings."""

    def __init__(self, table: list[tuple[str, str]], letters: str) -> None:
        strings = sorted({*letters, *(c + END for c in letters), *(s for pair in table for s in pair),
                          *(a + b for a, b in table)})
        self.ids = {s: i for i, s in enumerate(strings)}
        self.strings = strings
        self.merges = Merges([(self.ids[a], self.ids[b], self.ids[a + b]) for a, b in table])
        self.reference = object.__new__(openai_simple_tokenizer().SimpleTokenizer)
        self.reference.bpe_ranks = {pair: rank for rank, pair in enumerate(table)}
        self.reference.cache = {}

    def ours(self, word: str, limit: int | None = None) -> list[str]:
        symbols = [self.ids[c] for c in word[:-1]] + [self.ids[word[-1] + END]]
        return [self.strings[i] for i in self.merges.apply(symbols, limit=limit)]

    def theirs(self, word: str) -> list[str]:
        return self.reference.bpe(word).split(" ")


def random_table(rng: random.Random, letters: str, size: int) -> list[tuple[str, str]]:
    """`size` merges of strings over `letters` in random rank order, so a merge often ranks before the merges
    that make its parts; strings made twice ("a"+"bc", "ab"+"c") are allowed."""
    made, ends = list(letters), [c + END for c in letters]
    table: list[tuple[str, str]] = []
    while len(table) < size:
        left, right = rng.choice(made), rng.choice(made + ends)
        if (left, right) in table:
            continue
        table.append((left, right))
        (ends if right.endswith(END) else made).append(left + right)
    rng.shuffle(table)
    return table


def test_hand_checked_overlaps_and_deferred_pairs() -> None:
    # One round merges "a a" left to right without overlap: "a a a" -> "aa a", "a a a a" -> "aa aa".
    toy = Toy([("a", "a")], "ab")
    assert toy.ours("aaaab") == toy.theirs("aaaab") == ["aa", "aa", "b</w>"]
    assert toy.ours("aaab") == toy.theirs("aaab") == ["aa", "a", "b</w>"]
    # The round of (a, b) creates (ab, a), ranked before it, but must not take the second "a" from (a, b) first:
    # the reference ranks pairs again only after the whole round.
    toy = Toy([("ab", "a"), ("a", "b")], "abx")
    assert toy.ours("ababx") == toy.theirs("ababx") == ["ab", "ab", "x</w>"]


def test_random_tables_and_short_words_match_reference() -> None:
    rng = random.Random(0)
    for _ in range(300):
        letters = rng.choice(["ab", "abc", "abcd"])
        toy = Toy(random_table(rng, letters, rng.randint(1, 25)), letters)
        words = ["".join(rng.choices(letters, k=rng.randint(1, 30))) for _ in range(20)]
        words += [letters[0] * k for k in range(1, 12)] + [letters[:2] * k for k in range(1, 8)]
        for word in words:
            assert toy.ours(word) == toy.theirs(word), (toy.reference.bpe_ranks, word)


@pytest.mark.parametrize("seed", range(6))
def test_random_tables_and_long_words_match_reference(seed: int) -> None:
    # "e" is in no merge, so words containing it can be cut there; runs and repeats take many array rounds.
    rng = random.Random(seed)
    toy = Toy(random_table(rng, "abcd", 40), "abcde")
    n = 3 * _ARRAY_ROUNDS_FROM
    words = ["".join(rng.choices("abcd", k=n)), "".join(rng.choices("abcde", k=n)), "a" * n, "a" * (n + 1),
             # Shorter than _ARRAY_ROUNDS_FROM: array rounds only while each pays, then one heap, uncut.
             "a" * 600, "".join(rng.choices("abcd", k=bpe._ARRAYS_FROM)), "ab" * 400,
             "ab" * (n // 2), "abcabd" * (n // 6), "".join(rng.choice(["aaaa", "b", "cd", "e"]) for _ in range(n // 2)),
             # Pieces between cuts of every size: merged together (short), by the heap, with array rounds (long).
             "e".join("".join(rng.choices("abcd", k=rng.choice([1, 3, 64, 65, 300, n // 2]))) for _ in range(12))]
    for word in words:
        theirs = toy.theirs(word)
        assert toy.ours(word) == theirs, (toy.reference.bpe_ranks, word[:40])
        # With a limit, the start is exact and at least `limit` long (or the whole word).
        for limit in (1, 7, 300):
            start = toy.ours(word, limit)
            assert start == theirs[: len(start)] and len(start) >= min(limit, len(theirs)), (word[:40], limit)


@pytest.mark.parametrize("rounds", ["as costed", "numpy rounds only", "heap only"])
@pytest.mark.parametrize("seed", range(4))
def test_many_words_at_once_equal_each_word_alone(seed: int, rounds: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """`apply_many` on random tables and words of 1..40 symbols (runs, repeats, ties) equals `apply` of each word,
    and so the reference: with its numpy rounds until every word is done, with one heap for all words from the
    start (`_pair_rounds_many`), and handing over from one to the other when a round stops paying."""
    if rounds != "as costed":  # a round is made while its merges are at least _MANY_ROUND (+ one per symbols)
        monkeypatch.setattr(bpe, "_MANY_ROUND", -math.inf if rounds == "numpy rounds only" else math.inf)
    rng = random.Random(seed)
    for _ in range(40):
        letters = rng.choice(["ab", "abc", "abcd"])
        toy = Toy(random_table(rng, letters, rng.randint(1, 30)), letters)
        words = ["".join(rng.choices(letters, k=rng.randint(1, 40))) for _ in range(60)]
        words += [letters[0] * k for k in range(1, 9)]
        rng.shuffle(words)
        symbols = [toy.ids[c] for word in words for c in [*word[:-1], word[-1] + END]]
        merged, counts = toy.merges.apply_many(np.array(symbols), np.array([len(w) for w in words]))
        ends = np.cumsum(counts).tolist()
        merged = merged.tolist()
        for word, end, count in zip(words, ends, counts.tolist()):
            assert [toy.strings[i] for i in merged[end - count:end]] == toy.theirs(word), word


def test_merge_table_validation() -> None:
    with pytest.raises(ValueError, match="at least one merge"):
        Merges([])
    with pytest.raises(ValueError, match=r"ids in \[0, 65536\)"):
        Merges([(1, 2, 70000)])


def test_pair_table_equals_a_dict_on_hits_misses_and_crowded_probes() -> None:
    rng = np.random.default_rng(0)
    keys = np.unique(rng.integers(0, 1 << 32, 5000))
    values = rng.integers(0, 1 << 40, len(keys))
    table = PairTable(keys, values, -7)
    reference = dict(zip(keys.tolist(), values.tolist()))
    queries = np.concatenate([keys, rng.integers(0, 1 << 32, 5000), keys[:10]])
    assert table.get(queries).tolist() == [reference.get(k, -7) for k in queries.tolist()]
    crowded = np.arange(64, dtype=np.int64) << 26  # keys whose hashes pile up: long probe sequences
    table = PairTable(crowded, crowded + 1, 0)
    assert table.get(crowded).tolist() == (crowded + 1).tolist() and table.get(crowded + 3).tolist() == [0] * 64


def test_pair_ranks_by_square_sorted_search_and_hash_table_agree() -> None:
    """`_ranks_of` reads small ids' pairs from a square, and looks the others up by a sorted search (fewer than
    _HASH_FROM pairs) or in the hash table (more): all three give a dict's answer."""
    rng = np.random.default_rng(1)
    # Parts with large ids, then with small ones; merged ids are no part (a table with cycles would make no sense).
    parts = np.concatenate([rng.integers(1024, 60000, (1000, 2)), rng.integers(0, 300, (300, 2))])
    table = [(int(a), int(b), 60000 + k) for k, (a, b) in enumerate(parts)]
    merges = Merges(table)
    ranks = {a << 16 | b: rank for rank, (a, b, _) in enumerate(table)}  # a pair listed twice keeps its later rank
    lefts, rights = np.array([a for a, _, _ in table]), np.array([b for _, b, _ in table])
    for n in (5, bpe._HASH_FROM - 1, bpe._HASH_FROM + 1):
        for merge in (rng.choice(1000, n), rng.choice(np.arange(1000, len(table)), n)):  # large ids, small ones
            left = np.where(rng.random(n) < 0.5, lefts[merge], rng.permutation(lefts[merge]))  # half not merges
            expected = [ranks.get(a << 16 | b, bpe._NOT_A_MERGE) for a, b in zip(left.tolist(), rights[merge].tolist())]
            assert merges._ranks_of(left, rights[merge]).tolist() == expected


@pytest.mark.parametrize("offset", [0, 60000])
def test_distinct_words_merged_once_equal_apply_many(offset: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """`_apply_distinct` (each distinct word merged once, told apart by a packed key) equals `apply_many` on words
    that repeat, words of one symbol and words too long for a key: ids near 2**16 (`offset`) pack three a key."""
    monkeypatch.setattr(bpe, "_DISTINCT_FROM", 0)  # 200 words: find the distinct ones all the same
    rng = random.Random(offset)
    for _ in range(30):
        letters = rng.choice(["ab", "abc", "abcd"])
        toy = Toy(random_table(rng, letters, rng.randint(1, 30)), letters)
        ids = {i: i + offset for i in range(len(toy.strings))}
        merges = Merges([(ids[toy.ids[a]], ids[toy.ids[b]], ids[toy.ids[a + b]])
                         for a, b in toy.reference.bpe_ranks])
        vocabulary = ["".join(rng.choices(letters, k=rng.randint(1, 12))) for _ in range(15)]
        words = rng.choices(vocabulary, k=200)
        symbols = np.array([ids[toy.ids[c]] for word in words for c in [*word[:-1], word[-1] + END]])
        lengths = np.array([len(w) for w in words])
        merged, counts = merges._apply_distinct(symbols, lengths)
        expected, expected_counts = merges.apply_many(symbols, lengths)
        assert merged.tolist() == expected.tolist() and counts.tolist() == expected_counts.tolist()


def test_cuts_are_where_no_merge_joins_the_two_sides() -> None:
    """Hand-checked cuts, on the square of small ids and on the hash table (an id no merge uses, above them)."""
    a, b, c, far = 0, 1, 2, 60000
    merges = Merges([(a, b, 3), (3, c, 4)])  # "ab", then "abc": only (a, b) and (b, c) ever join
    assert merges._cuts(np.array([a, b, c, a, c, c, b])).tolist() == [3, 4, 5, 6]
    assert merges._cuts(np.array([a, far, b, c])).tolist() == [1, 2]
    # Merged symbols end and start like their parts: "abc" ends in c, "ab" starts with a and ends in b.
    assert merges._cuts(np.array([4, 3, c, 3])).tolist() == [1, 3]
