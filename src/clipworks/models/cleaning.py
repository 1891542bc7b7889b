"""Text cleaning as OpenAI's CLIP tokenizer does it (`basic_clean`, `whitespace_clean` in `clip/simple_tokenizer.py`):
`ftfy.fix_text`, HTML unescaped twice, whitespace collapsed, lowercased — with the same result for less work.

`fix_text` equals `ftfy.fix_text` (default configuration) and does ftfy's work without its per-line machinery
where that provably gives the same text. ftfy fixes a text line by line, each line in rounds until a round changes
nothing; a round is: unescape HTML entities, fix the encoding (mojibake), eight character fixers, NFC.
- HTML entities all start with "&": a text without one has none (with one, the text goes to ftfy).
- The encoding fix returns a line unchanged unless ftfy's badness pattern matches in it. Every branch of that
  pattern needs one of a few hundred characters (`anchors`, derived from the pattern itself: Latin-1 and
  Windows-125x letters and symbols, box drawing, ...), so a text without them is never bad; nor is a text that,
  for every branch, lacks all characters of one of the classes the branch requires (read off the pattern the
  same way: accented Latin text has anchors, but seldom a whole branch).
- A step of the encoding fix changes a bad line only by re-decoding it from a single-byte encoding the whole line
  fits in, by decoding short runs that look like UTF-8 read as one (`decode_inconsistent_utf8`), or by fixing C1
  controls. A line holding a character none of those encodings has (CJK, Thai, Hangul, emoji: a word of many
  scripts) and no C1 control can change only by the runs: `_fix_encoding_of_line` decodes them first (each run's
  fix cached) and searches for badness only if that changed something. A text of one line takes this path;
  other lines go to ftfy's `fix_encoding`.
- A text of several lines is screened the same way as a whole; otherwise the pattern searched over the whole text
  with `^` at every line start decides (a line's match is a match in the whole text; the converse may fail,
  which only costs time). Only the lines it finds bad get ftfy's encoding fix; once a round has made a new line
  break (the line-break fixer turns "\r" and U+2028 into "\n"), a bad line sends the text to ftfy, whose lines
  are those of the text it was given. A round whose only change was the encoding fix is the last: ftfy's
  encoding fix repeats its step until the text stops changing, so another round would change nothing.
- The eight character fixers (C1 controls, ligatures, width, quotes, line breaks, surrogates, terminal escapes,
  control characters) and NFC act within a line, so running them on the whole text is running them on each line;
  each changes a text only where one of its trigger characters is (a character it maps, removes or starts a
  sequence with), so a fixer whose triggers are absent is skipped, and a text without any trigger that is NFC and
  not bad is returned as it is.
The tests fuzz this against `ftfy.fix_text` and check every fixer's triggers against every code point.
"""

from __future__ import annotations

import functools
import html
import importlib.metadata
import re
import unicodedata
from collections.abc import Callable
from re import _constants as sre_constants
from re import _parser as sre_parser
from typing import NamedTuple

import ftfy
import regex
from ftfy import badness, chardata, fixes

_WHITESPACE = regex.compile(r"\s+")
# ftfy cuts a line longer than this into pieces fixed apart (`TextFixerConfig.max_decode_length`); such text goes to
# ftfy, as its cuts would be line starts the whole-text badness search does not see.
_MAX_LINE = ftfy.TextFixerConfig().max_decode_length
# The ftfy versions whose encoding-fix steps `_fix_encoding_of_line` and `_encoding_fix_changes_nothing` follow
# (read in 6.1.1 and 6.3.1). Under any other major version both step aside and ftfy's own `fix_encoding` decides.
_KNOWN_STEPS = importlib.metadata.version("ftfy").split(".")[0] == "6"


