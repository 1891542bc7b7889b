"""Byte-pair merging of one word as OpenAI's CLIP tokenizer does it (`bpe()` in `clip/simple_tokenizer.py`;
Sennrich et al., 2016), with O(n log n) work for a word of n symbols instead of the reference's O(n^2).

The reference repeats a round until no adjacent pair of symbols is a merge: find the pair with the lowest rank,
then merge its occurrences scanning left to right, skipping one that overlaps an occurrence just merged ("a a a"
with the merge (a, a) becomes "aa a"). Each round rescans the whole word, and a long word of varied text takes
about as many rounds as it has symbols. `Merges.apply` makes the same rounds with work per merge, not per round:
- `_pair_rounds`: symbols form a linked list indexed by their starting position, so a merge is O(1),
  and each adjacent pair that is a merge is an entry `rank * n + position` of a heap. A round pops the entries of
  the lowest rank in position order, the reference's left-to-right scan. The rank of the pair starting at each
  position is kept in a list, so an entry whose pair has changed since it was pushed is told by one read and
  skipped, which is also the overlap rule: in "a a a" the second (a, a) finds its left "a" merged into "aa". The
  reference ranks pairs only between rounds: a round cannot create a pair of its own rank ((x, ab) or (ab, y)
  equal to (a, b) would need ab = a or ab = b), a pair it creates ranked after its own is pushed at once (the
  round stops before it), and one ranked before it (when "ab" takes part in a merge ranked before (a, b)) waits
  for the round's end.
- `_array_rounds`: a word of a few hundred symbols or more first runs the reference's rounds on numpy arrays,
  while a round merges more than it costs: runs such as "aaaa..." or "😀😀😀..." (whose first round joins every
  emoji's first two bytes) take a few rounds that each merge much of the word, which would cost the heap a
  Python step per merge.
- `_cuts`: a word can be cut where no merge could ever join its two sides, into pieces that merge as words of
  their own. The heap then works on one piece at a time (far jumps in a long word cost cache misses), and when
  only the first ids are needed (`tokenize` keeps 77), the rest of the word is not merged at all.
- `apply_many`: many short words (a long word's short pieces, a long text's new words) merge together in numpy
  rounds, each word's round on its own lowest-ranked pair: a Python step per round instead of per merge. Random
  CJK or emoji cut into pieces of one to a few characters, which this merges all at once. A round costs a few
  dozen numpy calls however few words still merge, so once a round would merge fewer pairs than the heap makes
  in that time, one heap finishes all the words left.
- `_apply_distinct`: a long word's short pieces repeat, so each distinct piece is merged once (found by sorting
  keys that pack a piece's symbols) and its ids copied wherever it occurs.
Where the thresholds below come from: bench/RESULTS.md, "Tokenizer per word length".
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator, Sequence
from itertools import pairwise

import numpy as np

from .pair_table import PairTable

_NOT_A_MERGE = np.iinfo(np.int64).max  # the rank of a pair that is not a merge, after every real rank
# Words of at least this many symbols are merged from numpy arrays, shorter ones from lists: below, numpy's fixed
# costs (more of them with the CPU's caches cold, as on a tokenizer's first call) outweigh what array rounds save.
_ARRAYS_FROM = 512
# Words of at least this many symbols are cut into pieces (short ones merged by `apply_many`), and their array
# rounds have an allowance of _FREE_ROUNDS rounds.
_ARRAY_ROUNDS_FROM = 1024
_FREE_ROUNDS = 2
# Costs counted in merges' worth of `_pair_rounds` work (measured ratios, rounded toward fewer array rounds): an
# array round costs _ROUND merges plus one per _SCAN symbols, and is made only if it merges more pairs than that;
# a round of `apply_many` costs _MANY_ROUND merges plus one per _MANY_SCAN symbols.
_SCAN = 512
_ROUND = 40
_MANY_SCAN = 64
_MANY_ROUND = 48
_HASH_FROM = 2048  # pairs looked up at once from this many on go to the hash table, fewer to a sorted search
_PIECE = 256  # a long word's pair rounds run piece by piece, a piece at least this long where a cut is possible
_SHORT = 64  # a long word's pieces up to this many symbols are merged together, by `apply_many`
_DISTINCT_FROM = 4096  # from this many pieces on, each distinct piece is merged once (`_apply_distinct`)


def _segments(values: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """values[starts[0]:starts[0] + lengths[0]], values[starts[1]:...], ... one after another, as one array."""
    ends = np.cumsum(lengths)
    return values[np.repeat(starts - (ends - lengths), lengths) + np.arange(ends[-1] if len(ends) else 0)]


def _overlaps_dropped(at: np.ndarray) -> np.ndarray:
    """The starts a round merges, from the ascending starts `at` of its pair: consecutive starts only occur for a
    pair (a, a), in a run of a's, and the reference's scan merges the run's 1st, 3rd, 5th, ... occurrence, because
    each merge consumes the next occurrence's left "a"."""
    if (at[1:] - at[:-1]).min(initial=2) > 1:
        return at
    k = np.arange(len(at))
    run_start = np.maximum.accumulate(np.where(np.diff(at, prepend=-2) != 1, k, 0))
    return at[(k - run_start) % 2 == 0]


