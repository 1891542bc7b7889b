"""Byte-pair merging of one word as OpenAI's CLIP tokenizer does it (`bpe()` in `clip/simple_tokenizer.py`;
Sennrich et al., 2016), with O(n log n) work for a word of n symbols instead of the reference's O(n^2).

The reference repeats a round until no adjacent pair of symbols is a merge: find the pair with the lowest rank,
then merge its occurrences scanning left to right, skipping one that overlaps an occurrence just merged ("a a a"
with the merge (a, a) becomes "aa a"). Each round rescans the whole word, and a long word of varied text takes
about as many rounds as it has symbols. `Merges.apply` makes the same rounds with work per merge, not per round:
- `_pair_rounds`: symbols form a linked list indexed by their starting position, so a merge is O(1),
  and each adjacent pair that is a merge is an entry `rank * n + position` of a heap. A round pops the entries of
  the lowest rank in position order, the reference's left-to-right scan. An entry whose pair has changed since
  it was pushed is skipped, which is also the overlap rule: in "a a a" the second (a, a) finds its left "a"
  merged into "aa". Pairs a round creates are pushed when it ends, as the reference ranks pairs only between
  rounds: a round cannot create a pair of its own rank ((x, ab) or (ab, y) equal to (a, b) would need ab = a or
  ab = b), but it creates one of lower rank if "ab" takes part in a merge ranked before (a, b).
- `_array_rounds`: a long word first runs the reference's rounds on numpy arrays, while they merge enough of it
  per scan: runs such as "aaaa..." or "😀😀😀..." take a few rounds that each merge much of the word, which would
  cost the heap a Python step per merge.
- `_cuts`: a word can be cut where no merge could ever join its two sides, into pieces that merge as words of
  their own. The heap then works on one piece at a time (far jumps in a long word cost cache misses), and when
  only the first ids are needed (`tokenize` keeps 77), the rest of the word is not merged at all.
- `apply_many`: many short words (a long word's short pieces, a long text's new words) merge together in numpy
  rounds, each word's round on its own lowest-ranked pair: a Python step per round instead of per merge. Random
  CJK or emoji cut into pieces of one to a few characters, which this merges all at once.
- `_apply_distinct`: a long word's short pieces repeat, so each distinct piece is merged once (found by sorting
  keys that pack a piece's symbols) and its ids copied wherever it occurs.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator, Sequence
from itertools import pairwise

import numpy as np

_NOT_A_MERGE = np.iinfo(np.int64).max  # the rank of a pair that is not a merge, after every real rank
_ARRAY_ROUNDS_FROM = 1024  # words of at least this many symbols start with rounds on arrays
# Rounds on arrays go on while their cost, counted in merges' worth of `_pair_rounds` work, stays below the merges
# they made plus an allowance of _FREE_ROUNDS rounds. Scanning _SCAN symbols costs about one such merge, and the
# numpy calls of a round about _ROUND merges (measured ratios, rounded toward fewer array rounds).
_SCAN = 1024
_ROUND = 24
_FREE_ROUNDS = 2
_PIECE = 256  # a long word's pair rounds run piece by piece, a piece at least this long where a cut is possible
_SHORT = 64  # a long word's pieces up to this many symbols are merged together, by `apply_many`


def _segments(values: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """values[starts[0]:starts[0] + lengths[0]], values[starts[1]:...], ... one after another, as one array."""
    ends = np.cumsum(lengths)
    return values[np.repeat(starts - (ends - lengths), lengths) + np.arange(ends[-1] if len(ends) else 0)]


def _overlaps_dropped(at: np.ndarray) -> np.ndarray:
    """The starts a round merges, from the ascending starts `at` of its pair: consecutive starts only occur for a
    pair (a, a), in a run of a's, and the reference's scan merges the run's 1st, 3rd, 5th, ... occurrence, because
    each merge consumes the next occurrence's left "a"."""
    if not len(at) or np.diff(at).min(initial=2) > 1:
        return at
    k = np.arange(len(at))
    run_start = np.maximum.accumulate(np.where(np.diff(at, prepend=-2) != 1, k, 0))
    return at[(k - run_start) % 2 == 0]


def _without(n: int, positions: np.ndarray) -> np.ndarray:
    """A mask of n positions, False at `positions`: one mask to delete the same positions from several arrays."""
    keep = np.ones(n, dtype=bool)
    keep[positions] = False
    return keep