def _class_chars(op: object, av: object) -> set[int] | None:
    """Code points of one parsed regex item that is a literal or a class of literals and ranges, else None."""
    if op is sre_constants.LITERAL:
        return {av}
    if op is not sre_constants.IN:
        return None
    chars: set[int] = set()
    for kind, value in av:
        if kind is sre_constants.LITERAL:
            chars.add(value)
        elif kind is sre_constants.RANGE:
            chars.update(range(value[0], value[1] + 1))
        else:  # a category or a negation: not a finite set we can name
            return None
    return chars


def _char_class(code_points: set[int]) -> re.Pattern[str]:
    return re.compile("[" + "".join(re.escape(chr(c)) for c in sorted(code_points)) + "]")


class _Screens(NamedTuple):
    anchors: re.Pattern[str]  # one character of each branch of ftfy's badness pattern
    branches: tuple[tuple[frozenset[str], ...], ...]  # each branch's required character classes
    lines_badness: re.Pattern[str]  # the badness pattern with `^` at every line start
    triggers: re.Pattern[str]  # every character any of the eight fixers acts on
    fixers: tuple[tuple[Callable[[str], str], re.Pattern[str]], ...]  # each fixer, in order, with its triggers
    beyond_single_byte: re.Pattern[str]  # a character none of ftfy's single-byte encodings can encode


def _pattern_chars(pattern: re.Pattern[str]) -> set[int]:
    items = list(sre_parser.parse(pattern.pattern, pattern.flags))
    if len(items) != 1 or (chars := _class_chars(*items[0])) is None:
        raise RuntimeError(f"ftfy's {pattern.pattern!r} is no longer one character class; update "
                           "clipworks.models.cleaning")
    return chars


def _table_keys(table: dict) -> set[int]:
    return {k for k, v in table.items() if v != chr(k) and v != k}


@functools.cache
def _screens() -> _Screens:
    """The screening patterns, built from ftfy's own tables on first use."""
    (branch,) = sre_parser.parse(badness.BADNESS_RE.pattern, re.VERBOSE)
    if branch[0] is not sre_constants.BRANCH:
        raise RuntimeError("ftfy's badness pattern is no longer one alternation; update clipworks.models.cleaning")
    anchors: set[int] = set()
    branches = []
    for alternative in branch[1][1]:
        # Each alternative's required items (top level: not inside an optional repeat) that are finite classes;
        # each of them must occur in any match. The anchor is one of them: preferably without ASCII or
        # whitespace, then the smallest.
        required = [chars for op, av in alternative if (chars := _class_chars(op, av)) is not None]
        if not required:
            raise RuntimeError("a branch of ftfy's badness pattern has no required character class")
        anchors |= min(required, key=lambda s: (any(c < 128 or chr(c).isspace() for c in s), len(s)))
        branches.append(tuple(frozenset(map(chr, chars)) for chars in required))
    # What each fixer acts on: a character it maps, removes or (line breaks, terminal escapes, surrogate pairs)
    # starts a sequence with.
    fixers = (
        (fixes.fix_c1_controls, _pattern_chars(chardata.C1_CONTROL_RE)),
        (fixes.fix_latin_ligatures, _table_keys(chardata.LIGATURES)),
        (fixes.fix_character_width, _table_keys(chardata.WIDTH_MAP)),
        (fixes.uncurl_quotes, _pattern_chars(chardata.SINGLE_QUOTE_RE) | _pattern_chars(chardata.DOUBLE_QUOTE_RE)),
        (fixes.fix_line_breaks, {ord(c) for c in "\r\u2028\u2029\u0085"}),
        (fixes.fix_surrogates, _pattern_chars(fixes.SURROGATE_RE)),
        (fixes.remove_terminal_escapes, {0x1B}),
        (fixes.remove_control_chars, _table_keys(chardata.CONTROL_CHARS)),
    )
    lines_badness = re.compile(badness.BADNESS_RE.pattern, re.VERBOSE | re.MULTILINE)
    single_byte = set().union(*(_encodable_chars(chardata.ENCODING_REGEXES[encoding])
                                for encoding in chardata.CHARMAP_ENCODINGS))
    return _Screens(_char_class(anchors), tuple(branches), lines_badness,
                    _char_class(set().union(*(chars for _, chars in fixers))),
                    tuple((fix, _char_class(chars)) for fix, chars in fixers),
                    re.compile("[^" + _char_class(single_byte).pattern[1:]))


