"""The user's CSV/TSV files, read as the format defines them (RFC 4180): a quoted field may hold separators, quotes
("" inside quotes) and line breaks, and records may end in \\n, \\r\\n or \\r.

The file is parsed by the csv module from the decoded text itself, never from its text split into lines first: that
split breaks on characters Python counts as line ends inside a quoted caption (U+2028, U+0085, form feed) and merges
the words around them. What the format allows but usually means a broken file is reported, not silently accepted:
a quote opened and never closed (every later row would become one caption) is an error naming its line; captions
spanning several lines that look like rows of the file are counted in one `DataWarning`. Blank lines (and lines of
separators only) are skipped, before the header as between rows; rows keep the line they are on in the file.
"""

from __future__ import annotations

import csv
import io
import os
import re
import warnings
from collections.abc import Sequence
from pathlib import Path

from ..errors import DataError, DataWarning, counted, user_stacklevel

# The line ends the csv module reads records by (as io's newline="" splits lines): \r\n, \r and \n. Other characters
# Python counts as line ends (U+2028, U+0085, form feed, ...) are text to it, so they neither end nor number a line.
_LINE_END = re.compile(r"\r\n|\r|\n")
# A line of a swallowed row: something path-like with an image extension, then the separator.
_ROW_LIKE = r"[^\r\n]*\.(?:jpe?g|png|webp|gif|bmp|tiff?){sep}"
# Blank lines from the start of a file: nothing but spaces and separators the sniffer may choose (a spreadsheet's
# empty rows are ",,,").
_BLANK_LINES = re.compile(r"(?:(?:[,;|]|[^\S\r\n])*(?:\r\n|\r|\n))*")


def read_table(path: str | os.PathLike, *, columns: Sequence[str], flags: str, sep: str | None = None
               ) -> list[dict[str, str]]:
    """Rows of a CSV/TSV that must have `columns`. `sep` None: tab for .tsv, comma for .csv, else sniffed.

    `flags` names the options that choose the columns, for the error message (e.g. "--image-key/--caption-key").
    """
    return [row for _, row in read_table_with_lines(path, columns=columns, flags=flags, sep=sep)]


def read_table_with_lines(path: str | os.PathLike, *, columns: Sequence[str], flags: str, sep: str | None = None
                          ) -> list[tuple[int, dict[str, str]]]:
    """(line where the row starts, row) of each row, as `read_table` reads them: for errors naming a row's line."""
    path = Path(path)
    text = _read_text(path)
    if not text.strip():
        raise DataError(f"{path} is empty; expected a header line naming the columns ({','.join(columns)}) "
                        "and one row per image")
    if sep is None:
        sep = {".tsv": "\t", ".csv": ","}.get(path.suffix.lower()) or _sniff(text)
    records = _parse(path, text, sep)
    # Blank lines are skipped before the header as between rows (pandas skips them too); so are separators only.
    first = next((i for i, (_, fields) in enumerate(records) if _filled(fields)), None)
    if first is None:
        raise DataError(f"{path} has only blank lines (or separators); expected a header line naming the columns "
                        f"({','.join(columns)}) and one row per image")
    header_line, header = records[first]
    for column in columns:
        if column not in header:
            raise DataError(f"{path}, line {header_line}: the header has no column {column!r} (columns found: "
                            f"{', '.join(header)}; separator {sep!r}). Set {flags} to the columns to use.")
    positions = [header.index(c) for c in columns]
    rows = [(line, {c: (fields[i] if i < len(fields) else "") for c, i in zip(columns, positions)})
            for line, fields in records[first + 1:] if _filled(fields)]
    if not rows:
        raise DataError(f"{path}, line {header_line}: a header but no rows after it; expected one row per image")
    _warn_if_rows_were_swallowed(path, records[first + 1:], sep)
    return rows


