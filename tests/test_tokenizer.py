"""Tests for clipworks.models.tokenizer: exact id parity with OpenAI's `clip/simple_tokenizer.py` and `clip.tokenize`.

The reference package `clip` does not import here (it needs pkg_resources and torchvision), so its tokenizer
module, which needs only ftfy and regex, is loaded by file path and `clip.tokenize` is restated below.
The fast paths (plain text skipping ftfy, ids cached per chunk, the ASCII split pattern, the batch API) are each
checked against the full computation and the reference, on seeded random text. One test times anything: a ratio
with a wide margin, telling linear merging of a long word from quadratic.
"""

from __future__ import annotations

import functools
import gc
import html
import importlib.resources
import importlib.util
import random
import string
import sys
import sysconfig
import time
from pathlib import Path
from types import ModuleType

import ftfy
import pytest
import torch

from clipworks.models import bpe
from clipworks.models import tokenizer as tokenizer_module
from clipworks.models.cleaning import chunks, clean
from clipworks.models.tokenizer import (
    _ASCII_WORD_PATTERN,
    _WORD_PATTERN,
    VOCAB_FILE,
    Tokenizer,
    decode,
    get_tokenizer,
    tokenize,
)

SOT, EOT = 49406, 49407
REFERENCE_PATH = Path(sysconfig.get_paths()["purelib"]) / "clip" / "simple_tokenizer.py"


# ---- reference --------------------------------------------------------------------------------------------------

@pytest.fixture(params=["compiled", "python"])
def merger(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each word merged by `tokenizers`' compiled BPE where the tokenizer uses it (words under _COMPILED_UP_TO
    bytes), or every word by `bpe.Merges`, which still merges the longest words, a long word's first ids for
    `tokenize` and a long text's new words: both give the reference's ids."""
    if request.param == "python":
        monkeypatch.setattr(tokenizer_module, "_COMPILED_UP_TO", 0)
    return request.param


@pytest.fixture(scope="module")
def reference() -> object:
    """OpenAI's SimpleTokenizer, reading the vocab file bundled with the reference, not ours."""
    if not REFERENCE_PATH.exists():
        pytest.skip(f"reference tokenizer not installed at {REFERENCE_PATH} (`make test` installs clip-anytorch)")
    spec = importlib.util.spec_from_file_location("reference_simple_tokenizer", REFERENCE_PATH)
    module: ModuleType = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    tokenizer = module.SimpleTokenizer()
    # Several tests ask for the same texts' ids (the corpus at five context lengths, its subsets): each text is
    # encoded by the reference once per module, and every call gets a fresh list of those ids.
    encode = functools.lru_cache(maxsize=None)(lambda text: tuple(module.SimpleTokenizer.encode(tokenizer, text)))
    tokenizer.encode = lambda text: list(encode(text))
    return tokenizer


def reference_tokenize(
    ref: object, texts: list[str], context_length: int = 77, *, truncate: bool = False
) -> torch.Tensor:
    """`clip.tokenize` from OpenAI's clip.py, restated: SOT + encode + EOT, zero-padded, EOT last when truncated."""
    sot, eot = ref.encoder["<|startoftext|>"], ref.encoder["<|endoftext|>"]
    result = torch.zeros(len(texts), context_length, dtype=torch.long)
    for i, text in enumerate(texts):
        tokens = [sot] + ref.encode(text) + [eot]
        if len(tokens) > context_length:
            if not truncate:
                raise RuntimeError(f"Input {text} is too long for context length {context_length}")
            tokens = tokens[:context_length]
            tokens[-1] = eot
        result[i, : len(tokens)] = torch.tensor(tokens)
    return result


# ---- a deterministic corpus of awkward text ---------------------------------------------------------------------

