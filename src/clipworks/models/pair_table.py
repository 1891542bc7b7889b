"""A hash table in numpy arrays for looking up many int keys at once: `Merges` (bpe.py) finds the rank of every
adjacent pair of a long word, and whether a merge can ever join two symbols, with one call each.
"""

from __future__ import annotations

import numpy as np


class PairTable:
    """Int keys (packed pairs, below 2**32) -> int values, looked up many at once: open addressing with linear
    probing in numpy arrays, at most a quarter full, so a lookup costs a gather or two where a sorted search over
    the merges' ~49k keys costs ~16 dependent steps. (Its fixed steps and probe loop cost more than a sorted search
    for fewer than a few thousand keys: see `Merges._ranks_of`.)"""

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
