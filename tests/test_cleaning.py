"""`clipworks.models.cleaning`: `fix_text` equals `ftfy.fix_text` on fuzzed text built to reach each of its paths
(no ftfy, the character fixers alone, ftfy), and `clean` equals the reference's `basic_clean` + `whitespace_clean`."""

from __future__ import annotations

import html
import random
from types import SimpleNamespace

import ftfy
import pytest
import regex
from ftfy import fixes

from clipworks.models import cleaning
from clipworks.models.cleaning import _screens, clean, fix_text

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
       "Ã©", "Ã¨", "â€™", "â€œ", "â€¨", "Ã©\r", "Ã ", "Ã\xa0", "Â ", "Ã¼ber", "Ð¿Ñ€Ð¸", "ï¼¡", "ÃƒÂ©", "Ã",
       "e\u0301", "＆amp;"]
)


def _fuzzed(rng: random.Random, n: int, pieces: list[str]) -> list[str]:
    return ["".join(rng.choice(pieces) for _ in range(rng.randint(0, 60))) for _ in range(n)]


def test_fix_text_equals_ftfy_on_fuzzed_text() -> None:
    rng = random.Random(14)
    # The whole alphabet reaches ftfy often; without "&", its mojibake lines get the encoding fix line by line;
    # without mojibake anchors either, the fixers alone.
    anchors = _screens().anchors
    no_entities = [p for p in _ALPHABET if "&" not in p]
    quiet = [p for p in no_entities if not anchors.search(p)]
    texts = _fuzzed(rng, 4000, _ALPHABET) + _fuzzed(rng, 4000, no_entities) + _fuzzed(rng, 4000, quiet)
    paths = {"unchanged": 0, "fixers": 0, "encoding by line": 0, "ftfy": 0}
    calls: list[str] = []
    fix_text_of_ftfy, fix_encoding_of_ftfy = cleaning.ftfy.fix_text, cleaning.ftfy.fix_encoding
    for text in texts:
        calls.clear()
        cleaning.ftfy.fix_text = lambda t: calls.append("ftfy") or fix_text_of_ftfy(t)
        cleaning.ftfy.fix_encoding = lambda t: calls.append("encoding by line") or fix_encoding_of_ftfy(t)
        try:
            ours = fix_text(text)
        finally:
            cleaning.ftfy.fix_text, cleaning.ftfy.fix_encoding = fix_text_of_ftfy, fix_encoding_of_ftfy
        assert ours == ftfy.fix_text(text), repr(text)
        paths["ftfy" if "ftfy" in calls else calls[0] if calls else "unchanged" if ours == text else "fixers"] += 1
    assert min(paths.values()) > 300, paths  # the fuzz reaches every path


def test_a_round_changed_only_by_the_encoding_fix_is_the_last(monkeypatch: pytest.MonkeyPatch) -> None:
    """ftfy's encoding fix repeats its step until the text stops changing, so `fix_text` does not run it again on
    lines it fixed that still look bad (the first: "ßØ" becomes "ߨ", "àا" stays): one round fixes the encoding."""
    text = "àاßØעжÜת5بy♥m\nplain line\ncafÃ© naÃ¯ve"
    fix_by_line, rounds = cleaning._fix_encoding_by_line, []
    monkeypatch.setattr(cleaning, "_fix_encoding_by_line", lambda *args: rounds.append(1) or fix_by_line(*args))
    assert fix_text(text) == ftfy.fix_text(text) == "àاߨעжÜת5بy♥m\nplain line\ncafé naïve"
    assert len(rounds) == 1


def test_each_fixer_changes_only_text_with_its_triggers() -> None:
    """Each code point outside a fixer's triggers, alone, is left as it is by that fixer (the fixers that look at
    sequences — "\\r\\n", surrogate pairs, terminal escapes — all need a character that alone is a trigger)."""
    every = "".join(map(chr, range(0x110000)))
    for fix, triggers in _screens().fixers:
        # One pass over all quiet characters side by side: any sequence a fixer rewrites starts with a trigger,
        # so the output equals the input exactly when no quiet character is changed.
        quiet = triggers.sub("", every)
        assert fix(quiet) == quiet, fix.__name__
        assert not triggers.search(_screens().triggers.sub("", every))  # the union holds every fixer's triggers
    assert fixes.fix_line_breaks("\r") != "\r"


def test_anchors_are_needed_by_every_badness_match() -> None:
    """Mojibake pairs are bad and contain an anchor; long texts of everything but anchors are never bad."""
    anchors = _screens().anchors
    for bad in ["Ã©", "â€™", "Ã ", "Ð¿Ñ€", "Ã\xa0", "Â»"]:
        assert ftfy.badness.is_bad(bad) and anchors.search(bad), bad
    rng = random.Random(0)
    sample = [c for c in map(chr, range(0x3000)) if not anchors.search(c)]
    for _ in range(200):
        text = "".join(rng.choice(sample) for _ in range(500))
        assert not ftfy.badness.is_bad(text)


def test_texts_missing_a_class_of_every_branch_are_never_bad() -> None:
    """`_may_be_bad` is False only where ftfy's badness pattern finds nothing: fuzzed from everything the pattern
    reads (its anchors and the rest of the alphabet), and accented Latin text, which has anchors, is screened out."""
    from clipworks.models.cleaning import _may_be_bad

    screens = _screens()
    assert screens.anchors.search("naïve café über año") and not _may_be_bad("naïve café über año", screens)
    assert _may_be_bad("cafÃ©", screens) and ftfy.badness.is_bad("cafÃ©")
    rng = random.Random(1)
    pieces = [*{c for branch in screens.branches for chars in branch for c in chars}, *_ALPHABET]
    screened = 0
    for text in _fuzzed(rng, 20_000, pieces):
        if not _may_be_bad(text, screens):
            screened += bool(screens.anchors.search(text))
            assert not ftfy.badness.BADNESS_RE.search(text), repr(text)
    assert screened > 300  # texts with anchors that the branches screen out


