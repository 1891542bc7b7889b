"""CSV/TSV files read as RFC 4180 defines them: nothing in a caption lost, broken quoting named with its line."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import pytest

from clipworks import cli
from clipworks.data.datasets import CsvDataset
from clipworks.data.tables import read_table, read_table_with_lines, split_lines
from clipworks.errors import DataError, DataWarning

COLUMNS = ("filepath", "caption")


def _rows(path: Path, content: str | bytes, **kwargs: object) -> list[dict[str, str]]:
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return read_table(path, columns=COLUMNS, flags="--image-key/--caption-key", **kwargs)


@pytest.mark.parametrize("inside", ["\n", "\r\n", "\u2028", "\u0085", "\x0c", "\u2029", "\x1c"])
def test_a_line_break_of_any_kind_inside_quotes_stays_in_the_caption(tmp_path: Path, inside: str) -> None:
    rows = _rows(tmp_path / "c.csv", f'filepath,caption\na.png,"two{inside}lines"\nb.png,plain\n')
    assert rows == [{"filepath": "a.png", "caption": f"two{inside}lines"}, {"filepath": "b.png", "caption": "plain"}]


def test_every_record_ending_and_quoting_rule(tmp_path: Path) -> None:
    text = 'filepath,caption\r\na.png,"a, b and ""c"""\rb.png,x\n\nc.png,\n'
    assert _rows(tmp_path / "c.csv", text) == [
        {"filepath": "a.png", "caption": 'a, b and "c"'}, {"filepath": "b.png", "caption": "x"},
        {"filepath": "c.png", "caption": ""}]
    tsv = "\ufefffilepath\tcaption\na.png\tcomma, inside\n"  # a byte-order mark; in a tab file commas are text
    assert _rows(tmp_path / "c.tsv", tsv) == [{"filepath": "a.png", "caption": "comma, inside"}]


# Every line end the csv module reads records by, alone and mixed in one file (old Mac files end lines in \r only).
LINE_ENDS = pytest.mark.parametrize("ends", [("\n",), ("\r\n",), ("\r",), ("\r", "\n", "\r\n")],
                                    ids=["LF", "CRLF", "CR", "mixed"])


def _joined(lines: list[str], ends: tuple[str, ...]) -> str:
    """`lines`, each ended by the next of `ends` in turn."""
    return "".join(line + ends[i % len(ends)] for i, line in enumerate(lines))


@LINE_ENDS
def test_an_unclosed_quote_is_an_error_naming_its_line(tmp_path: Path, ends: tuple[str, ...]) -> None:
    lines = ["filepath,caption", "a.png,fine", 'b.png,"opened and never closed'] + [f"{i}.png,row {i}"
                                                                                    for i in range(14)]
    with pytest.raises(DataError, match=r"c.csv, line 3: a quote opened in this row is never closed, so the 14 "
                                        r"lines after it would become one field"):
        _rows(tmp_path / "c.csv", _joined(lines, ends))


@LINE_ENDS
def test_captions_that_swallowed_rows_are_counted_in_one_warning(tmp_path: Path, ends: tuple[str, ...]) -> None:
    lines = ["filepath,caption", 'a.png,"first', 'b.png,second"', 'c.png,"x', 'd.jpg,y"', 'e.png,"a poem',
             'in two lines"']
    with pytest.warns(DataWarning, match=r"c.csv: 2 rows have a field spanning lines that look like rows of this "
                                         r"file \(first at line 2\)"):
        rows = _rows(tmp_path / "c.csv", _joined(lines, ends))
    assert [r["filepath"] for r in rows] == ["a.png", "c.png", "e.png"]  # read as written: the warning says where
    assert rows[0]["caption"] == f"first{ends[1 % len(ends)]}b.png,second"


@pytest.mark.parametrize("after, what", [
    ("", "its field runs to the end of the file"),
    ("\n", "its field runs to the end of the file"),  # a final line end starts no line of the file's
    ("\nb.png,x", "the 1 line after it would become part of that field"),
    ("\nb.png,x\nc.png,y\n", "the 2 lines after it would become one field"),
], ids=["last-line", "last-line-ended", "1-line-after", "2-lines-after"])
def test_an_unclosed_quote_counts_the_lines_after_it_in_words(tmp_path: Path, after: str, what: str) -> None:
    path = tmp_path / "c.csv"
    with pytest.raises(DataError) as e:
        _rows(path, f'filepath,caption\na.png,"opened{after}')
    assert str(e.value) == (f"{path}, line 2: a quote opened in this row is never closed, so {what}. Close the "
                            'quote, or write a quote inside a quoted field as "".')


def test_one_caption_that_swallowed_a_row_is_one_row_in_the_warning(tmp_path: Path) -> None:
    with pytest.warns(DataWarning) as caught:
        _rows(tmp_path / "c.csv", 'filepath,caption\na.png,"first\nb.png,second"\nc.png,x\n')
    assert [str(w.message) for w in caught] == [
        f"{tmp_path / 'c.csv'}: 1 row has a field spanning lines that look like rows of this file (first at line 2); "
        "check the quoting there"]


