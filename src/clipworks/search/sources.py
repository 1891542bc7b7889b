"""What an index is built from: the images of a folder, a CSV of image paths and captions, or webdataset shards.

Each source is listed as `Item`s without decoding anything: a path that identifies the image, a caption, and the
size and modification time that tell a later build whether the image changed. Webdataset samples are located by
their byte offset in the tar (read from the tar headers, which are seeked over, not read through), so that one
sample can be read later without streaming its shard; this needs uncompressed tars, which is what `clipworks
shards` and img2dataset write by default.
"""

from __future__ import annotations

import os
import tarfile
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from ..data.datasets import IMAGE_EXTENSIONS, resolve_path
from ..data.images import open_image
from ..data.shard_files import IMAGE_SUFFIXES, expand_urls, is_shard_spec
from ..data.tables import read_table
from ..errors import DataError


@dataclass(frozen=True)
class Item:
    """One image to index."""

    path: str  # the resolved file path, or `shard.tar#key` for a sample inside a tar shard
    caption: str
    size: int  # bytes of the image
    mtime_ns: int  # of the file, or of the shard holding it
    file: str  # the file to read the image from
    offset: int | None = None  # for a tar member: where its bytes start in `file`


def list_items(source: str | os.PathLike, *, image_key: str = "filepath", caption_key: str = "caption"
               ) -> tuple[list[Item], str]:
    """(items, source key) for a folder (every image file below it, captions empty), a CSV/TSV (`image_key`,
    `caption_key` columns; an image listed twice keeps its first caption) or a shard pattern (`data/{000..009}.tar`).
    The source key is the resolved folder, file or pattern: what a rebuild of the same source is recognised by."""
    text = str(source)
    if is_shard_spec(text):
        urls = expand_urls(text)
        return [item for url in urls for item in _shard_items(Path(url))], _shard_key(text)
    path = Path(source).expanduser()
    if path.is_dir():
        return _folder_items(path), str(path.resolve())
    if path.is_file():
        return _csv_items(path, image_key, caption_key), str(path.resolve())
    raise FileNotFoundError(f"{source} does not exist (expected an image folder, a CSV of {image_key},"
                            f"{caption_key}, or tar shards)")


def _shard_key(spec: str) -> str:
    return "::".join(str(Path(part).expanduser().resolve()) for part in spec.split("::") if part.strip())


def _item(path: Path, caption: str) -> Item | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return Item(str(path.resolve()), caption, stat.st_size, stat.st_mtime_ns, str(path.resolve()))


def _folder_items(root: Path) -> list[Item]:
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()
                   and not any(part.startswith(".") for part in p.relative_to(root).parts))
    if not files:
        raise DataError(f"no images under {root}; image files end in {', '.join(sorted(IMAGE_EXTENSIONS))}")
    return [item for item in (_item(p, "") for p in files) if item is not None]


def _csv_items(path: Path, image_key: str, caption_key: str) -> list[Item]:
    rows = read_table(path, columns=(image_key, caption_key), flags="--image-key/--caption-key")
    items, seen, missing = [], set(), []
    for row in rows:
        file = resolve_path(row[image_key], path.parent)
        item = _item(file, row[caption_key])
        if item is None:
            missing.append(str(file))
        elif item.path not in seen:
            seen.add(item.path)
            items.append(item)
    if not items:
        raise DataError(f"none of the {len(rows)} image paths in {path} exists (e.g. {missing[0]}); relative paths "
                        "are resolved against the CSV's folder")
    return items


def _shard_items(url: Path) -> list[Item]:
    """The samples with an image of one uncompressed tar shard, captions from their .txt members."""
    if not url.is_file():
        raise FileNotFoundError(f"shard {url} does not exist")
    stat = url.stat()
    try:
        with tarfile.open(url, "r:") as tar:
            members = [m for m in tar.getmembers() if m.isfile()]
            captions = {}
            images: dict[str, tarfile.TarInfo] = {}
            for m in members:
                stem, _, suffix = m.name.rsplit("/", 1)[-1].partition(".")
                if suffix.lower() == "txt":
                    captions[stem] = tar.extractfile(m).read().decode("utf-8", errors="replace").strip()
                elif suffix.lower() in IMAGE_SUFFIXES and stem not in images:
                    images[stem] = m
    except tarfile.ReadError as e:
        raise DataError(f"{url} is not an uncompressed tar shard ({e}); decompress .tar.gz shards first "
                        "(search reads single samples by their offset)") from None
    resolved = str(url.resolve())
    return [Item(f"{resolved}#{key}", captions.get(key, ""), m.size, stat.st_mtime_ns, resolved, m.offset_data)
            for key, m in images.items()]


def read_image(item: Item) -> Image.Image:
    """The decoded image of an item, in its own mode (as the dataset loaders return it)."""
    if item.offset is None:
        return open_image(item.file)
    with open(item.file, "rb") as f:  # a tar member: its bytes only
        f.seek(item.offset)
        return open_image(f.read(item.size), name=item.path)