def _encodable_chars(pattern: re.Pattern[str]) -> set[int]:
    """The code points of ftfy's `^[...]*$` pattern for what an encoding can encode."""
    items = list(sre_parser.parse(pattern.pattern, pattern.flags))
    repeats = [av for op, av in items if op is sre_constants.MAX_REPEAT]
    if len(repeats) != 1 or len(repeats[0][2]) != 1 or (chars := _class_chars(*repeats[0][2][0])) is None:
        raise RuntimeError(f"ftfy's encoding pattern {pattern.pattern[:30]!r}... is no longer one repeated "
                           "character class; update clipworks.models.cleaning")
    return chars


def fix_text(text: str) -> str:
    """`ftfy.fix_text(text)`, computed without ftfy's machinery where that provably gives the same text (see the
    module)."""
    screens = _screens()
    fixed, lines = text, text.count("\n")
    while "&" not in fixed and len(fixed) <= _MAX_LINE:
        before = fixed
        if not screens.anchors.search(fixed):
            pass  # never bad: the encoding fix leaves it as it is
        elif "\n" not in fixed:  # one line, as ftfy sees it (no fixer removes a "\n", so `lines` is 0)
            fixed = _fix_encoding_of_line(fixed, screens)
        elif (not _encoding_fix_changes_nothing(fixed) and _may_be_bad(fixed, screens)
              and screens.lines_badness.search(fixed)):
            if fixed.count("\n") != lines:
                # A round made a line break ("\r" or U+2028 became "\n"; no fixer removes one), and ftfy's
                # lines are those of the text it was given: leave this text to ftfy.
                break
            fixed = _fix_encoding_by_line(fixed, screens.anchors)
        encoded = fixed
        if fixed == before and not screens.triggers.search(fixed) and unicodedata.is_normalized("NFC", fixed):
            return fixed  # a round would change nothing
        for fix, triggers in screens.fixers:
            if triggers.search(fixed):
                fixed = fix(fixed)
        fixed = unicodedata.normalize("NFC", fixed)
        if fixed == encoded:
            # The fixers and NFC changed nothing, and the encoding fix (if any) would change nothing again:
            # ftfy's `fix_encoding` repeats its step until the text stops changing. So the next round, ftfy's or
            # ours, would leave the text as it is.
            return fixed
    return ftfy.fix_text(text)


def _may_be_bad(text: str, screens: _Screens) -> bool:
    """False if ftfy's badness pattern cannot match in `text`: it has no anchor (the quick test), or every branch
    misses one of its required characters in it (Latin text with accents has anchors, but no branch's all)."""
    if not screens.anchors.search(text):
        return False
    chars = set(text)
    return any(all(not required.isdisjoint(chars) for required in branch) for branch in screens.branches)


def _fix_encoding_of_line(line: str, screens: _Screens) -> str:
    """`ftfy.fix_encoding(line)` for text of one line (no "\n"), with one badness search per step at
    most and none where no step could change the line. ftfy's encoding fix repeats a step until the line stops
    changing; a step (`_encoding_fix_changes_nothing` lists what it can do) leaves an ASCII line or one that is not
    bad as it is. On a line that fits none of ftfy's single-byte encodings and has no C1 control (letters of many
    scripts), the only step that can change it is `decode_inconsistent_utf8`'s, and only if the line is bad: so
    that result is computed first and the badness searched for only if it differs. Other lines go to ftfy, unless
    no branch of the badness pattern can match."""
    while not line.isascii():
        if not _KNOWN_STEPS or chardata.C1_CONTROL_RE.search(line) or _fits_a_single_byte_encoding(line):
            return ftfy.fix_encoding(line) if _may_be_bad(line, screens) else line
        fixed = _decode_inconsistent_utf8(line)
        if fixed == line or not badness.is_bad(line):
            break
        line = fixed
    return line