def test_the_warning_points_at_the_line_that_called_clipworks(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_text('filepath,caption\na.png,"first\nb.png,second"\n')
    calls = {"read_table": lambda: read_table(path, columns=COLUMNS, flags=""),
             "read_table_with_lines": lambda: read_table_with_lines(path, columns=COLUMNS, flags=""),
             "CsvDataset": lambda: CsvDataset(path, transform=None)}
    for name, call in calls.items():
        with pytest.warns(DataWarning) as caught:
            call()
        assert [(w.filename, w.lineno) for w in caught] == [(__file__, call.__code__.co_firstlineno)], name


def test_a_line_end_only_python_counts_neither_hides_a_row_nor_numbers_a_line(tmp_path: Path) -> None:
    # To the csv module U+2028 is text, not a line end: the caption holds one line, and no row can hide in it.
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)
        rows = _rows(tmp_path / "c.csv", 'filepath,caption\ra.png,"one\u2028b.png,line"\r')
    assert rows == [{"filepath": "a.png", "caption": "one\u2028b.png,line"}]
    with pytest.raises(DataError, match=r"c.csv, line 3: a quote opened in this row is never closed, so the 1 line "
                                        r"after it would become part of that field\."):
        _rows(tmp_path / "c.csv", 'filepath,caption\ra.png,"x\u2028y"\rb.png,"open\u2028c.png,z\rd.png,w\r')


def test_split_lines_cuts_at_the_csv_line_ends_only() -> None:
    # What the benchmark readers read their lists and tab-separated files by: str.splitlines() would also cut at
    # each of U+2028, U+0085, U+2029, form feed, vertical tab and \x1c..\x1e, changing the field that holds it.
    text = "a\u2028b\r\nc\x85d\re\x0cf\x0bg\n\nh\u2029i\x1cj\x1dk\x1el\r\n"
    assert split_lines(text) == ["a\u2028b", "c\x85d", "e\x0cf\x0bg", "", "h\u2029i\x1cj\x1dk\x1el"]
    assert split_lines("no end") == ["no end"] and split_lines("") == [] and split_lines("\n") == [""]


@LINE_ENDS
def test_bytes_that_are_not_utf8_name_the_file_and_line(tmp_path: Path, ends: tuple[str, ...]) -> None:
    content = _joined(["filepath,caption", "a.png,ok", "b.png,caf?"], ends).encode().replace(b"?", b"\xe9")
    with pytest.raises(DataError, match=r"c.csv, line 3: byte 0xe9 is not UTF-8 text .* save the file as UTF-8"):
        _rows(tmp_path / "c.csv", content)


def test_a_missing_column_and_a_header_without_rows_name_the_file_and_header_line(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    with pytest.raises(DataError, match=rf"^{re.escape(str(path))}, line 1: the header has no column 'caption' "
                                        r"\(columns found: filepath, title; separator ','\)\. Set "
                                        r"--image-key/--caption-key to the columns to use\.$"):
        _rows(path, "filepath,title\ra.png,x\r")
    with pytest.raises(DataError, match=rf"^{re.escape(str(path))}, line 1: a header but no rows after it; expected "
                                        r"one row per image$"):
        _rows(path, "filepath,caption\r\r,\r")


@LINE_ENDS
@pytest.mark.parametrize("name, sep", [("c.csv", ","), ("c.tsv", "\t"), ("c.txt", ";")])
def test_blank_lines_before_the_header_are_skipped(tmp_path: Path, ends: tuple[str, ...], name: str, sep: str) -> None:
    # Empty, spaces only, separators only (a spreadsheet's empty row); in c.txt the separator is sniffed past them.
    lines = ["", "  ", sep * 2, f"filepath{sep}caption", f"a.png{sep}x", f"b.png{sep}y"]
    (tmp_path / name).write_bytes(_joined(lines, ends).encode())
    assert read_table_with_lines(tmp_path / name, columns=COLUMNS, flags="--image-key/--caption-key") == [
        (5, {"filepath": "a.png", "caption": "x"}), (6, {"filepath": "b.png", "caption": "y"})]
    with pytest.raises(DataError, match=rf"{name}, line 2: the header has no column 'caption' \(columns found: "
                                        r"filepath, title;"):
        _rows(tmp_path / name, _joined(["", f"filepath{sep}title", f"a.png{sep}x"], ends))


def test_a_directory_or_a_missing_file_says_which(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="is a directory; expected a CSV/TSV file"):
        read_table(tmp_path, columns=COLUMNS, flags="")
    with pytest.raises(FileNotFoundError, match="missing.csv does not exist"):
        read_table(tmp_path / "missing.csv", columns=COLUMNS, flags="")


def test_the_cli_gives_one_line_for_a_directory_and_for_broken_quoting(tmp_path: Path,
                                                                        capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "bad.csv").write_text('filepath,caption\na.png,"never closed\nb.png,x\n')
    (tmp_path / "mac.csv").write_bytes(b'filepath,caption\ra.png,"never closed\rb.png,x\rc.png,y\r')
    (tmp_path / "mixed.csv").write_bytes(b'filepath,caption\r\na.png,ok\rb.png,"never closed\nc.png,x\r\n')
    (tmp_path / "blank.csv").write_bytes(b"\n ,\r\n,,\n")
    for data, message in ((tmp_path, "is a directory"), (tmp_path / "bad.csv", "bad.csv, line 2: a quote opened"),
                          (tmp_path / "mac.csv", "mac.csv, line 2: a quote opened in this row is never closed, so "
                                                 "the 2 lines after it"),
                          (tmp_path / "mixed.csv", "mixed.csv, line 3: a quote opened in this row is never closed, "
                                                   "so the 1 line after it would become part of that field"),
                          (tmp_path / "blank.csv", "blank.csv has only blank lines (or separators); expected a header "
                                                   "line naming the columns (filepath,caption) and one row per image")):
        assert cli.main(["train", "--data", str(data), "--steps", "1", "--output-dir", str(tmp_path / "run")]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1
