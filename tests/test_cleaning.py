"""`clipworks.models.cleaning`: `fix_text` equals `ftfy.fix_text` on fuzzed text built to reach each of its paths
(no ftfy, the character fixers alone, ftfy), and `clean` equals the reference's `basic_clean` + `whitespace_clean`."""

from __future__ import annotations

import html
import random

import ftfy
import pytest
import regex
from ftfy import fixes

from clipworks.models import cleaning
from clipworks.models.cleaning import _FIXERS, _screens, clean, fix_text

# Characters of every kind the paths depend on: plain ASCII, scripts ftfy never touches (CJK, Hangul, emoji, Thai),
# Latin-1 letters and symbols and other mojibake anchors, triggers of each character fixer (C1 controls, ligatures,
# fullwidth forms, curly quotes, line breaks, surrogates, terminal escapes, control characters), combining marks
# (NFC), HTML entities and "<" (ftfy's "auto" unescaping), and sequences that are real mojibake.
_ALPHABET = (
    list("abcdefghijklmnopqrstuvwxyz ABCXYZ 0123456789 .,;:!?'\"-_/\\()[]<>@#*%$\t\n ")
    + list("日本語中文한국어ไทย😀👍🏽🇫🇷♥★☃ЖжΩω")
    + list("éèüñçßÀÉÎØÜàâãÃÂÐ×°€£¥©®«»¿¡§±µ·\xa0\xad¦¨ª¬¯¸º─│┌ВГРСвΒΓβāŒœ√≈‚")
    + list("\x80\x85\x91\x9fﬁﬂＡｂ１　“”‘’\r\u2028\u2029\ud83d\ude00\x1b\x00\x07\x7f\u200b\ufeff")
    + list("\u0301\u0308\u0327e")
    + ["&amp;", "&lt;", "&eacute;", "&EACUTE;", "&amp;amp;", "&#39;", "&nbsp", "<b>", "\x1b[31m", "\r\n",
       "Ã©", "Ã¨", "â€™", "â€œ", "Ã ", "Ã\xa0", "Â ", "Ã¼ber", "Ð¿Ñ€Ð¸", "ï¼¡", "ÃƒÂ©", "Ã", "e\u0301", "＆amp;"]
)


def _fuzzed(rng: random.Random, n: int, pieces: list[str]) -> list[str]:
    return ["".join(rng.choice(pieces) for _ in range(rng.randint(0, 60))) for _ in range(n)]


def test_fix_text_equals_ftfy_on_fuzzed_text() -> None:
    rng = random.Random(14)
    # The whole alphabet reaches ftfy often; without "&" and mojibake anchors, the fixers-only path.
    quiet = [p for p in _ALPHABET if "&" not in p and not _screens()[0].search(p)]
    texts = _fuzzed(rng, 6000, _ALPHABET) + _fuzzed(rng, 6000, quiet)
    paths = {"no ftfy": 0, "fixers": 0}
    calls = []
    original = cleaning.ftfy.fix_text
    for text in texts:
        calls.clear()
        cleaning.ftfy.fix_text = lambda t: calls.append(t) or original(t)
        try:
            ours = fix_text(text)
        finally:
            cleaning.ftfy.fix_text = original
        assert ours == ftfy.fix_text(text), repr(text)
        if not calls:
            paths["no ftfy" if ours == text else "fixers"] += 1
    # Each path is taken often (the fuzz reaches them all).
    assert min(paths.values()) > 500 and len(texts) - sum(paths.values()) > 500, paths


def test_triggers_cover_every_character_a_fixer_changes() -> None:
    """Each code point outside `_TRIGGERS`, alone, is left as it is by every character fixer (the fixers that look
    at sequences — "\\r\\n", surrogate pairs, terminal escapes — all need a character that alone is a trigger)."""
    triggers = _screens()[2]
    every = "".join(map(chr, range(0x110000)))
    quiet = triggers.sub("", every)
    # One pass per fixer over all quiet characters side by side: any sequence a fixer rewrites starts with a
    # trigger, so the output equals the input exactly when no quiet character is changed.
    for fix in _FIXERS:
        assert fix(quiet) == quiet, fix.__name__
    assert fixes.fix_line_breaks("\r") != "\r" and triggers.search("\r")


def test_anchors_are_needed_by_every_badness_match() -> None:
    """Mojibake pairs are bad and contain an anchor; long texts of everything but anchors are never bad."""
    anchors = _screens()[0]
    for bad in ["Ã©", "â€™", "Ã ", "Ð¿Ñ€", "Ã\xa0", "Â»"]:
        assert ftfy.badness.is_bad(bad) and anchors.search(bad), bad
    rng = random.Random(0)
    sample = [c for c in map(chr, range(0x3000)) if not anchors.search(c)]
    for _ in range(200):
        text = "".join(rng.choice(sample) for _ in range(500))
        assert not ftfy.badness.is_bad(text)


@pytest.mark.parametrize("seed", range(3))
def test_clean_equals_the_reference_cleaning(seed: int) -> None:
    rng = random.Random(seed)
    for text in _fuzzed(rng, 2000, _ALPHABET):
        expected = regex.sub(r"\s+", " ", html.unescape(html.unescape(ftfy.fix_text(text)))).strip().lower()
        assert clean(text) == expected, repr(text)