def _decode_inconsistent_utf8(text: str) -> str:
    """`ftfy.fixes.decode_inconsistent_utf8(text)`, each run's fix cached: it fixes each run of its pattern that is
    shorter than the text and bad, alone, and a run (2-4 characters) gives the same fix wherever it occurs."""
    return chardata.UTF8_DETECTOR_RE.sub(lambda run: run[0] if len(run[0]) == len(text) else _fixed_run(run[0]), text)


@functools.lru_cache(maxsize=1 << 14)
def _fixed_run(run: str) -> str:
    return ftfy.fix_encoding(run) if badness.is_bad(run) else run


def _fits_a_single_byte_encoding(line: str) -> bool:
    """Whether one of ftfy's single-byte encodings (`chardata.CHARMAP_ENCODINGS`) can encode all of `line`. A
    character none of them can (CJK, Thai, Hangul, emoji, ...) answers at once."""
    if _screens().beyond_single_byte.search(line):
        return False
    return any(chardata.possible_encoding(line, encoding) for encoding in chardata.CHARMAP_ENCODINGS)


def _encoding_fix_changes_nothing(text: str) -> bool:
    """True if ftfy's encoding fix leaves every line of `text` as it is, bad or not. A step of it changes a line
    (ftfy 6.1-6.3, `_fix_encoding_one_step_and_explain`) only by re-decoding it from a single-byte encoding the
    whole line fits in (`chardata.CHARMAP_ENCODINGS`), by `fixes.decode_inconsistent_utf8` (which fixes short runs
    that look like UTF-8 read as such an encoding) or by fixing C1 controls; an ASCII line it returns at once.
    So text without C1 controls, whose every line is ASCII or holds a character outside each of those encodings,
    and which `decode_inconsistent_utf8` leaves as it is, is left alone: letters of many scripts with a CJK, Thai
    or Hangul one among them, which would otherwise cost two badness searches. The lines of `text` are ftfy's
    lines or pieces of them; `decode_inconsistent_utf8`'s pattern does not match across a line break, and a run
    it leaves in the whole text it leaves in a line (where it fixes only runs shorter than the line)."""
    if not _KNOWN_STEPS or chardata.C1_CONTROL_RE.search(text):
        return False
    if not all(line.isascii() or not _fits_a_single_byte_encoding(line) for line in text.split("\n")):
        return False
    return _decode_inconsistent_utf8(text) == text


def _fix_encoding_by_line(text: str, anchors: re.Pattern[str]) -> str:
    """ftfy's encoding fix of each line (with its "\n", as ftfy cuts them) that its badness pattern finds bad: the
    first step of a round of ftfy's on each line, which leaves the other lines as they are. For text of several
    lines whose whole-text badness search found something."""
    lines = text.split("\n")
    lines = [line + "\n" for line in lines[:-1]] + lines[-1:]
    return "".join(ftfy.fix_encoding(line) if anchors.search(line) and badness.is_bad(line) else line
                   for line in lines)


def clean(text: str) -> str:
    """Normalise text as OpenAI's tokenizer does: fix mojibake, unescape HTML, collapse whitespace, lowercase."""
    text = fix_text(text)
    if "&" in text:  # html.unescape changes nothing else; twice turns doubly-escaped "&amp;amp;" into "&"
        text = html.unescape(html.unescape(text))
    return _WHITESPACE.sub(" ", text).strip().lower()


def chunks(text: str) -> list[str]:
    """The pieces of `clean(text)` between its spaces (an empty piece has no words)."""
    if text.isascii() and text.isprintable() and "&" not in text:
        # Plain text: ftfy and html.unescape return it unchanged, and its only whitespace is " ".
        return text.lower().split()
    return clean(text).split(" ")


def prepare_cleaning() -> None:
    """Build the screening tables now (some 25 ms, once), not during the first text that needs them."""
    _screens()
