"""CLIP's byte-level BPE tokenizer (Radford et al., 2021, Sec. 2.4; OpenAI's `clip/simple_tokenizer.py`).

Text is cleaned (ftfy, HTML unescaped twice, whitespace collapsed, lowercased), split into words by a unicode
regex, and each word's UTF-8 bytes are merged by the first 48,894 ranked merges of `bpe_simple_vocab_16e6.txt.gz`
(`bpe.py`: the reference's merge rounds, in time O(n log n) in the word's length instead of quadratic; a new word
under _COMPILED_UP_TO bytes is merged by the `tokenizers` package's compiled BPE given the same merges instead).
The 49,408 ids are: 256 byte symbols, the same 256 marking the end of a word (`</w>`), one id per merge, then
`<|startoftext|>` = 49406 and `<|endoftext|>` = 49407. `tokenize` gives exactly the ids of OpenAI's `clip.tokenize`.

Deliberate differences from the reference:
- `tokenize` raises `ValueError` (not `RuntimeError`) for a text too long for the context, naming the text and
  its length and suggesting `truncate=True`; it also rejects non-string texts and context lengths below 2.
- `decode` drops special tokens and trailing zero padding instead of rendering them as `<|endoftext|>` and `!!!`;
  for all other ids it returns the reference's string (each end of word becomes one space).
- The caches are bounded (emptied when full), not an unbounded dict, so a large corpus cannot grow memory forever.

Speed (bench/RESULTS.md, "Tokenizer"): the ids are those of the reference algorithm, computed with less work.
- Cleaning (`cleaning.py`) runs ftfy only where it could change more than a few characters: plain text
  (printable ASCII without "&", most captions) is only lowercased and split, and text without HTML entities or
  mojibake-like characters gets ftfy's character fixers alone, which provably give ftfy's result.
- Cleaned text is cut at its spaces into chunks, and each chunk's ids are cached. No branch of the split pattern
  matches a space, so the words of a text are the words of its chunks in order, and a cache hit skips the
  split pattern, the byte mapping and BPE at once. A new ASCII chunk is split by an equivalent `re` pattern
  (faster than `regex`), and its trailing digits, each a word of its own, without any pattern.
- `tokenize` fills its (N, context_length) tensor from one flat array instead of row by row, and the batch
  methods pause the cyclic garbage collector while they allocate (only ints, strings and tuples/lists of ints).
- `tokenize` asks for the ids that fit and no more: the rest of a text is not tokenized, and a long word is
  merged only as far as needed. Chunks and words over 256 characters are not cached.
- `encode` of a long text with many new chunks merges their new words all at once (`Merges.apply_many`) into the
  caches before the usual pass, which then finds every chunk cached.
"""

from __future__ import annotations

import codecs
import contextlib
import functools
import gc
import gzip
import importlib.resources
import re
import string
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import accumulate, chain

import numpy as np
import regex
import torch
from tokenizers.models import BPE

from .bpe import Merges
from .cleaning import clean, prepare_cleaning

VOCAB_FILE = "bpe_simple_vocab_16e6.txt.gz"
# OpenAI's count: 49,152 ids less 256 bytes and 2 special tokens; the 256 `</w>` forms come on top (49,408).
NUM_MERGES = 49152 - 256 - 2
SOT = "<|startoftext|>"
EOT = "<|endoftext|>"
END_OF_WORD = "</w>"