def _without(n: int, positions: np.ndarray) -> np.ndarray:
    """A mask of n positions, False at `positions`: one mask to delete the same positions from several arrays."""
    keep = np.ones(n, dtype=bool)
    keep[positions] = False
    return keep


class Merges:
    """A ranked table of merges over symbol ids, applied to one word at a time exactly as the reference does."""

    def __init__(self, merges: Sequence[tuple[int, int, int]]) -> None:
        """`merges[rank]` is (left id, right id, merged id), the merged id being that of the two parts' joined
        string; a pair listed twice keeps its later rank, as in the reference's dict. Ids are below 2**16, so
        that a pair of ids packs into one int.
        """
        table = np.array(merges, dtype=np.int64).reshape(-1, 3)  # (M, 3)
        if not len(table) or table.min() < 0 or table.max() >= 1 << 16:
            raise ValueError("a merge table needs at least one merge, and ids in [0, 65536)")
        left, right, merged = table.T  # (M,) each
        # left << 16 | right -> rank: one dict lookup per pair, on ints. dict() keeps the later rank of a pair
        # listed twice.
        self._rank = dict(zip((left << 16 | right).tolist(), range(len(table))))
        # The same table as sorted arrays, for looking up every pair of a long word at once.
        keys = np.array(list(self._rank), dtype=np.int64)
        order = np.argsort(keys)
        self._keys, self._ranks = keys[order], np.array(list(self._rank.values()), dtype=np.int64)[order]
        # A last key after every pair, so that a sorted search always lands on a key (`_ranks_of`).
        self._keys_to_end = np.append(self._keys, _NOT_A_MERGE)
        self._ranks_to_end = np.append(self._ranks, _NOT_A_MERGE)
        self._merged = merged.copy()  # (M,) the merged id of each rank
        self._merged_ids = merged.tolist()  # the same, for `_pair_rounds`
        # And as a square for the pairs of ids below `_dense`, the ids up to the last that is no merge's result
        # (512 for CLIP; capped at 1024, 8 MB): they make all of a word's pairs before its first round, and
        # indexing beats the sorted search.
        self._dense = min(int(np.setdiff1d(np.union1d(left, right), merged).max(initial=-1)) + 1, 1024)
        self._square = np.full((self._dense, self._dense), _NOT_A_MERGE)
        both = (self._keys >> 16 < self._dense) & (self._keys & 0xFFFF < self._dense)
        self._square[self._keys[both] >> 16, self._keys[both] & 0xFFFF] = self._ranks[both]

        # The first and last unmerged symbol of every id: a merged symbol starts like its left part and ends like
        # its right part. Each pass settles one more level of nesting (parts are shorter strings), so this ends.
        self._first, self._last = np.arange(1 << 16), np.arange(1 << 16)
        while not (np.array_equal(self._first[merged], self._first[left])
                   and np.array_equal(self._last[merged], self._last[right])):
            self._first[merged], self._last[merged] = self._first[left], self._last[right]
        # Every (last of a left part, first of a right part): a word can only ever be merged across a boundary
        # between symbols a and b if (last of a, first of b) is here; elsewhere it can be cut (see `_cuts`).
        # As with ranks, pairs of ids below `_dense` (for CLIP all of them: first and last symbols are bytes) are
        # looked up in a square, the others in a hash table.
        joinable = np.unique(self._last[left] << 16 | self._first[right])
        self._joinable = PairTable(joinable, np.ones_like(joinable), 0)
        self._joinable_square = np.zeros((self._dense, self._dense), dtype=bool)
        both = (joinable >> 16 < self._dense) & (joinable & 0xFFFF < self._dense)
        self._joinable_square[joinable[both] >> 16, joinable[both] & 0xFFFF] = True
        self._rank_of = PairTable(self._keys, self._ranks, _NOT_A_MERGE)

    def apply(self, symbols: Sequence[int] | np.ndarray, *, limit: int | None = None) -> list[int]:
        """The symbol ids of one word after all its merges.

        With a `limit`, the result may stop anywhere past its first `limit` ids, which are exact: a long word is
        merged only as far as needed, cut where no merge can cross (see `_cuts`).
        """
        if len(symbols) < _ARRAYS_FROM:
            symbols = symbols.tolist() if isinstance(symbols, np.ndarray) else list(symbols)
            rank = self._rank.get
            ranks = [rank(a << 16 | b, _NOT_A_MERGE) for a, b in zip(symbols, symbols[1:])]
            n = len(symbols)
            return self._pair_rounds(symbols, ranks, [r * n + i for i, r in enumerate(ranks) if r != _NOT_A_MERGE])
        symbols = np.asarray(symbols, dtype=np.int64)
        if len(symbols) < _ARRAY_ROUNDS_FROM:
            return self._merge_piece(symbols)
        if limit is not None and limit < len(symbols):  # (a word has no more ids than symbols)
            # Merge the part before a cut, four times longer at each try, until it gives `limit` symbols; if no
            # cut comes late enough, the whole word.
            cuts, end = self._cuts(symbols), 4 * limit
            while (at := np.searchsorted(cuts, end)) < len(cuts):
                merged = self._merge_long(symbols[: cuts[at]], limit)
                if len(merged) >= limit:
                    return merged
                end = 4 * cuts[at]
        return self._merge_long(symbols, limit)

    def _merge_long(self, symbols: np.ndarray, limit: int | None) -> list[int]:
        """`apply` for a long word, or the part of one before a cut (then it has no end-of-word symbol).

        The word is cut wherever it can be (`_cuts`): its short pieces are merged all together by `apply_many`,
        each long one (runs such as "aaaa...", long stretches of joinable letters) by itself.
        """
        bounds = np.concatenate([[0], self._cuts(symbols), [len(symbols)]])
        lengths = np.diff(bounds)  # (P,) symbols per piece
        short = lengths <= _SHORT
        if short.all():
            return self._apply_distinct(symbols, lengths)[0].tolist()
        merged, (flat, counts) = [], self._apply_distinct(symbols[np.repeat(short, lengths)], lengths[short])
        # The short pieces' ids come out of `flat` in order, the i-th ending at ends[i + 1]; the long pieces go
        # between them.
        flat, ends, taken = flat.tolist(), [0, *np.cumsum(counts).tolist()], 0
        for seen, piece in enumerate(np.flatnonzero(~short).tolist()):
            merged += flat[ends[taken]:ends[piece - seen]]  # the short pieces before this one
            taken = piece - seen
            part = symbols[bounds[piece]:bounds[piece + 1]]
            merged += self._merge_piece(part) if len(part) >= _ARRAYS_FROM else self.apply(part)
            if limit is not None and len(merged) >= limit:
                return merged
        return merged + flat[ends[taken]:]

    def _merge_piece(self, symbols: np.ndarray) -> list[int]:
        """The merged ids of one word or piece of a word, at least _ARRAYS_FROM symbols long: array rounds while
        they gain, then pair rounds piece by piece."""
        merged: list[int] = []
        for part in self._pieces(*self._array_rounds(symbols)):
            merged += self._pair_rounds(*part)
        return merged

    def apply_many(self, symbols: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """`apply` to many words at once: `symbols` (N,) holds the words one after another, `lengths` (W,) their
        symbol counts, each at least 1. Returns the merged words the same way: (ids (N',), lengths (W,)).

        The reference's rounds run on all words together, each word's round on its own lowest-ranked pair: no pair
        spans two words, a word's minimum is a segmented minimum, and the overlap rule is `_overlaps_dropped`. A word
        leaves when it has no merge left, so a round costs the words still merging. Rounds are as many as the most
        merges any word makes; once one would merge too few pairs to pay for its numpy calls, `_pair_rounds_many`
        finishes the words left from that round on.
        """
        sym = np.asarray(symbols, dtype=np.int64)
        lengths = np.asarray(lengths, dtype=np.int64)
        word = np.repeat(np.arange(len(lengths)), lengths)  # (N,) the word each symbol belongs to
        ranks = np.full(len(sym), _NOT_A_MERGE)  # rank of the pair starting at each symbol, if in the same word
        ranks[:-1] = self._ranks_of(sym[:-1], sym[1:])
        ranks[np.cumsum(lengths) - 1] = _NOT_A_MERGE  # a word's last symbol starts no pair
        first = np.zeros(len(sym), dtype=bool)  # (N,) where a word starts
        first[np.cumsum(lengths)[:-1]] = True
        first[:1] = True
        done_words, done_symbols = [], []
        while len(sym):
            starts = np.flatnonzero(first)  # (w,) first symbol of each word still here
            best = np.minimum.reduceat(ranks, starts)  # (w,) each word's lowest rank
            finished = best == _NOT_A_MERGE  # (w,) words with no merge left
            best[finished] = -1  # no pair has rank -1
            ends = np.append(starts[1:], len(sym))  # (w,)
            per_symbol = np.repeat(best, ends - starts)  # (n,) the lowest rank in each symbol's word
            # The best pair's occurrences in every word (a word's last symbol starts no pair, so a run of
            # consecutive starts is inside one word). Their right symbols go, and finished words leave.
            at = _overlaps_dropped(np.flatnonzero(ranks == per_symbol))
            if len(at) < _MANY_ROUND + len(sym) / _MANY_SCAN:
                # A round would cost more than `_pair_rounds` making its merges: it finishes the words left (as
                # many as this round's merges at most) from the round reached, as the reference goes on.
                active = np.repeat(~finished, ends - starts)  # (n,)
                flat, counts = self._pair_rounds_many(sym[active], ranks[active], (ends - starts)[~finished])
                done_words += [word[~active], np.repeat(word[starts[~finished]], counts)]
                done_symbols += [sym[~active], flat]
                break
            keep = _without(len(sym), at + 1)
            if finished.any():
                gone = per_symbol == -1
                done_words.append(word[gone])
                done_symbols.append(sym[gone])
                keep &= ~gone
            merged, merged_at = self._merged[ranks[at]], np.cumsum(keep)[at] - 1  # (m,) each, after the removal
            sym, ranks, word, first = sym[keep], ranks[keep], word[keep], first[keep]
            sym[merged_at] = merged
            # The pairs on both sides of each merged symbol change; those that end a word are no pair.
            changed = np.concatenate([merged_at[merged_at > 0] - 1, merged_at])
            ranks[changed] = _NOT_A_MERGE
            changed = changed[changed < len(sym) - 1]
            changed = changed[word[changed] == word[changed + 1]]
            ranks[changed] = self._ranks_of(sym[changed], sym[changed + 1])
        words = np.concatenate([*done_words, np.zeros(0, dtype=np.int64)])
        order = np.argsort(words, kind="stable")
        return np.concatenate([*done_symbols, np.zeros(0, dtype=np.int64)])[order], np.bincount(
            words, minlength=len(lengths))

    def _apply_distinct(self, symbols: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """`apply_many`, merging each distinct word once when there are at least _DISTINCT_FROM words: a long
        word's pieces repeat (random CJK or emoji, cut into pieces of one to a few characters, has a few thousand
        distinct pieces in 100,000 characters); fewer repeat too little to pay for finding them.

        A word of one symbol is its own result. Words of 2 to `63 // bits` symbols are told apart by one int64
        packing their symbols, `bits` a symbol (plus one, so that no symbol packs to 0); longer ones are merged as
        they are.
        """
        if len(lengths) < _DISTINCT_FROM:
            return self.apply_many(symbols, lengths)
        n, starts = len(symbols), np.cumsum(lengths) - lengths  # (W,) each word's first symbol
        bits = int(symbols.max(initial=0) + 1).bit_length()
        packed = (lengths > 1) & (lengths <= 63 // bits)  # (W,)
        unpacked = np.flatnonzero((lengths > 1) & ~packed)
        keys = np.zeros(0, dtype=np.int64)
        if packed.any():
            inside = np.repeat(packed, lengths)  # (N,) the packed words' symbols
            position = (np.arange(n) - np.repeat(starts, lengths))[inside]  # within the word
            keys = np.bitwise_or.reduceat((symbols[inside] + 1) << (bits * position),
                                          np.cumsum(lengths[packed]) - lengths[packed])
        distinct, inverse = np.unique(keys, return_inverse=True)  # (U,), (packed words,)
        first = np.empty(len(distinct), dtype=np.int64)
        first[inverse] = np.flatnonzero(packed)  # a word with each key
        merge = np.concatenate([first, unpacked])  # (U + R,) the words to merge
        flat, counts = self.apply_many(_segments(symbols, starts[merge], lengths[merge]), lengths[merge])
        # Each word's ids are a segment of [symbols, flat]: its own symbol, or the ids of the word merged for it.
        at, count = starts.copy(), np.ones_like(lengths)  # (W,) each
        merged_at = n + np.cumsum(counts) - counts  # (U + R,)
        at[packed], count[packed] = merged_at[inverse], counts[inverse]
        at[unpacked], count[unpacked] = merged_at[len(distinct):], counts[len(distinct):]
        return _segments(np.concatenate([symbols, flat]), at, count), count

    def _array_rounds(self, symbols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Reference rounds on arrays, while they are cheaper than `_pair_rounds` would be.

        A round costs a scan of the m symbols left, cheap per symbol but paid even by a round with one merge (see
        _SCAN): rounds go on while they have merged more than they cost. A round that would not pay is made all
        the same if the next lowest rank's occurrences would pay for both: a run's round may merge only its end
        (e.g. "!" + "!</w>") before one that halves it. A word of at least _ARRAY_ROUNDS_FROM symbols also has an
        allowance of _FREE_ROUNDS rounds, and keeps up to that much of what its rounds gained for later ones.
        Returns the symbols left (m,) and the rank of the pair starting at each (m,).
        """
        # The last symbol starts no pair.
        ranks = np.append(self._ranks_of(symbols[:-1], symbols[1:]), _NOT_A_MERGE)
        allowance = _FREE_ROUNDS * (len(symbols) / _SCAN + _ROUND) if len(symbols) >= _ARRAY_ROUNDS_FROM else 0
        balance = allowance  # merges made less cost, in merges, at most the allowance
        while (rank := ranks.min()) != _NOT_A_MERGE:
            at = _overlaps_dropped(np.flatnonzero(ranks == rank))  # where the best pair starts, left to right
            cost = len(symbols) / _SCAN + _ROUND
            balance = min(balance + len(at) - cost, allowance)
            if balance < 0:
                later = ranks[ranks > rank]
                if not len(later) or balance + np.count_nonzero(ranks == later.min()) < cost:
                    break
            merged = self._merged[rank]
            # The right symbol of each merge goes, and with it the pair it started; the pairs on both sides of
            # each merged symbol are ranked again. (New arrays: the caller's are left as they were.)
            keep = _without(len(symbols), at + 1)
            symbols, ranks = symbols[keep], ranks[keep]
            merged_at = at - np.arange(len(at))  # positions of the merged symbols after the deletions
            symbols[merged_at] = merged
            changed = np.concatenate([merged_at[merged_at > 0] - 1, merged_at[merged_at < len(symbols) - 1]])
            ranks[changed] = self._ranks_of(symbols[changed], symbols[changed + 1])
            ranks[-1] = _NOT_A_MERGE  # the last symbol may be a merged one
        return symbols, ranks

    def _ranks_of(self, left: np.ndarray, right: np.ndarray) -> np.ndarray:
        """The rank of each pair (left[i], right[i]), _NOT_A_MERGE if it is not a merge."""
        if len(left) and max(left.max(), right.max()) < self._dense:
            return self._square[left, right]
        keys = left << 16 | right
        if len(keys) >= _HASH_FROM:
            return self._rank_of.get(keys)
        # Fewer keys: a sorted search costs less than the hash table's fixed steps and probe loop.
        at = np.searchsorted(self._keys_to_end, keys)
        return np.where(self._keys_to_end[at] == keys, self._ranks_to_end[at], _NOT_A_MERGE)

    def _cuts(self, symbols: np.ndarray) -> np.ndarray:
        """Positions where a word can be cut into two words of its own: (k,) ascending, in 1..len(symbols) - 1.

        No merge can ever cross a boundary between symbols a and b unless some merge joins a part ending like a
        to one starting like b (`_joinable`): whatever a and b grow into still end and start so. With no merge
        across it, the word's rounds seen on either side are that side's own rounds (a round's pair, if a side
        has it, is the lowest-ranked pair there too), so each side merges as a word of its own.
        """
        last, first = self._last[symbols[:-1]], self._first[symbols[1:]]
        if len(last) and max(last.max(), first.max()) < self._dense:
            return np.flatnonzero(~self._joinable_square[last, first]) + 1
        return np.flatnonzero(self._joinable.get(last << 16 | first) == 0) + 1

    def _pieces(self, symbols: np.ndarray, ranks: np.ndarray) -> Iterator[tuple[list[int], list[int], list[int]]]:
        """A long word cut into pieces of about _PIECE symbols or more, as `_pair_rounds` takes them (symbols, ranks,
        heap), in order.

        The heap then works on one small piece at a time: on a long word, jumping between far positions in
        round order costs a cache miss per step.
        """
        n = len(symbols)
        if n < _ARRAY_ROUNDS_FROM:  # short enough to be one piece
            at = np.flatnonzero(ranks != _NOT_A_MERGE)
            return iter([(symbols.tolist(), ranks.tolist(), (ranks[at] * n + at).tolist())])
        cuts = self._cuts(symbols)
        at = np.searchsorted(cuts, np.arange(_PIECE, n, _PIECE))  # the first cut at or after each multiple
        bounds = np.array([0, *np.unique(cuts[at[at < len(cuts)]]), n])
        pairs = np.flatnonzero(ranks != _NOT_A_MERGE)  # (p,) where the pairs that are merges start
        piece = np.searchsorted(bounds, pairs, side="right") - 1  # (p,) the piece each is in
        entries = (ranks[pairs] * np.diff(bounds)[piece] + pairs - bounds[piece]).tolist()  # heap entries
        firsts = np.searchsorted(pairs, bounds).tolist()  # each piece's first entry
        bounds, listed = bounds.tolist(), symbols.tolist()
        # A piece without an entry is as it is: its ranks are not needed (a long run may have millions).
        return ((listed[a:b], ranks[a:b].tolist() if j > i else [], entries[i:j])
                for (a, b), (i, j) in zip(pairwise(bounds), pairwise(firsts)))

    def _pair_rounds_many(self, symbols: np.ndarray, ranks: np.ndarray,
                          lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """`_pair_rounds` on several words at once, in one heap: the words of `lengths` (W,) symbols one after
        another in `symbols` (N,), `ranks` (N,) the rank of the pair starting at each symbol (_NOT_A_MERGE at each
        word's end). A separator -2, which no merge has, goes between each two words. Returns (ids, lengths (W,))
        as `apply_many` does.
        """
        if not len(lengths):
            return symbols, lengths
        position = np.arange(len(symbols)) + np.repeat(np.arange(len(lengths)), lengths)  # (N,) with separators
        n = len(symbols) + len(lengths) - 1
        joined, joined_ranks = np.full(n, -2), np.full(n, _NOT_A_MERGE)
        joined[position], joined_ranks[position] = symbols, ranks
        at = np.flatnonzero(joined_ranks != _NOT_A_MERGE)
        heap = (joined_ranks[at] * n + at).tolist()
        merged = np.array(self._pair_rounds(joined.tolist(), joined_ranks.tolist(), heap), dtype=np.int64)
        separators = np.flatnonzero(merged == -2)
        return merged[merged >= 0], np.diff(separators, prepend=-1, append=len(merged)) - 1

    def _pair_rounds(self, symbols: list[int], ranks: list[int], heap: list[int]) -> list[int]:
        """The reference's rounds over a linked list of the n symbols: `ranks[i]` is the rank of the pair starting
        at symbol i (n - 1 of them, or n with _NOT_A_MERGE last), `heap` has an entry `rank * n + i` for each pair
        that is a merge.

        `symbols[i]` is the symbol that started as the i-th, or -1 once merged into the one before it; `ranks[i]`
        stays the rank of the pair starting there, so an entry whose pair has changed since it was pushed is told
        by a list read. Other negative symbols (`_pair_rounds_many`'s separators) are in no merge, and stay.
        """
        if not heap:
            return symbols
        n, rank_of, merged_ids = len(symbols), self._rank.get, self._merged_ids
        pop, push = heapq.heappop, heapq.heappush
        # A -1 at position n stands for "no symbol" after the last and, read as symbols[-1], before the first:
        # packed with any id it gives a negative key, never a merge, so neighbours need no bounds checks.
        symbols.append(-1)
        del ranks[n - 1:]
        ranks += (_NOT_A_MERGE, _NOT_A_MERGE)
        after = list(range(1, n + 2))  # position of the next symbol
        before = list(range(-1, n))  # position of the previous symbol
        heap.append(_NOT_A_MERGE)  # after every entry: the heap is never empty
        heapq.heapify(heap)
        waiting = []  # pairs ranked before the round that makes them wait for its end, as in the reference
        while (top := heap[0]) != _NOT_A_MERGE:
            rank = top // n
            first, merged = rank * n, merged_ids[rank]
            end, shifted = first + n, merged << 16
            while heap[0] < end:  # this rank's pairs, left to right
                i = pop(heap) - first
                if ranks[i] != rank:  # stale: the pair changed since it was pushed, e.g. its left "a" merged
                    continue
                j = after[i]
                k = after[i] = after[j]
                before[k] = i
                symbols[i] = merged
                symbols[j], ranks[j] = -1, _NOT_A_MERGE
                # The new pairs on both sides. One ranked after this round's pair waits in the heap (this round
                # stops before it); one ranked before it waits for the round's end.
                h = before[i]
                r = ranks[h] = rank_of(symbols[h] << 16 | merged, _NOT_A_MERGE)
                if r != _NOT_A_MERGE:
                    if r > rank:
                        push(heap, r * n + h)
                    else:
                        waiting.append(r * n + h)
                r = ranks[i] = rank_of(shifted | symbols[k], _NOT_A_MERGE)
                if r != _NOT_A_MERGE:
                    if r > rank:
                        push(heap, r * n + i)
                    else:
                        waiting.append(r * n + i)
            if waiting:
                for entry in waiting:
                    push(heap, entry)
                waiting.clear()
        symbols.pop()
        return [symbol for symbol in symbols if symbol != -1]  # the symbols left, in order