@pytest.mark.parametrize("seed", range(3))
def test_clean_equals_the_reference_cleaning(seed: int) -> None:
    rng = random.Random(seed)
    for text in _fuzzed(rng, 2000, _ALPHABET):
        expected = regex.sub(r"\s+", " ", html.unescape(html.unescape(ftfy.fix_text(text)))).strip().lower()
        assert clean(text) == expected, repr(text)


# Letters of many scripts (most texts of them fit no single-byte encoding, yet many are bad), runs that look like
# UTF-8 read as a single-byte encoding (some of which `decode_inconsistent_utf8` fixes), C1 controls.
_MIXED = list("abzÀÉÎØÜßàéîøüñçΑΒΓαβγδεЖЗИжзийкاببتثעבריתไทย한국어日本語中文") + ["Ã©", "â€™", "Ð¿Ñ€", "\x80", "\x9f"]


def test_one_line_gets_ftfys_encoding_fix_with_fewer_searches(monkeypatch: pytest.MonkeyPatch) -> None:
    """`_fix_encoding_of_line` equals `ftfy.fix_encoding` on fuzzed lines, and settles lines that fit no
    single-byte encoding without it, changed (embedded mojibake decoded) or not, bad or not."""
    from clipworks.models.cleaning import _fix_encoding_of_line

    screens = _screens()
    assert _fix_encoding_of_line("日本cafÃ©", screens) == ftfy.fix_encoding("日本cafÃ©") == "日本café"
    rng = random.Random(2)
    texts = _fuzzed(rng, 8_000, _MIXED)
    expected = [ftfy.fix_encoding(text) for text in texts]
    calls: list[str] = []
    fix_encoding_of_ftfy = ftfy.fix_encoding
    # cleaning's own calls only (`decode_inconsistent_utf8` calls ftfy.fix_encoding on the runs it decodes).
    monkeypatch.setattr(cleaning, "ftfy", SimpleNamespace(
        fix_encoding=lambda t: calls.append(t) or fix_encoding_of_ftfy(t)))
    settled = {"changed": 0, "bad, unchanged": 0}
    for text, fixed in zip(texts, expected):
        calls.clear()
        assert _fix_encoding_of_line(text, screens) == fixed, repr(text)
        if not calls:
            if fixed != text:
                settled["changed"] += 1
            elif ftfy.badness.is_bad(text):
                settled["bad, unchanged"] += 1
    assert min(settled.values()) > 200, settled
    monkeypatch.undo()
    for text in texts[:3000]:
        assert fix_text(text) == ftfy.fix_text(text), repr(text)


def test_characters_beyond_every_single_byte_encoding() -> None:
    """`beyond_single_byte` matches exactly the characters that no encoding ftfy re-decodes from can encode."""
    from ftfy import chardata

    beyond = _screens().beyond_single_byte
    for c in map(chr, range(0x10000)):
        fits = any(chardata.possible_encoding(c, encoding) for encoding in chardata.CHARMAP_ENCODINGS)
        assert fits != bool(beyond.search(c)), hex(ord(c))
    assert beyond.search("日本") and beyond.search("😀") and not beyond.search("Жé€\x1a")


def test_text_the_encoding_fix_cannot_change_is_not_searched_for_badness() -> None:
    """`_encoding_fix_changes_nothing` (the screen for text of several lines) is True only where ftfy's encoding
    fix returns every line as it is: mixed-script lines that are bad are screened out, and text whose embedded
    mojibake would be fixed is not."""
    from clipworks.models.cleaning import _encoding_fix_changes_nothing

    assert _encoding_fix_changes_nothing("日本àÉж") and ftfy.badness.is_bad("日本àÉж")
    assert not _encoding_fix_changes_nothing("日本cafÃ©")
    assert not _encoding_fix_changes_nothing("日本\nÃ©")  # the second line fits Latin-1
    assert not _encoding_fix_changes_nothing("日本\x85")  # a C1 control
    rng = random.Random(3)
    screened = bad = 0
    for text in _fuzzed(rng, 20_000, [*_MIXED, "\n"]):
        if _encoding_fix_changes_nothing(text):
            screened += 1
            lines = text.split("\n")
            bad += any(map(ftfy.badness.is_bad, lines))
            assert [ftfy.fix_encoding(line) for line in lines] == lines, repr(text)
            assert fix_text(text) == ftfy.fix_text(text), repr(text)
    assert screened > 2000 and bad > 500, (screened, bad)


def test_an_unknown_ftfy_major_version_leaves_the_encoding_fix_to_ftfy(monkeypatch: pytest.MonkeyPatch) -> None:
    """The shortcuts follow ftfy 6's steps; under another major version ftfy's own `fix_encoding` runs instead."""
    from clipworks.models.cleaning import _encoding_fix_changes_nothing, _fix_encoding_of_line

    monkeypatch.setattr(cleaning, "_KNOWN_STEPS", False)
    calls: list[str] = []
    fix_encoding_of_ftfy = ftfy.fix_encoding
    monkeypatch.setattr(cleaning, "ftfy", SimpleNamespace(
        fix_encoding=lambda t: calls.append(t) or fix_encoding_of_ftfy(t)))
    assert _fix_encoding_of_line("日本àÉж", _screens()) == "日本àÉж" and calls == ["日本àÉж"]
    assert not _encoding_fix_changes_nothing("日本àÉж")