# OpenAI's split pattern, its letter and number branches moved first: they are the common matches, and no other
# branch matches where they do (the others start with "<", "'" or a character that is neither), so the words are
# the same (tested against OpenAI's pattern). IGNORECASE matters even though text is lowercased first: it lets the
# contraction branches match case-folding equivalents, e.g. the long s in "it'ſ" splits off as "'ſ" like "'s".
_WORD_PATTERN = regex.compile(
    r"""[\p{L}]+|[\p{N}]|<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[^\s\p{L}\p{N}]+""",
    regex.IGNORECASE,
)
# The same pattern for lowercase ASCII text, where it needs no unicode classes: \p{L} is a-z, \p{N} is 0-9, \s is
# the six characters below, and case folding adds nothing (no uppercase is left). Python's `re` runs it faster.
_ASCII_WORD_PATTERN = re.compile(
    r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[a-z]+|[0-9]|[^\t\n\x0b\x0c\r a-z0-9]+"""
)
# Chunks and words longer than this are not cached: they are seldom repeated, an entry could be any size, and
# `tokenize` needs only their first ids.
_LONG = 256
# Words of fewer UTF-8 bytes than this are merged by `tokenizers`' BPE (compiled): 0.15-0.6 µs per character at
# every length up to here, where `bpe.py`'s Python merge loop takes 0.6-2.4 (emoji, a merge per byte or so). From
# here on `bpe.py` is as fast or faster (its distinct pieces are merged once), and when only the first ids are
# needed (`tokenize`) it merges a long word only as far as needed: words of _CUT_FROM bytes or more go to it then
# (a limit of at least the word's bytes is none: a word has no more ids than bytes).
_COMPILED_UP_TO = 16384
_CUT_FROM = 1024
_WARM_UP = ("a photo of a dog.", "café ÀÉîøüñç Αβγ Жзи ابت עבר ไทย 한국어 日本語 😀👍🏽 !?#", "ÃƒÂ©Ã©",
            "".join(map(chr, range(0x4E00, 0x4E40))) + "😀😂" * 20 + "!?." * 20)
# A text of at least this many new chunks (a chunk of this many new words), encoded in full, has its new words
# merged all at once first.
_BATCH_FROM = 256


def byte_symbols() -> dict[int, str]:
    """A printable unicode character for every byte value, in id order (GPT-2's reversible byte encoding).

    Bytes that are already visible Latin-1 characters stand for themselves and come first; the other 68 bytes
    (controls, space, soft hyphen, ...) are shifted to code points 256.. so no BPE symbol contains whitespace.
    Insertion order fixes ids 0..255: id 0 is "!" (byte 33), not byte 0.
    """
    visible = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    hidden = [b for b in range(256) if b not in visible]
    return {b: chr(b) for b in visible} | {b: chr(256 + n) for n, b in enumerate(hidden)}


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Disable the cyclic garbage collector inside the block, restoring its previous state after it."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class _Memo(dict):
    """A dict that computes a missing value with `compute` and stores it, emptied when it reaches `size` entries.

    Lookups that hit run entirely in C (`dict.__getitem__`), which is what makes the cached paths fast.
    """

    def __init__(self, compute: Callable[[str], tuple[int, ...]], size: int) -> None:
        super().__init__()
        self._compute, self._size = compute, size

    def __missing__(self, key: str) -> tuple[int, ...]:
        if len(self) >= self._size:
            self.clear()
        value = self[key] = self._compute(key)
        return value


class Tokenizer:
    """Byte-level BPE with OpenAI CLIP's vocabulary; ids are identical to `clip.simple_tokenizer.SimpleTokenizer`."""

    def __init__(self, *, cache_size: int = 1 << 16) -> None:
        """Load the merges shipped as package data; up to `cache_size` words and chunks keep their ids."""
        self._byte_to_symbol = byte_symbols()
        symbols = list(self._byte_to_symbol.values())
        # The first line is a header; only the first NUM_MERGES merges were used to train CLIP.
        lines = self._read_vocab().decode("utf-8").split("\n")[1 : NUM_MERGES + 1]
        merges = [tuple(line.split()) for line in lines]
        vocab = symbols + [s + END_OF_WORD for s in symbols] + ["".join(m) for m in merges] + [SOT, EOT]
        self._ids = {token: i for i, token in enumerate(vocab)}
        self._merges = Merges([(self._ids[a], self._ids[b], self._ids[a + b]) for a, b in merges])
        # The same merges in `tokenizers`' BPE, which takes a word as its byte symbols (one character per byte) and
        # marks the last with `</w>` itself; it gives the ids of `Merges.apply` (tested against OpenAI's tokenizer).
        self._compiled_bpe = BPE(vocab=self._ids, merges=merges, end_of_word_suffix=END_OF_WORD,
                                 cache_capacity=0).tokenize
        # Byte value b's symbol at index b: `codecs.charmap_decode` maps a word's bytes to its symbols in one C loop
        # (a tenth of the time of `str.translate`, whose table has characters past U+00FF).
        self._symbol_table = "".join(self._byte_to_symbol[b] for b in range(256))
        self._special = {SOT: self._ids[SOT], EOT: self._ids[EOT]}
        # Id of each byte value's symbol; a word's last byte takes the `</w>` form of its symbol, id + 256.
        self._byte_ids = [self._ids[self._byte_to_symbol[b]] for b in range(256)]
        self._byte_id_array = np.array(self._byte_ids, dtype=np.int64)  # the same, to map a long word at once

        # Every id as raw bytes, the end-of-word marker as a space, so decoding is one join and one UTF-8 decode.
        symbol_to_byte = {s: bytes([b]) for b, s in self._byte_to_symbol.items()}
        self._id_bytes = [
            b"".join(symbol_to_byte[c] for c in token.removesuffix(END_OF_WORD))
            + (b" " if token.endswith(END_OF_WORD) else b"")
            for token in vocab[: -len(self._special)]
        ] + [b""] * len(self._special)

        self._word_ids = _Memo(self._bpe, cache_size)
        self._chunk_ids = _Memo(self._encode_chunk, cache_size)
        self._digit_ids = {digit: self._ids[digit + END_OF_WORD] for digit in string.digits}
        prepare_cleaning()  # its tables are built once, here rather than in the first non-ASCII text's time
        # One text down each path (plain ASCII; letters of many scripts, which ftfy's encoding fix checks; mojibake;
        # CJK, emoji, punctuation) before the first caller's: a path's first run costs it 0.1-0.3 ms more (code and
        # tables out of the CPU's caches), which made a fresh tokenizer's 100-character word 2-4 µs per character.
        for text in _WARM_UP:
            self.encode(text)
        self._word_ids.clear()
        self._chunk_ids.clear()

    @staticmethod
    def _read_vocab() -> bytes:
        return gzip.decompress(importlib.resources.files("clipworks.models").joinpath(VOCAB_FILE).read_bytes())

    @property
    def vocab_size(self) -> int:
        return len(self._id_bytes)

    @property
    def sot_token_id(self) -> int:
        return self._special[SOT]

    @property
    def eot_token_id(self) -> int:
        return self._special[EOT]

    def encode(self, text: str) -> list[int]:
        """Ids of `text` after cleaning, without start/end tokens or any length limit.

        A literal "<|startoftext|>" or "<|endoftext|>" in the text becomes the special id, as in the reference.
        """
        return self.encode_flat((text,))[0]

    def encode_batch(self, texts: Iterable[str]) -> list[list[int]]:
        """`encode` of each text."""
        flat, lengths = self.encode_flat(texts)
        with _gc_paused():  # see encode_flat
            return [flat[end - length : end] for length, end in zip(lengths, accumulate(lengths))]

    def encode_flat(self, texts: Iterable[str], *, limit: int | None = None) -> tuple[list[int], list[int]]:
        """The ids of all texts concatenated, and each text's number of ids: `encode_batch` without a list per text.

        With a `limit`, a text's ids may stop anywhere past its first `limit` (a shorter text has all its ids):
        the rest of the text is not tokenized, and a long word is merged only as far as needed.
        `tokenize` uses this form; it allocates two lists however many texts there are.
        """
        if limit is not None and limit < 0:
            raise ValueError(f"limit must be at least 0, got {limit}")
        most = sys.maxsize if limit is None else limit
        chunk_ids = self._chunk_ids
        cached = chunk_ids.get  # a hit is one dict lookup; `get` skips the subclass's miss dispatch
        encode_chunk = self._encode_chunk
        digit_id = self._digit_ids.__getitem__
        digits = string.digits
        flat: list[int] = []
        lengths: list[int] = []
        # New cache entries and `encode_batch`'s per-text lists are containers the cyclic GC counts: 100k of them
        # trigger a full collection, which in a process holding torch (~400k objects) costs as much as the
        # tokenizing. Tuples and lists of ints cannot form cycles, so the collector is paused meanwhile.
        with _gc_paused():
            for text in texts:
                start = len(flat)
                # `chunks(text)`, inlined: a call per caption is a visible share of its time. The tokenizer
                # parity tests check these ids, so this copy is tested as well as `chunks`.
                if text.isascii() and text.isprintable() and "&" not in text:
                    parts = text.lower().split()
                else:
                    parts = clean(text).split(" ")
                if limit is None and len(parts) >= _BATCH_FROM:
                    self._merge_new_chunks(parts)
                for chunk in parts:
                    ids = cached(chunk)
                    if ids is None:
                        if chunk[-1:].isdigit() and chunk.isascii():
                            # A new chunk ending in ASCII digits ("#1873", "v2") is seldom seen twice, so it is not
                            # cached (it would flush the common words out). Every ASCII digit is a word of its own
                            # (one id), so the digits split off without the pattern, and the rest ("#", "v") is a
                            # chunk that is probably cached.
                            head = chunk.rstrip(digits)
                            if len(head) <= _LONG:
                                if head:
                                    flat += cached(head) or chunk_ids[head]
                                flat += map(digit_id, chunk[len(head):])
                                continue
                        # Past the limit, the rest of the text is not tokenized (cache hits and digits cost less
                        # than this test).
                        if len(flat) - start >= most:
                            break
                        if len(chunk) > _LONG:
                            # Seldom seen twice, and maybe only its first ids count: not cached, and cut short.
                            ids = encode_chunk(chunk, most - (len(flat) - start))
                        elif chunk[-1:].isdigit():  # not cached either, as above
                            ids = encode_chunk(chunk)
                        else:
                            ids = chunk_ids[chunk]
                    flat += ids
                lengths.append(len(flat) - start)
        return flat, lengths

    def _merge_new_chunks(self, parts: list[str]) -> None:
        """Fill the caches with the ids of the new chunks among `parts`, their new words merged together
        (`_merge_new_words`). Only chunks that `encode_flat` would cache: up to _LONG characters, not ending in a
        digit; at most half a cache of them (a cache that would overflow is emptied first, as `_Memo` does).
        """
        chunk_ids = self._chunk_ids
        new = [c for c in dict.fromkeys(parts) if c not in chunk_ids and 0 < len(c) <= _LONG and not c[-1].isdigit()]
        if len(new) < _BATCH_FROM:
            return
        new = new[: chunk_ids._size // 2]
        split = [(_ASCII_WORD_PATTERN if c.isascii() else _WORD_PATTERN).findall(c) for c in new]
        self._merge_new_words(chain.from_iterable(split))
        if len(chunk_ids) + len(new) > chunk_ids._size:
            chunk_ids.clear()
        word_ids = self._word_ids.__getitem__
        for chunk, words in zip(new, split):
            # A chunk of one word (most are) shares its tuple.
            ids = word_ids(words[0]) if len(words) == 1 else tuple(chain.from_iterable(map(word_ids, words)))
            chunk_ids[chunk] = ids

    def _merge_new_words(self, words: Iterable[str]) -> None:
        """Put the ids of the new words among `words` (up to _LONG characters; at most half a cache of them) in the
        word cache, merged all at once by `Merges.apply_many` (numpy rounds) instead of one `_bpe` call each."""
        word_ids = self._word_ids
        new = [w for w in dict.fromkeys(words) if w not in word_ids and len(w) <= _LONG and w not in self._special]
        if len(new) < _BATCH_FROM:
            return
        new = new[: word_ids._size // 2]
        encoded = [w.encode("utf-8") for w in new]
        lengths = np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded))  # (W,)
        symbols = self._byte_id_array[np.frombuffer(b"".join(encoded), dtype=np.uint8)]  # (N,)
        symbols[np.cumsum(lengths) - 1] += len(self._byte_ids)  # each word's last byte ends the word
        flat, counts = self._merges.apply_many(symbols, lengths)
        flat, counts = flat.tolist(), counts.tolist()
        if len(word_ids) + len(new) > word_ids._size:
            word_ids.clear()
        for word, end, count in zip(new, accumulate(counts), counts):
            word_ids[word] = tuple(flat[end - count:end])

    def _encode_chunk(self, chunk: str, limit: int = sys.maxsize) -> tuple[int, ...]:
        """Ids of one space-free piece of cleaned (so lowercase) text: its words' ids in order, or at least the
        first `limit` of them."""
        word_ids = self._word_ids
        ids: list[int] = []
        pattern = _ASCII_WORD_PATTERN if chunk.isascii() else _WORD_PATTERN
        # A chunk of at most `limit` characters has at most `limit` words, split at once; a longer one is split
        # word by word, until there are enough ids.
        if len(chunk) <= limit:
            words = pattern.findall(chunk)
            if len(words) >= _BATCH_FROM:
                self._merge_new_words(words)
        else:
            words = (match[0] for match in pattern.finditer(chunk))
        for word in words:
            # A long word is not cached, like a long chunk.
            ids += word_ids[word] if len(word) <= _LONG else self._bpe(word, limit - len(ids))
            if len(ids) >= limit:
                break
        return tuple(ids)

    def _bpe(self, word: str, limit: int | None = None) -> tuple[int, ...]:
        """Apply the ranked merges to one word's bytes; the last symbol carries the end-of-word marker. With a
        `limit`, the ids may stop after the first `limit` (see `Merges.apply`).

        The words "<|startoftext|>" and "<|endoftext|>" are the special ids instead, as in the reference.
        """
        if word in self._special:
            return (self._special[word],)
        data = word.encode("utf-8")
        if len(data) < _COMPILED_UP_TO and (len(data) < _CUT_FROM or limit is None or limit >= len(data)):
            symbols = codecs.charmap_decode(data, "strict", self._symbol_table)[0]
            return tuple([token.id for token in self._compiled_bpe(symbols)])
        symbols = self._byte_id_array[np.frombuffer(data, dtype=np.uint8)]
        symbols[-1] += len(self._byte_ids)
        return tuple(self._merges.apply(symbols, limit=limit))

    def decode(self, ids: Iterable[int] | torch.Tensor) -> str:
        """Text of `ids`: each end of word becomes a space, so "a photo of a cat." decodes to "a photo of a cat . ".

        Special tokens are dropped wherever they appear, and trailing zeros are dropped as padding; a real
        encoding never ends in id 0 ("!" without end of word), so a row of `tokenize` decodes to its text.
        Byte sequences that are not valid UTF-8 (a cut in a multi-byte character) decode to U+FFFD.
        """
        if isinstance(ids, torch.Tensor):
            if ids.dim() != 1:
                raise ValueError(f"decode takes one sequence of ids, got a tensor of shape {tuple(ids.shape)}; "
                                 "decode the rows one at a time")
            ids = ids.tolist()
        ids = list(ids)
        while ids and ids[-1] == 0:
            ids.pop()
        for i in ids:
            if not 0 <= i < self.vocab_size:
                raise ValueError(f"token id {i} is outside the vocabulary [0, {self.vocab_size})")
        return b"".join(self._id_bytes[i] for i in ids).decode("utf-8", errors="replace")


@functools.cache
def get_tokenizer() -> Tokenizer:
    """The shared default tokenizer, built on first use (loading the merges takes a fraction of a second)."""
    return Tokenizer()


def tokenize(texts: str | Sequence[str], context_length: int = 77, *, truncate: bool = False) -> torch.LongTensor:
    """Ids of each text framed by start and end tokens and zero-padded: a LongTensor of shape (N, context_length).

    A text longer than `context_length` tokens raises ValueError unless `truncate`, which keeps the first
    `context_length` ids and overwrites the last with <|endoftext|> so the model still finds an end token.
    """
    if context_length < 2:
        raise ValueError(f"context_length must be at least 2 (start and end tokens), got {context_length}")
    texts = [texts] if isinstance(texts, str) else list(texts)
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"tokenize takes a string or a sequence of strings; texts[{i}] is "
                            f"{type(text).__name__}: {text!r:.60}")

    tokenizer = get_tokenizer()
    room = context_length - 2  # ids that fit between the start and end tokens
    # Ids past the room are not used (room + 1 of them tell a text that is too long), so most are never made.
    flat, counts = tokenizer.encode_flat(texts, limit=room + 1)
    lengths = np.array(counts, dtype=np.int64)  # (N,) ids per text, without start and end tokens
    too_long = np.flatnonzero(lengths > room)
    if len(too_long) and not truncate:
        i = int(too_long[0])
        preview = texts[i] if len(texts[i]) <= 50 else texts[i][:50] + "..."
        raise ValueError(
            f"texts[{i}] ({preview!r}) is {len(tokenizer.encode(texts[i])) + 2} tokens long including start and "
            f"end tokens, more than context_length={context_length}; pass truncate=True to cut it to "
            f"{context_length} tokens ending in <|endoftext|>, or shorten the text"
        )
    ids = np.array(flat, dtype=np.int64)
    kept = np.minimum(lengths, room)  # (N,) truncation keeps each text's first ids
    if len(too_long):
        # Drop the cut ids: text i's kept ids start at starts[i] in `ids` and at kept_starts[i] once packed.
        starts, kept_starts = np.cumsum(lengths) - lengths, np.cumsum(kept) - kept  # (N,), (N,)
        ids = ids[np.arange(int(kept.sum())) + np.repeat(starts - kept_starts, kept)]

    # Row i is: start token, its kept ids, end token, zeros. Boolean indexing fills row 0's positions
    # 1..kept[0] first, then row 1's, ...: the order of `ids`.
    position = np.arange(context_length)  # (context_length,)
    result = np.zeros((len(texts), context_length), dtype=np.int64)
    result[:, 0] = tokenizer.sot_token_id
    result[(position >= 1) & (position <= kept[:, None])] = ids
    result[np.arange(len(texts)), kept + 1] = tokenizer.eot_token_id
    return torch.from_numpy(result)


def decode(ids: Iterable[int] | torch.Tensor) -> str:
    """`Tokenizer.decode` with the shared default tokenizer."""
    return get_tokenizer().decode(ids)