WORDS = (
    "a photo of the cat dog bird car tree house person people man woman child street city beach sunset "
    "mountain river snow red blue green black white small large old new two three running sitting on in at "
    "with and next to under over playing holding wearing looking standing riding eating CLIP ViT ResNet "
    "tokenizer contrastive zero-shot ImageNet don't it's we're they've I'm you'll she'd O'Neill rock'n'roll"
).split()
PUNCTUATION = list("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~") + ["...", "?!", "--", "!!!", ":)", "¿", "¡", "«»", "—", "…"]
ACCENTED = ["é", "ñ", "ü", "café", "niño", "über", "façade", "Ærø", "Straße", "naïve", "e\u0301", "n\u0303", "İstanbul"]
SCRIPTS = [
    "猫の写真", "一只猫", "고양이 사진", "中文分词测试",  # CJK
    "صورة قطة", "مرحبا بالعالم",  # Arabic
    "фото кошки", "Привет, мир", "ЁЖИК",  # Cyrillic
    "φωτογραφία", "תמונה של חתול", "बिल्ली की तस्वीर", "รูปแมว", "ქართული",
]
EMOJI = [
    "😀", "🐱", "👍🏽", "❤️", "👨\u200d👩\u200d👧\u200d👦", "🏳️\u200d🌈", "👩🏾\u200d💻",  # skin tones, ZWJ sequences
    "🇺🇸", "🇯🇵", "🇫🇷🇩🇪", "🏴\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f",  # flags, tag sequence
    "☕", "✨", "1️⃣", "#️⃣",
]
ENTITIES = ["&amp;", "&lt;", "&gt;", "&#39;", "&quot;", "&nbsp;", "&amp;amp;", "&amp;lt;b&amp;gt;", "&#x27;",
            "&eacute;", "&#8217;", "&copy", "&notanentity;", "&#0;", "&#xD800;"]
WHITESPACE = [" ", "  ", "\t", "\n", "\r\n", "\u00a0", "\u3000", "\u200b", "\u2028", "\u2029", "\x0b", "\x0c",
              "\x1c", "\x85", "\u1680", "\u2009", "\ufeff", "\u200d"]
# Strings that exercise the split pattern's special branches: literal special tokens, contractions (also
# their case-folding equivalents such as the long s), and the end-of-word marker appearing in the text.
TRICKY = ["<|startoftext|>", "<|endoftext|>", "<|EndOfText|>", "<|endoftext", "</w>", "'s", "'S", "'ll", "'ſ",
          "'ve'", "''", "K", "ﬁ", "ǅ", "\ud83d\ude00", "\ud800", "\x00", "\x7f", "\ufffd"]


def mojibake(rng: random.Random) -> str:
    """UTF-8 text misread as Windows-1252 or Latin-1, the kind of damage ftfy.fix_text undoes."""
    text = rng.choice(ACCENTED + SCRIPTS + EMOJI + ["“quoted”", "it’s", "€5"])
    return text.encode("utf-8").decode(rng.choice(["windows-1252", "latin-1"]), errors="replace")


def random_piece(rng: random.Random) -> str:
    kind = rng.randrange(12)
    if kind == 0:
        return "".join(rng.choices("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ", k=rng.randint(1, 15)))
    if kind == 1:
        return rng.choice(PUNCTUATION) * rng.randint(1, 3)
    if kind == 2:
        return rng.choice([str(rng.randint(0, 10**rng.randint(1, 9))), f"{rng.uniform(-1e3, 1e3):.3f}",
                           f"{rng.randint(1, 999)},{rng.randint(0, 999):03d}", "٣٤", "²", "½", "Ⅻ"])
    if kind == 3:
        return rng.choice(ACCENTED)
    if kind == 4:
        return rng.choice(SCRIPTS)
    if kind == 5:
        return "".join(rng.choices(EMOJI, k=rng.randint(1, 3)))
    if kind == 6:
        return rng.choice(ENTITIES)
    if kind == 7:
        return mojibake(rng)
    if kind == 8:
        return rng.choice(TRICKY)
    if kind == 9:
        # Any code point but surrogates (which cannot be UTF-8 encoded): controls, combining marks, unassigned.
        return "".join(chr(rng.choice([rng.randrange(0xD800), rng.randrange(0xE000, 0x30000)]))
                       for _ in range(rng.randint(1, 4)))
    return rng.choice(WORDS).upper() if kind == 10 else rng.choice(WORDS)


def random_text(rng: random.Random, max_pieces: int = 12) -> str:
    text = rng.choice(["", "", rng.choice(WHITESPACE)])
    for _ in range(rng.randint(1, max_pieces)):
        text += random_piece(rng) + rng.choice([" "] * 6 + [""] + WHITESPACE)
    return text


