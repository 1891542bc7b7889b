"""Shard files in img2dataset's webdataset layout: their names and patterns, the samples of one tar, and writing them.

A shard is a plain tar; a sample is the consecutive members sharing a key (the file name up to its first dot):
`000000012.jpg` (or .jpeg/.png/.webp), `000000012.txt` (the caption) and optionally `000000012.json` (metadata).
This is the layout img2dataset writes and webdataset / open_clip read. Shards are opened in streaming mode (`r|*`),
so a file is read once, front to back, and gzip-compressed shards work. Patterns follow webdataset's brace notation,
except that nested braces (`{a,{b,c}}`) are not expanded. `shards.py` streams shards into training; `embedding.py`
and the search index read them too.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import tarfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from PIL import Image

from ..errors import ConfigError
from ..io.files import full_disk_is_one_error

IMAGE_SUFFIXES = ("jpg", "jpeg", "png", "webp")
_BRACE = re.compile(r"\{([^{}]*)\}")
_RANGE = re.compile(r"(\d+)\.\.(\d+)")


def expand_urls(spec: str) -> list[str]:
    """Shard URLs from a pattern: `{00000..00099}` zero-padded ranges, `{a,b}` alternatives, sources joined by `::`.

    `data/{00000..00002}.tar::more/x.tar` -> data/00000.tar, data/00001.tar, data/00002.tar, more/x.tar.
    """
    urls: list[str] = []
    for source in spec.split("::"):
        if source.strip():
            urls.extend(_expand(source.strip()))
    if not urls:
        raise ConfigError(f"shard pattern {spec!r} names no shards")
    return urls


def _expand(pattern: str) -> list[str]:
    match = _BRACE.search(pattern)
    if match is None:
        if "{" in pattern or "}" in pattern:
            raise ConfigError(f"unbalanced brace in shard pattern {pattern!r}")
        return [pattern]
    head, body, tail = pattern[:match.start()], match.group(1), pattern[match.end():]
    numbers = _RANGE.fullmatch(body)
    if numbers:
        lo, hi = numbers.groups()
        # Pad when either end is written with a leading zero (bash's rule): {00000..00099} -> 00000 ... 00099.
        width = max(len(lo), len(hi)) if lo.startswith("0") or hi.startswith("0") else 0
        step = 1 if int(hi) >= int(lo) else -1
        choices = [str(i).zfill(width) for i in range(int(lo), int(hi) + step, step)]
    elif "," in body:
        choices = body.split(",")
    else:
        raise ConfigError(f"{{{body}}} in shard pattern {pattern!r} is neither a range {{000..099}} nor "
                         "alternatives {a,b}")
    return [url for choice in choices for url in _expand(head + choice + tail)]


def is_shard_spec(data: str) -> bool:
    """Whether a `--data` value names tar shards rather than a CSV: `x.tar` (or .tar.gz, .tgz), or a pattern with
    braces or `::`."""
    pattern = "{" in data or "::" in data
    return data.endswith((".tar", ".tar.gz", ".tgz")) or (pattern and (".tar" in data or ".tgz" in data))


def shard_pattern(paths: Sequence[Path]) -> str:
    """The brace pattern for consecutively numbered shards from `write_shards`, e.g. out/shard-{00000..00003}.tar."""
    if len(paths) == 1:
        return str(paths[0])
    first, last = paths[0].stem.rsplit("-", 1), paths[-1].stem.rsplit("-", 1)
    return str(paths[0].parent / f"{first[0]}-{{{first[1]}..{last[1]}}}{paths[0].suffix}")


def tar_samples(url: str) -> Iterator[tuple[str, dict[str, bytes]]]:
    """(key, {suffix: bytes}) for each run of consecutive tar members sharing a key, streaming the file once."""
    with open(url, "rb") as f, tarfile.open(fileobj=f, mode="r|*") as tar:
        key, files = None, {}
        for member in tar:
            if not member.isfile():
                continue
            name = member.name.rsplit("/", 1)[-1]
            stem, dot, suffix = name.partition(".")
            if not dot or name.startswith("."):
                continue
            if stem != key:
                if key is not None:
                    yield key, files
                key, files = stem, {}
            files[suffix.lower()] = tar.extractfile(member).read()
        if key is not None:
            yield key, files


def missing_part(files: dict[str, bytes]) -> str | None:
    """What a sample (its files by suffix) lacks to be an image-caption pair, or None."""
    if not any(s in files for s in IMAGE_SUFFIXES):
        return f"no image (.{'/.'.join(IMAGE_SUFFIXES)})"
    if "txt" not in files:
        return "no .txt caption"
    return None


ImageSource = Image.Image | bytes | str | os.PathLike


def write_shards(samples: Iterable[tuple[ImageSource, str, dict[str, Any]]], out_dir: str | os.PathLike, *,
                 samples_per_shard: int = 1000, prefix: str = "shard") -> list[Path]:
    """Write (image, caption, metadata) samples into `out_dir/prefix-00000.tar`, ... and return the shard paths.

    A PIL image is stored as PNG; bytes keep their format (sniffed); a file path keeps its bytes and extension.
    Keys are the sample's index, zero-padded to 9 digits. Each shard is written to a temporary file and renamed
    when complete, so a reader never sees a partial shard.
    """
    if samples_per_shard < 1:
        raise ConfigError(f"samples_per_shard must be at least 1, got {samples_per_shard}")
    out = Path(out_dir)
    paths: list[Path] = []
    # A full disk: one error, the shard being written removed, the shards before it complete.
    with full_disk_is_one_error(out, what=f"the shards {prefix}-*.tar"):
        out.mkdir(parents=True, exist_ok=True)
        tar, tmp = None, None
        try:
            for index, (image, caption, extra) in enumerate(samples):
                if index % samples_per_shard == 0:
                    if tar is not None:
                        _finish(tar, tmp, paths[-1])
                    paths.append(out / f"{prefix}-{len(paths):05d}.tar")
                    tmp = paths[-1].with_name(f".{paths[-1].name}.{os.getpid()}.tmp")
                    tar = tarfile.open(tmp, "w")
                key = f"{index:09d}"
                data, suffix = _image_bytes(image)
                _add(tar, f"{key}.{suffix}", data)
                _add(tar, f"{key}.txt", caption.encode("utf-8"))
                _add(tar, f"{key}.json", json.dumps({"key": key, "caption": caption, **extra}).encode("utf-8"))
            if tar is not None:
                _finish(tar, tmp, paths[-1])
                tar = None
        finally:
            if tar is not None:
                with contextlib.suppress(OSError):  # closing flushes, which fails again on a full disk
                    tar.close()
                tmp.unlink(missing_ok=True)
    return paths


def _finish(tar: tarfile.TarFile, tmp: Path, path: Path) -> None:
    tar.close()
    os.replace(tmp, path)


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), 0o644  # mtime 0: the same samples give byte-identical shards
    tar.addfile(info, io.BytesIO(data))


def _image_bytes(image: ImageSource) -> tuple[bytes, str]:
    if isinstance(image, Image.Image):
        buffer = io.BytesIO()
        image.save(buffer, "PNG")
        return buffer.getvalue(), "png"
    if isinstance(image, bytes):
        with Image.open(io.BytesIO(image)) as opened:  # reads the header only
            fmt = (opened.format or "").lower()
        suffix = {"jpeg": "jpg"}.get(fmt, fmt)
        if suffix not in IMAGE_SUFFIXES:
            raise ValueError(f"image bytes in {fmt or 'an unknown'} format; shards hold "
                             f"{', '.join(IMAGE_SUFFIXES)} (pass a PIL image to store it as PNG)")
        return image, suffix
    path = Path(image)
    suffix = path.suffix.lower().lstrip(".")
    if suffix not in IMAGE_SUFFIXES:
        with Image.open(path) as opened:
            return _image_bytes(opened.copy())
    return path.read_bytes(), suffix