def split_lines(text: str) -> list[str]:
    """`text` cut at \\r\\n, \\r and \\n only, as the csv module cuts records (and without an empty last line after a
    final line end, as str.splitlines()): the other characters splitlines() cuts at (U+2028, U+0085, form feed, ...)
    stay inside their line. For the benchmark readers' plain-text lists and tab-separated files."""
    lines = _LINE_END.split(text)
    return lines[:-1] if lines[-1] == "" else lines


def nonblank_lines(path: str | os.PathLike) -> list[str]:
    """The non-empty lines of a UTF-8 text file, stripped; lines end at \\r\\n, \\r or \\n only (`split_lines`)."""
    return [line.strip() for line in split_lines(Path(path).read_text(encoding="utf-8")) if line.strip()]


def _filled(fields: list[str]) -> bool:
    """Whether a record holds anything: not a blank line, nor one of separators and spaces only."""
    return any(f.strip() for f in fields)


def _read_text(path: Path) -> str:
    if path.is_dir():
        raise DataError(f"{path} is a directory; expected a CSV/TSV file with a header line and one row per image")
    if not path.is_file():
        raise FileNotFoundError(f"data file {path} does not exist")
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = _n_lines(data[:e.start].decode("utf-8-sig"))  # the bytes before it are valid UTF-8
        raise DataError(f"{path}, line {line}: byte {data[e.start]:#04x} is not UTF-8 text ({e.reason}); save the "
                        "file as UTF-8") from None


def _parse(path: Path, text: str, sep: str) -> list[tuple[int, list[str]]]:
    """(line where the record starts, fields) of every record, the header first."""
    records, start, error = _read(text, sep, strict=True)
    if error is None:
        return records
    if "unexpected end of data" in str(error):
        last = _n_lines(text) - text.endswith(("\n", "\r"))  # the last line with text: a final line end starts none
        swallowed = max(last - start, 0)  # the lines after this one
        what = ("its field runs to the end of the file" if swallowed == 0 else
                "the 1 line after it would become part of that field" if swallowed == 1 else
                f"the {swallowed} lines after it would become one field")
        raise DataError(f"{path}, line {start}: a quote opened in this row is never closed, so {what}. Close the "
                        'quote, or write a quote inside a quoted field as "".')
    # Quoting the format does not allow but readers accept (e.g. `"a"b`): read it as other readers do.
    return _read(text, sep, strict=False)[0]


def _read(text: str, sep: str, *, strict: bool) -> tuple[list[tuple[int, list[str]]], int, csv.Error | None]:
    """The records read, the line where the next one starts, and the error that stopped the reading (or None)."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=sep, strict=strict)
    records, start = [], 1
    try:
        for fields in reader:
            records.append((start, fields))
            start = reader.line_num + 1
    except csv.Error as e:
        return records, start, e
    return records, start, None


def _n_lines(text: str) -> int:
    """The lines of `text` as `csv.reader.line_num` counts them (after a final line end, an empty last line)."""
    return len(_LINE_END.findall(text)) + 1


def _warn_if_rows_were_swallowed(path: Path, records: list[tuple[int, list[str]]], sep: str) -> None:
    row_like = re.compile(_ROW_LIKE.format(sep=re.escape(sep)), re.IGNORECASE)
    suspicious = [line for line, fields in records
                  if any(row_like.search(_LINE_END.split(f, 1)[-1]) for f in fields if _LINE_END.search(f))]
    if suspicious:
        rows = counted(len(suspicious), "row has", "rows have")
        warnings.warn(f"{path}: {rows} a field spanning lines that look like rows of this file (first at line "
                      f"{suspicious[0]}); check the quoting there", DataWarning, stacklevel=user_stacklevel())


def _sniff(text: str) -> str:
    start = _BLANK_LINES.match(text).end()  # blank lines before the header say nothing of the separator
    sample = "\n".join(split_lines(text[start:start + 4096]))  # the Sniffer compares lines it cuts at \n only
    try:
        return csv.Sniffer().sniff(sample, delimiters=",\t;|").delimiter
    except csv.Error:
        return ","