def file_lines(limit: int = 3000) -> list[str]:
    """Real-world lines from Python's own standard library, spread evenly over its files (none if unreadable)."""
    lines: list[str] = []
    for path in sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py")):
        try:
            lines += [line for line in path.read_text(encoding="utf-8", errors="replace").splitlines() if line]
        except OSError:
            continue
    return lines[:: max(1, len(lines) // limit)][:limit]


@pytest.fixture(scope="module")
def corpus() -> list[str]:
    rng = random.Random(20210226)  # CLIP's arXiv date
    texts = ["", " ", "\t\n", "a photo of a cat.", "A Photo Of A CAT!!", *WHITESPACE, *TRICKY, *ENTITIES, *EMOJI]
    texts += [random_text(rng) for _ in range(10_000)]
    # Long texts: thousands of characters, far past 77 tokens, so truncation is exercised on every one.
    texts += [" ".join(random_text(rng) for _ in range(rng.randint(50, 150))) for _ in range(40)]
    texts += file_lines()
    return texts


# ---- parity with the reference ----------------------------------------------------------------------------------

def test_corpus_is_large_and_varied(corpus: list[str]) -> None:
    assert len(corpus) - len(file_lines()) >= 10_000  # enough even on a machine with no readable files
    assert sum(len(t) > 2000 for t in corpus) >= 30
    assert any("\u200d" in t for t in corpus) and any("Ã" in t for t in corpus) and any("&amp;" in t for t in corpus)


def test_tokenize_matches_reference(reference: object, corpus: list[str]) -> None:
    ours = tokenize(corpus, truncate=True)
    theirs = reference_tokenize(reference, corpus, truncate=True)
    assert ours.shape == (len(corpus), 77) and ours.dtype == torch.long
    mismatched = [text for text, a, b in zip(corpus, ours, theirs) if not torch.equal(a, b)]
    assert not mismatched, f"{len(mismatched)} texts differ from clip.tokenize, e.g. {mismatched[:3]!r}"


def test_encode_matches_reference_without_context_limit(reference: object, corpus: list[str], merger: str) -> None:
    tokenizer = Tokenizer()
    subset = corpus[::4] + [text for text in corpus if len(text) > 2000]
    mismatched = [text for text in subset if tokenizer.encode(text) != reference.encode(text)]
    assert not mismatched, f"{len(mismatched)} texts encode differently, e.g. {mismatched[:3]!r}"


def test_decode_matches_reference_without_special_tokens(reference: object, corpus: list[str]) -> None:
    tokenizer = get_tokenizer()
    checked = 0
    for text in corpus[::4]:
        ids = reference.encode(text)
        if SOT in ids or EOT in ids:  # the reference spells special tokens out; we drop them (tested below)
            continue
        assert tokenizer.decode(ids) == reference.decode(ids), text
        checked += 1
    assert checked > 2000


def test_too_long_without_truncate_agrees_with_reference(reference: object, corpus: list[str]) -> None:
    for text in corpus[:2000]:
        fits = len(reference.encode(text)) + 2 <= 77
        if fits:
            tokenize(text)
        else:
            with pytest.raises(ValueError, match="truncate=True"):
                tokenize(text)


# ---- hand-checked cases -----------------------------------------------------------------------------------------

def test_empty_text_is_start_and_end_then_padding() -> None:
    assert tokenize("").tolist() == [[SOT, EOT] + [0] * 75]


def test_a_photo_of_a_cat() -> None:
    # a=320, photo=1125, of=539, cat=2368, "."=269: every word ends a word, so each is one `</w>` token.
    expected = [SOT, 320, 1125, 539, 320, 2368, 269, EOT] + [0] * 69
    assert tokenize("a photo of a cat.").tolist() == [expected]
    assert tokenize(["a photo of a cat.", "A  PHOTO of a cat. "]).tolist() == [expected, expected]


def test_too_long_text_error_names_text_length_and_fix() -> None:
    text = "a " * 100  # 100 tokens of "a", 102 with start and end
    with pytest.raises(ValueError, match=r"texts\[0\] \('a a a a .*\.\.\.'\) is 102 tokens long .* "
                                         r"context_length=77; pass truncate=True"):
        tokenize(text)
    with pytest.raises(ValueError, match=r"texts\[1\] .* is 5 tokens long .* context_length=4"):
        tokenize(["a", "a a a"], context_length=4)


def test_truncate_keeps_the_first_ids_and_ends_with_eot() -> None:
    row = tokenize("a " * 100, truncate=True)[0].tolist()
    assert row == [SOT] + [320] * 75 + [EOT]
    assert tokenize("a photo of a cat.", context_length=4, truncate=True).tolist() == [[SOT, 320, 1125, EOT]]
    assert tokenize("a photo", context_length=2, truncate=True).tolist() == [[SOT, EOT]]


def test_decode_round_trip_of_ordinary_text() -> None:
    assert decode(tokenize("a photo of a cat.")[0]) == "a photo of a cat . "
    assert decode(get_tokenizer().encode("Two dogs, running!")) == "two dogs , running ! "
    assert decode([]) == ""


def test_decode_drops_special_tokens_and_padding_only() -> None:
    # Id 0 is "!" inside a word: it survives in the middle, and only trailing zeros count as padding.
    assert decode([SOT, 320, EOT, 0, 0, 0]) == "a "
    assert decode([0, 320]) == "!a "
    with pytest.raises(ValueError, match="outside the vocabulary"):
        decode([49408])
    with pytest.raises(ValueError, match="decode the rows one at a time"):
        decode(tokenize(["a", "b"]))


def test_literal_special_tokens_in_text_become_special_ids() -> None:
    # The reference's split pattern matches them before anything else, so user text can contain them.
    assert get_tokenizer().encode("<|endoftext|> hi <|StartOfText|>") == [EOT, 1883, SOT]


def test_vocabulary_size_and_special_ids() -> None:
    tokenizer = get_tokenizer()
    assert (tokenizer.vocab_size, tokenizer.sot_token_id, tokenizer.eot_token_id) == (49408, SOT, EOT)


def test_vocab_file_is_package_data() -> None:
    data = importlib.resources.files("clipworks.models").joinpath(VOCAB_FILE).read_bytes()
    assert len(data) == 1_356_917


def test_input_validation() -> None:
    with pytest.raises(TypeError, match=r"texts\[1\] is int"):
        tokenize(["a cat", 3])
    with pytest.raises(TypeError, match=r"texts\[0\] is bytes"):
        tokenize([b"a cat"])
    with pytest.raises(ValueError, match="context_length must be at least 2"):
        tokenize("a cat", context_length=1)
    with pytest.raises(ValueError, match="limit must be at least 0"):
        get_tokenizer().encode_flat(["a cat"], limit=-1)
    assert tokenize([]).shape == (0, 77)


# ---- the fast paths are exact -----------------------------------------------------------------------------------
# `chunks` skips ftfy and HTML unescaping for plain text, ids are cached per space-separated chunk, and ASCII chunks
# are split by a `re` pattern: each shortcut is checked against the reference's full computation.

def plain_text(rng: random.Random) -> str:
    """Printable ASCII without "&", weighted toward what the split pattern treats specially."""
    pieces = [*string.ascii_letters, *string.digits, *"'<|>!?.,:;-#@$%*()[]{}\"/\\^_`~+=", " ", " ", "  ",
              "'s", "'T", "'re", "'VE", "'m", "'LL", "'d", "<|startoftext|>", "<|endoftext|>", "<|EndOfText|>",
              "don't", "O'Neill", "CLIP", "a photo of", "#42", "3.14"]
    return "".join(rng.choices(pieces, k=rng.randint(0, 40)))


def test_plain_text_is_unchanged_by_ftfy_and_html_unescape() -> None:
    # The premise of the fast path, checked on ftfy itself rather than on our use of it.
    rng = random.Random(0)
    texts = [plain_text(rng) for _ in range(3000)] + [chr(c) * 3 for c in range(0x20, 0x7F) if chr(c) != "&"]
    for text in texts:
        assert text.isascii() and text.isprintable() and "&" not in text
        assert ftfy.fix_text(text) == text and html.unescape(text) == text, text


def test_chunks_of_plain_text_equal_full_cleaning() -> None:
    rng = random.Random(1)
    for text in [plain_text(rng) for _ in range(3000)]:
        assert " ".join(chunks(text)) == clean(text), text


def test_words_of_chunks_are_the_words_of_the_text(corpus: list[str]) -> None:
    for text in corpus[::3]:
        cleaned = clean(text)
        by_chunk = [word for chunk in cleaned.split(" ") for word in _WORD_PATTERN.findall(chunk)]
        assert by_chunk == _WORD_PATTERN.findall(cleaned), text


def test_ascii_split_pattern_equals_the_unicode_one() -> None:
    alphabet = [chr(c) for c in range(0x21, 0x7F) if not chr(c).isupper()]  # chunks: lowercase, no spaces
    pairs = [a + b for a in alphabet for b in alphabet]  # every two-character chunk
    rng = random.Random(2)
    longer = ["".join(rng.choices(alphabet + ["'s", "'ll", "<|endoftext|>", "<|"], k=rng.randint(1, 30)))
              for _ in range(5000)]
    for chunk in alphabet + pairs + longer:
        assert _ASCII_WORD_PATTERN.findall(chunk) == _WORD_PATTERN.findall(chunk), chunk


def test_plain_texts_and_every_ascii_character_match_reference(reference: object) -> None:
    rng = random.Random(3)
    texts = [plain_text(rng) for _ in range(3000)]
    # Each ASCII character (controls, "&", tab, CR included) in context, so both sides of the fast-path test run.
    texts += [f"A{chr(c)}b c{chr(c)}{chr(c)} {chr(c)}'S &amp;{chr(c)}" for c in range(128)]
    texts += [f"Tom &{name} Jerry" for name in ("amp;", "amp", "lt;", "#39;", "AMP;", "")] + ["\x1b[31mred\x1b[0m"]
    tokenizer = Tokenizer()
    assert tokenizer.encode_batch(texts) == [reference.encode(text) for text in texts]


def test_chunks_ending_in_digits_match_reference(reference: object) -> None:
    # New chunks lose their trailing ASCII digits to a shortcut that skips the split pattern.
    rng = random.Random(5)
    heads = ["", "#", "v", "x'", "'s", "a.b", "<|endoftext|>", "<|endoftext", "é", "²", "3.", "$", "'", "٣"]
    texts = [rng.choice(heads) + rng.choice(heads) + "".join(rng.choices(string.digits, k=rng.randint(1, 6)))
             for _ in range(2000)]
    assert Tokenizer().encode_batch(texts) == [reference.encode(text) for text in texts]


def random_unicode(rng: random.Random) -> str:
    """Code points from every plane region (surrogates included), mixed with ASCII words and whitespace."""
    def code_point() -> str:
        return chr(rng.choice([rng.randrange(0x80), rng.randrange(0x80, 0x800), rng.randrange(0x800, 0x10000),
                               rng.randrange(0x10000, 0x110000), rng.randrange(0xD800, 0xE000)]))
    return "".join(rng.choice([code_point, code_point, lambda: " ", lambda: rng.choice(WORDS)])()
                   for _ in range(rng.randint(0, 25)))


def test_split_pattern_finds_the_words_of_openais(reference: object) -> None:
    """Ours tries the letter and number branches first; the words are those of OpenAI's order of branches."""
    rng = random.Random(5)
    texts = [random_unicode(rng) for _ in range(3000)] + [
        "it's we'll i'd <|endoftext|>a<|startoftext|> 'ſ 'K ΐ\u0345 x\u0345 '\u0345 ½ ² 1½ <|end ''s",
        "".join(rng.choices(["'", "<", "|", "s", "ll", "7", "½", "\u0345", "é", "日", "!", "\u200d"], k=5000))]
    for text in texts:
        cleaned = clean(text)
        assert _WORD_PATTERN.findall(cleaned) == reference.pat.findall(cleaned), text


def test_random_unicode_matches_reference(reference: object, merger: str) -> None:
    rng = random.Random(4)
    texts = [random_unicode(rng) for _ in range(3000)]
    ours = Tokenizer().encode_batch(texts)
    mismatched = [text for text, ids in zip(texts, ours) if ids != reference.encode(text)]
    assert not mismatched, f"{len(mismatched)} texts differ, e.g. {mismatched[:3]!r}"


def test_long_words_and_runs_match_reference(reference: object, merger: str) -> None:
    texts = ["a" * 5000, "Supercalifragilistic" * 200, "😀" * 300, "猫" * 1000, "0123456789" * 300,
             "!?" * 2000, "'s" * 500, "<|endoftext|>" * 100, "é" * 2000, "e\u0301" * 500, "Ã©" * 300]
    tokenizer = Tokenizer()
    for text in texts:
        assert tokenizer.encode(text) == reference.encode(text), text[:20]
        assert tokenize(text, truncate=True).tolist() == reference_tokenize(reference, [text], truncate=True).tolist()


def test_contractions_and_case_folding_match_reference(reference: object) -> None:
    # IGNORECASE lets "'ſ" (long s) and "'K" (Kelvin sign) act as contractions; ASCII chunks take the `re` pattern.
    texts = ["IT'S", "it'ſ", "we'RE here", "I'M", "they'LL", "he'D", "can'T", "'S'", "x'sy", "'ſ'ſ", "'K",
             "<|STARTOFTEXT|>a", "a<|endoftext|>b", "<|endoftext|><|endoftext|>", "<|endoftext", "İ'S", "ǅ'S"]
    tokenizer = Tokenizer()
    for text in texts:
        assert tokenizer.encode(text) == reference.encode(text), text


def test_batch_api_equals_one_at_a_time(reference: object, corpus: list[str]) -> None:
    tokenizer = Tokenizer()
    subset = corpus[::10]
    batch = tokenizer.encode_batch(subset)
    flat, lengths = tokenizer.encode_flat(subset)
    assert batch == [tokenizer.encode(text) for text in subset] == [reference.encode(text) for text in subset]
    assert lengths == [len(ids) for ids in batch] and flat == [i for ids in batch for i in ids]
    assert tokenizer.encode_batch([]) == [] and tokenizer.encode_flat(iter(subset[:3]))[1] == lengths[:3]


def test_encode_batch_restores_the_garbage_collector_state() -> None:
    tokenizer = get_tokenizer()
    assert gc.isenabled()
    tokenizer.encode_batch(["a cat", "two dogs"])
    assert gc.isenabled()
    gc.disable()
    try:
        tokenizer.encode_batch(["a cat"])
        assert not gc.isenabled()
    finally:
        gc.enable()
    with pytest.raises(AttributeError):  # an error inside the paused loop still turns the collector back on
        tokenizer.encode_batch(["a cat", 3])
    assert gc.isenabled()


def test_full_caches_are_emptied_and_ids_stay_exact(reference: object, corpus: list[str]) -> None:
    tokenizer = Tokenizer(cache_size=8)
    subset = corpus[:300]
    for _ in range(2):  # the second pass meets whatever the first left in the caches
        assert tokenizer.encode_batch(subset) == [reference.encode(text) for text in subset]
    assert len(tokenizer._chunk_ids) <= 8 and len(tokenizer._word_ids) <= 8


def test_new_chunks_ending_in_digits_are_not_cached(reference: object) -> None:
    # Unique numbers ("#17", "1917") would otherwise fill the chunk cache and flush the common words out of it.
    tokenizer = Tokenizer()
    texts = [f"a photo of {i} dogs #{i} in {1900 + i}" for i in range(500)] + ["x\u00b2 y\u0663"]
    assert tokenizer.encode_batch(texts) == [reference.encode(text) for text in texts]
    # Only the words, and the parts before the digits ("#"), are cached; not bare numbers, nor "x²" and "y٣".
    assert set(tokenizer._chunk_ids) == {"a", "photo", "of", "dogs", "in", "#"}


def test_tokenize_context_lengths_and_truncation_match_reference(reference: object, corpus: list[str]) -> None:
    subset = corpus[::7]
    for context_length in (2, 3, 8, 77, 200):
        ours = tokenize(subset, context_length, truncate=True)
        assert torch.equal(ours, reference_tokenize(reference, subset, context_length, truncate=True))
    fits = [text for text in subset if len(reference.encode(text)) + 2 <= 16]
    assert torch.equal(tokenize(fits, 16), reference_tokenize(reference, fits, 16))


def test_too_long_error_names_the_first_too_long_text() -> None:
    with pytest.raises(ValueError, match=r"texts\[2\] \('b b b b b b'\) is 8 tokens long .* context_length=7"):
        tokenize(["a", "a a", "b b b b b b", "c " * 50], context_length=7)


# ---- long words: exact ids in linear time (issue 14) ------------------------------------------------------------
# OpenAI's bpe() is quadratic in a word's length, so it checks words of a few thousand characters (long enough for
# the array rounds, cuts and pieces of `Merges.apply`); longer words are checked against the plain heap rounds on
# the whole word, which the shorter ones and tests/test_bpe.py tie to the reference.

def long_texts(rng: random.Random, n: int) -> dict[str, str]:
    """Hostile inputs of about n characters, most of them one word."""
    return {
        "random letters": "".join(rng.choices(string.ascii_lowercase, k=n)),
        "one letter": "a" * n, "one letter, odd": "a" * (n + 1), "ab": "ab" * (n // 2),
        "the": "the" * (n // 3), "ing": "ing" * (n // 3), "mixed case": "".join(rng.choices("aAbBcCxXyYzZ", k=n)),
        "digits": "".join(rng.choices(string.digits, k=n)),
        "punctuation": "".join(rng.choices("!?.,;:-_#*()[]{}'\"/\\@$%^=+~`|<>", k=n)), "bangs": "!" * n,
        "accented": "".join(rng.choices("éèàüöçñåø", k=n // 2)), "é": "é" * (n // 2),
        "cjk": "猫" * (n // 3), "cjk random": "".join(chr(rng.randrange(0x4E00, 0x9FA6)) for _ in range(n // 3)),
        "emoji": "😀" * (n // 4), "emoji random": "".join(chr(rng.randrange(0x1F600, 0x1F650)) for _ in range(n // 4)),
        "mixed": "".join(rng.choices(["a", "B", "é", "猫", "😀", "!", "7", "ing", "the", "-"], k=n // 2)),
    }


def test_long_words_match_reference(reference: object, merger: str) -> None:
    tokenizer = Tokenizer()
    for name, text in long_texts(random.Random(14), 2500).items():
        theirs = reference.encode(text)
        assert tokenizer.encode(text) == theirs, name
        for context_length in (3, 77):
            expected = reference_tokenize(reference, [text], context_length, truncate=True)
            assert torch.equal(tokenize(text, context_length, truncate=True), expected), name
        with pytest.raises(ValueError, match=f"is {len(theirs) + 2} tokens long"):
            tokenize(text)


def test_long_emoji_and_cjk_words_match_reference(reference: object, merger: str) -> None:
    """Long words of random emoji or CJK are cut into short pieces that repeat; each distinct piece is merged once
    (`Merges._apply_distinct`) and its ids reused wherever it occurs."""
    rng = random.Random(15)

    def emoji(n: int) -> str:  # the range bench/tokenizer_classes.py draws from
        return "".join(chr(rng.randint(0x1F300, 0x1FAFF)) for _ in range(n))

    texts = {
        "random emoji": emoji(2000),
        "few emoji, repeated": "".join(rng.choices(["😀", "😂", "👍🏽", "❤️", "🔥", "🇫🇷"], k=1500)),
        "emoji, punctuation, ZWJ sequences": "".join(rng.choice([emoji(1), emoji(3), "!", "?!", "...", "😀😀",
                                                                 "👨\u200d👩\u200d👧", "🏳️\u200d🌈"])
                                                     for _ in range(800)),
        "random CJK": "".join(chr(rng.randint(0x4E00, 0x9FFF)) for _ in range(3000)),
        "CJK and Hangul, repeated": "".join(rng.choices(["日本", "語", "中文", "한국어", "猫"], k=1500)),
        "emoji runs between random emoji": "".join(rng.choice([emoji(1), "😀" * rng.randint(1, 9)])
                                                   for _ in range(600)),
    }
    tokenizer = Tokenizer()
    for name, text in texts.items():
        assert max(map(len, _WORD_PATTERN.findall(clean(text)))) >= 1000, name  # long words: cut and merged by piece
        assert tokenizer.encode(text) == reference.encode(text), name
        expected = reference_tokenize(reference, [text], 77, truncate=True)
        assert torch.equal(tokenize(text, 77, truncate=True), expected), name


def word_of_bytes(rng: random.Random, alphabet: str, size: int, filler: str) -> str:
    """One word of exactly `size` UTF-8 bytes: characters of `alphabet` while they fit, then `filler` (one byte, of
    the same word class) up to the size."""
    word = ""
    while len((more := word + rng.choice(alphabet)).encode()) <= size:
        word = more
    return word + filler * (size - len(word.encode()))


def test_mid_length_words_match_reference(reference: object, merger: str) -> None:
    """Words of a few hundred to a few thousand bytes, where `Merges.apply` changes method: from _ARRAYS_FROM
    symbols array rounds while each pays and one heap, from _ARRAY_ROUNDS_FROM cut pieces merged by `apply_many`,
    which one heap finishes once its rounds stop paying (issue 14: 1,000-5,000 random letters took up to 2 µs per
    character). Each kind of word just below and at both thresholds, and at 1,500 and 3,000 bytes."""
    rng = random.Random(16)
    kinds = {  # alphabet, and a one-byte character of the same word class
        "letters": (string.ascii_lowercase, "x"), "CJK": ("".join(map(chr, range(0x4E00, 0xA000))), "x"),
        "emoji": ("".join(map(chr, range(0x1F300, 0x1FB00))), "!"), "mixed letters": ("aωжиابתי한국日本", "x"),
        "punctuation": (string.punctuation, "!"), "run of !": ("!", "!"), "run of 😀": ("😀", "!"),
    }
    sizes = (bpe._ARRAYS_FROM - 1, bpe._ARRAYS_FROM, bpe._ARRAY_ROUNDS_FROM - 1, bpe._ARRAY_ROUNDS_FROM, 1500, 3000)
    tokenizer = Tokenizer()
    for name, (alphabet, filler) in kinds.items():
        for size in sizes:
            text = word_of_bytes(rng, alphabet, size, filler)
            assert [len(w.encode()) for w in _WORD_PATTERN.findall(clean(text))] == [size], (name, size)
            assert tokenizer.encode(text) == reference.encode(text), (name, size)
            expected = reference_tokenize(reference, [text], 77, truncate=True)
            assert torch.equal(tokenize(text, 77, truncate=True), expected), (name, size)


@pytest.mark.parametrize("n", [5000, 20_000])
def test_longer_words_equal_the_plain_heap_rounds(n: int, monkeypatch: pytest.MonkeyPatch) -> None:
    tokenizer = get_tokenizer()
    words = [word for text in long_texts(random.Random(n), n).values() for word in _WORD_PATTERN.findall(clean(text))
             if len(word.encode()) >= bpe._ARRAY_ROUNDS_FROM]
    assert len(words) >= 14
    compiled = [tokenizer._bpe(word) for word in words]
    monkeypatch.setattr(tokenizer_module, "_COMPILED_UP_TO", 0)
    fast = [tokenizer._bpe(word) for word in words]
    monkeypatch.setattr(bpe, "_ARRAYS_FROM", sys.maxsize)  # every word takes the heap alone, uncut
    assert compiled == fast == [tokenizer._bpe(word) for word in words]


def test_truncated_long_texts_keep_the_first_ids_of_the_full_encoding() -> None:
    tokenizer = get_tokenizer()
    texts = long_texts(random.Random(17), 20_000)
    texts |= {"after words": "a photo of " + texts["random letters"],
              "two long words": f"{texts['the']} {texts['emoji']}",
              "long after many": "two dogs " * 50 + texts["one letter"], "many words in one chunk": "a." * 10_000}
    for name, text in texts.items():
        full = tokenizer.encode(text)
        for context_length in (2, 3, 77, 200):
            kept = full[: context_length - 2]
            assert tokenize(text, context_length, truncate=True).tolist() == [[SOT, *kept, EOT]], name
            # encode_flat's limit: the first ids exact, and at least as many as asked for (or all).
            ids, _ = tokenizer.encode_flat([text], limit=context_length)
            assert ids[:context_length] == full[:context_length] and len(ids) >= min(context_length, len(full))
    # Long words and chunks are not cached: they are seldom seen twice, and an entry could be any size.
    assert max(map(len, [*tokenizer._word_ids, *tokenizer._chunk_ids])) <= 256


def test_time_per_character_does_not_grow_with_word_length() -> None:
    # Quadratic merging makes a word 100 times longer about 100 times slower per character; allow 10. Words of
    # 1,024 to 3,000 letters, where `Merges.apply` cuts a word into pieces, once took twice the time per character
    # of a 1,000-letter word.
    tokenizer = get_tokenizer()
    rng = random.Random(18)

    def seconds_per_character(text: str) -> float:
        times = []
        for _ in range(3):  # long words are not cached, so each call does all the work
            start = time.process_time()
            tokenizer.encode(text)
            times.append(time.process_time() - start)
        return min(times) / len(text)

    for make in (lambda n: "".join(rng.choices(string.ascii_lowercase, k=n)), lambda n: "ab" * (n // 2)):
        base = seconds_per_character(make(1000))
        for n in (1024, 1500, 3000, 100_000):
            assert seconds_per_character(make(n)) / base < 10, n


@pytest.mark.parametrize("cache_size", [64, 1 << 16])
def test_texts_of_many_new_words_match_reference(reference: object, cache_size: int) -> None:
    """A long text of many new chunks, or a long chunk of many new words, has its new words merged all at once
    (`Merges.apply_many`); ids equal the reference's, with a cache big enough for them and with one they overflow."""
    rng = random.Random(cache_size)
    pieces = [*string.ascii_lowercase, "ing", "the", "'s", "'ll", "é", "ü", "日本", "語", "한국어", "😀", "👍🏽", "!",
              ".", "-", "7", "42", "<|endoftext|>", "<|startoftext|>", "&amp;"]
    words = ["".join(rng.choices(pieces, k=rng.randint(1, 6))) for _ in range(3000)]
    # Chunks of one or a few words, and one chunk of thousands of words (no space at all).
    for separators in ([" "], [" ", "\n", "\t", " \u00a0 "], ["-", ".", ",", ""]):
        text = "".join(word + rng.choice(separators) for word in words)
        tokenizer = Tokenizer(cache_size=cache_size)
        assert tokenizer.encode(text) == reference.encode(text)
        assert tokenizer.encode(text) == reference.encode(text)  # again, from the caches
