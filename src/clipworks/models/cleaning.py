"""Text cleaning as OpenAI's CLIP tokenizer does it (`basic_clean` and `whitespace_clean` in `clip/simple_tokenizer.py`):
`ftfy.fix_text`, HTML unescaped twice, whitespace collapsed, lowercased — with the same result for less work.

`fix_text` equals `ftfy.fix_text` (default configuration) and skips ftfy's machinery where it provably changes
nothing but what a few of its fixers change. ftfy fixes a text line by line, each line in rounds until a round
changes nothing; a round is: unescape HTML entities, fix the encoding (mojibake), eight character fixers, NFC.
- HTML entities all start with "&": a text without one has none.
- The encoding fix returns a line unchanged unless ftfy's badness pattern matches in it. Every branch of that
  pattern needs one of a few hundred characters (`_ANCHORS`, derived from the pattern itself: Latin-1 and
  Windows-125x letters and symbols, box drawing, ...), so a text without them is never bad; with one, the pattern
  itself decides, searched over the whole text with `^` matching at every line start (a line's match is a match in
  the whole text; the converse may fail, which only sends the text to ftfy).
- The eight character fixers (C1 controls, ligatures, width, quotes, line breaks, surrogates, terminal escapes,
  control characters) and NFC change a text only where one of its characters is a trigger (`_TRIGGERS`: each
  character any of them maps, removes or starts a pattern with) or not in NFC; they act within a line, so running
  them on the whole text is running them on each line.
So a text without "&" or bad lines is fixed by the eight fixers and NFC alone, in ftfy's order and rounds; one
without triggers is already NFC-checked and returned as it is. Anything else goes to ftfy. The tests fuzz this
against `ftfy.fix_text`, and check `_TRIGGERS` against every code point.
"""

from __future__ import annotations

import functools
import html
import re
import unicodedata
from re import _constants as sre_constants
from re import _parser as sre_parser

import ftfy
import regex
from ftfy import badness, chardata, fixes

_WHITESPACE = regex.compile(r"\s+")
# The character fixers of one ftfy round after the encoding fix, in ftfy's order (`fix_and_explain`).
_FIXERS = (fixes.fix_c1_controls, fixes.fix_latin_ligatures, fixes.fix_character_width, fixes.uncurl_quotes,
           fixes.fix_line_breaks, fixes.fix_surrogates, fixes.remove_terminal_escapes, fixes.remove_control_chars)
# ftfy cuts a line longer than this into pieces fixed apart (`TextFixerConfig.max_decode_length`); such text goes to
# ftfy, as its cuts would be line starts the whole-text badness search does not see.
_MAX_LINE = ftfy.TextFixerConfig().max_decode_length


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


@functools.cache
def _screens() -> tuple[re.Pattern[str], re.Pattern[str], re.Pattern[str]]:
    """(anchors, badness over lines, triggers), built from ftfy's own tables on first use."""
    (branch,) = sre_parser.parse(badness.BADNESS_RE.pattern, re.VERBOSE)
    if branch[0] is not sre_constants.BRANCH:
        raise RuntimeError("ftfy's badness pattern is no longer one alternation; update clipworks.models.cleaning")
    anchors: set[int] = set()
    for alternative in branch[1][1]:
        # Each alternative's required items (top level: not inside an optional repeat) that are finite classes;
        # one of them must occur in any match. Prefer the one without ASCII or whitespace, then the smallest.
        required = [chars for op, av in alternative if (chars := _class_chars(op, av)) is not None]
        if not required:
            raise RuntimeError("a branch of ftfy's badness pattern has no required character class")
        anchors |= min(required, key=lambda s: (any(c < 128 or chr(c).isspace() for c in s), len(s)))
    triggers: set[int] = set()
    for pattern in (chardata.C1_CONTROL_RE, chardata.SINGLE_QUOTE_RE, chardata.DOUBLE_QUOTE_RE, fixes.SURROGATE_RE):
        items = list(sre_parser.parse(pattern.pattern, pattern.flags))
        if len(items) != 1 or (chars := _class_chars(*items[0])) is None:
            raise RuntimeError(f"ftfy's {pattern.pattern!r} is no longer one character class; update "
                               "clipworks.models.cleaning")
        triggers |= chars
    for table in (chardata.LIGATURES, chardata.WIDTH_MAP, chardata.CONTROL_CHARS):
        triggers |= {k for k, v in table.items() if v != chr(k) and v != k}
    triggers |= {ord(c) for c in "\r\u2028\u2029\u0085\x1b"}  # line breaks; the start of a terminal escape
    lines_badness = re.compile(badness.BADNESS_RE.pattern, re.VERBOSE | re.MULTILINE)
    return _char_class(anchors), lines_badness, _char_class(triggers)


def fix_text(text: str) -> str:
    """`ftfy.fix_text(text)`, computed without ftfy where that provably gives the same text (see the module)."""
    anchors, lines_badness, triggers = _screens()
    fixed = text
    while "&" not in fixed and len(fixed) <= _MAX_LINE and not (anchors.search(fixed) and lines_badness.search(fixed)):
        if not triggers.search(fixed) and unicodedata.is_normalized("NFC", fixed):
            return fixed  # a round would change nothing
        before = fixed
        for fix in _FIXERS:
            fixed = fix(fixed)
        fixed = unicodedata.normalize("NFC", fixed)
        if fixed == before:
            return fixed
    return ftfy.fix_text(text)


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