class PairTable:
    """Int keys (packed pairs, below 2**32) -> int values, looked up many at once: open addressing with linear
    probing in numpy arrays, at most a quarter full, so a lookup costs a gather or two where a sorted search over
    the merges' ~49k keys costs ~16 dependent steps."""

    _GOLDEN = np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing: the top bits of key * 2**64/phi

    def __init__(self, keys: np.ndarray, values: np.ndarray, missing: int) -> None:
        bits = max(4, int(np.ceil(np.log2(4 * max(len(keys), 1)))))
        self._shift, self._mask, self._missing = np.uint64(64 - bits), (1 << bits) - 1, missing
        self._keys = np.full(1 << bits, -1, dtype=np.int64)  # -1: an empty slot (keys are non-negative)
        self._values = np.full(1 << bits, missing, dtype=np.int64)
        slot, pending = self._slot(keys), np.arange(len(keys))
        while len(pending):  # place each key at its first free slot, ties to the earlier key
            free = self._keys[slot[pending]] == -1
            slots, first = np.unique(slot[pending][free], return_index=True)
            placed = pending[free][first]
            self._keys[slots], self._values[slots] = keys[placed], values[placed]
            pending = np.setdiff1d(pending, placed, assume_unique=True)
            slot[pending] = (slot[pending] + 1) & self._mask

    def _slot(self, keys: np.ndarray) -> np.ndarray:
        keys = np.asarray(keys, dtype=np.int64).view(np.uint64)  # the same bits: keys are non-negative
        return ((keys * self._GOLDEN) >> self._shift).view(np.int64)

    def get(self, keys: np.ndarray) -> np.ndarray:
        """The value of each key, `missing` for a key not in the table."""
        keys = np.asarray(keys, dtype=np.int64)
        slot = self._slot(keys)
        found = self._keys[slot]  # most keys end here: found, or an empty slot
        out = np.where(found == keys, self._values[slot], self._missing)
        todo = np.flatnonzero((found != keys) & (found != -1))  # another key here: the probe sequence goes on
        while len(todo):
            slot[todo] = (slot[todo] + 1) & self._mask
            found = self._keys[slot[todo]]
            hit = found == keys[todo]
            out[todo[hit]] = self._values[slot[todo[hit]]]
            todo = todo[~hit & (found != -1)]
        return out


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
        # left << 16 | right -> rank << 16 | merged: one dict lookup per pair, on ints. dict() keeps the later
        # rank of a pair listed twice.
        self._table = dict(zip((left << 16 | right).tolist(), (np.arange(len(table)) << 16 | merged).tolist()))
        # The same table as sorted arrays, for looking up every pair of a long word at once.
        keys = np.array(list(self._table), dtype=np.int64)
        order = np.argsort(keys)
        self._keys, self._ranks = keys[order], np.array(list(self._table.values()), dtype=np.int64)[order] >> 16
        self._merged = merged.copy()  # (M,) the merged id of each rank
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
        if len(symbols) < _ARRAY_ROUNDS_FROM:
            symbols = symbols.tolist() if isinstance(symbols, np.ndarray) else list(symbols)
            n, heap, table = len(symbols), [], self._table
            for i in range(n - 1):
                value = table.get(symbols[i] << 16 | symbols[i + 1])
                if value is not None:
                    heap.append((value >> 16) * n + i)
            return self._pair_rounds(symbols, heap)
        symbols = np.asarray(symbols, dtype=np.int64)
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
            merged += self._merge_piece(symbols[bounds[piece]:bounds[piece + 1]])
            if limit is not None and len(merged) >= limit:
                return merged
        return merged + flat[ends[taken]:]

    def _merge_piece(self, symbols: np.ndarray) -> list[int]:
        """The merged ids of one piece of a word that has no cut: array rounds first if it is long enough to gain."""
        if len(symbols) < _ARRAY_ROUNDS_FROM:
            return self.apply(symbols)
        merged: list[int] = []
        for part, heap in self._pieces(*self._array_rounds(symbols)):
            merged += self._pair_rounds(part, heap)
        return merged

    def apply_many(self, symbols: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """`apply` to many words at once: `symbols` (N,) holds the words one after another, `lengths` (W,) their
        symbol counts, each at least 1. Returns the merged words the same way: (ids (N',), lengths (W,)).

        The reference's rounds run on all words together, each word's round on its own lowest-ranked pair: no pair
        spans two words, a word's minimum is a segmented minimum, and the overlap rule is `_overlaps_dropped`. A word
        leaves when it has no merge left, so a round costs the words still merging. Rounds are as many as the most
        merges any word makes: meant for short words.
        """
        sym = np.asarray(symbols, dtype=np.int64)
        lengths = np.asarray(lengths, dtype=np.int64)
        word = np.repeat(np.arange(len(lengths)), lengths)  # (N,) the word each symbol belongs to
        ranks = np.full(len(sym), _NOT_A_MERGE)  # rank of the pair starting at each symbol, if in the same word
        ranks[:-1] = self._ranks_of(sym[:-1], sym[1:])
        ranks[np.cumsum(lengths) - 1] = _NOT_A_MERGE  # a word's last symbol starts no pair
        done_words, done_symbols = [], []
        while len(sym):
            starts = np.flatnonzero(np.diff(word, prepend=-1))  # (w,) first symbol of each word still here
            best = np.minimum.reduceat(ranks, starts)  # (w,) each word's lowest rank
            finished = best == _NOT_A_MERGE  # (w,) words with no merge left
            # (n,) the lowest rank in each symbol's word, -1 in a finished word (no pair has it)
            per_symbol = np.repeat(np.where(finished, -1, best), np.diff(starts, append=len(sym)))
            # The best pair's occurrences in every word (a word's last symbol starts no pair, so a run of
            # consecutive starts is inside one word). Their right symbols go, and finished words leave.
            at = _overlaps_dropped(np.flatnonzero(ranks == per_symbol))
            keep = _without(len(sym), at + 1)
            if finished.any():
                gone = per_symbol == -1
                done_words.append(word[gone])
                done_symbols.append(sym[gone])
                keep &= ~gone
            merged, merged_at = self._merged[ranks[at]], np.cumsum(keep)[at] - 1  # (m,) each, after the removal
            sym, ranks, word = sym[keep], ranks[keep], word[keep]
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
        """`apply_many`, merging each distinct word once: a long word's pieces repeat (random CJK or emoji, cut into
        pieces of one to a few characters, has a few thousand distinct pieces in 100,000 characters).

        A word of one symbol is its own result. Words of 2 to `63 // bits` symbols are told apart by one int64
        packing their symbols, `bits` a symbol (plus one, so that no symbol packs to 0); longer ones are merged as
        they are.
        """
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

        A round costs a scan of the m symbols left, cheap per symbol but paid even by a round with one merge:
        rounds stop when their cost passes what they saved (see _SCAN), after an allowance of a few rounds, as a
        run's first round may merge only its end (e.g. "!" + "!</w>"). Returns the symbols left (m,) and the rank
        of the pair starting at each (m,).
        """
        # The last symbol starts no pair.
        ranks = np.append(self._ranks_of(symbols[:-1], symbols[1:]), _NOT_A_MERGE)
        cost, merges = -_FREE_ROUNDS * (len(symbols) / _SCAN + _ROUND), 0
        while cost <= merges:
            rank = ranks.min()
            if rank == _NOT_A_MERGE:
                break
            at = _overlaps_dropped(np.flatnonzero(ranks == rank))  # where the best pair starts, left to right
            merged = self._table[int(symbols[at[0]]) << 16 | int(symbols[at[0] + 1])] & 0xFFFF
            cost, merges = cost + len(symbols) / _SCAN + _ROUND, merges + len(at)
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
        return self._rank_of.get(left << 16 | right)

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

    def _pieces(self, symbols: np.ndarray, ranks: np.ndarray) -> Iterator[tuple[list[int], list[int]]]:
        """A long word cut into pieces of about _PIECE symbols or more, as `_pair_rounds` takes them, in order.

        The heap then works on one small piece at a time: on a long word, jumping between far positions in
        round order costs a cache miss per step.
        """
        n, cuts = len(symbols), self._cuts(symbols)
        at = np.searchsorted(cuts, np.arange(_PIECE, n, _PIECE))  # the first cut at or after each multiple
        bounds = [0, *np.unique(cuts[at[at < len(cuts)]]).tolist(), n]
        starts = np.flatnonzero(ranks != _NOT_A_MERGE)  # (p,) where the pairs that are merges start
        firsts = np.searchsorted(starts, bounds).tolist()  # each piece's first entry in `starts`
        symbols, pair_ranks, starts = symbols.tolist(), ranks[starts].tolist(), starts.tolist()
        for (a, b), (i, j) in zip(pairwise(bounds), pairwise(firsts)):
            yield symbols[a:b], [rank * (b - a) + start - a for start, rank in zip(starts[i:j], pair_ranks[i:j])]

    def _pair_rounds(self, symbols: list[int], heap: list[int]) -> list[int]:
        """The reference's rounds over a linked list of the n symbols, from a heap of entries `rank * n + start`
        for the pairs that are merges.

        `symbols[i]` is the symbol that started as the i-th, or -1 once merged into the one before it.
        """
        if not heap:
            return symbols
        n, table = len(symbols), self._table.get
        # A -1 at position n stands for "no symbol" after the last and, read as symbols[-1], before the first:
        # packed with any id it gives a negative key, never a merge, so neighbours need no bounds checks.
        symbols.append(-1)
        after = list(range(1, n + 2))  # position of the next symbol
        before = list(range(-1, n))  # position of the previous symbol
        heapq.heapify(heap)
        while heap:
            rank = heap[0] // n
            created = []  # pairs this round makes wait for later rounds, as in the reference
            while heap and heap[0] // n == rank:  # this rank's pairs, left to right
                i = heapq.heappop(heap) - rank * n
                j = after[i]
                value = table(symbols[i] << 16 | symbols[j], -1)
                if value >> 16 != rank:  # stale: the pair changed since it was pushed, e.g. its left "a" merged
                    continue
                merged = value & 0xFFFF
                symbols[i], symbols[j] = merged, -1
                k = after[i] = after[j]
                before[k] = i
                h = before[i]
                value = table(symbols[h] << 16 | merged)
                if value is not None:
                    created.append((value >> 16) * n + h)
                value = table(merged << 16 | symbols[k])
                if value is not None:
                    created.append((value >> 16) * n + i)
            for entry in created:
                heapq.heappush(heap, entry)
        symbols.pop()
        return [symbol for symbol in symbols if symbol >= 0]  # the symbols left, in order
