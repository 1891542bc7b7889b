"""Opening images: the one place that decodes a file or bytes with Pillow and names what went wrong.

Pillow raises many types on corrupt input (OSError, ValueError, SyntaxError, struct.error, ...). Every reader in
clipworks — the datasets, the shard stream, the index, the HTTP server and the CLI — opens images here, so each gets
the same decoded image (in the file's own mode; the transform converts to RGB after resizing, as OpenAI's does) and
the same `UnreadableImage` with a short reason when it cannot.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from ..errors import DataError

NOT_AN_IMAGE = "not an image in a format Pillow reads (PNG, JPEG, WebP, GIF, ...)"


class UnreadableImage(DataError):
    """An image that does not exist or does not decode; `reason` is the short why, for skip lists and logs."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class TooManyPixels(UnreadableImage):
    """An image over the pixel limit (or Pillow's decompression-bomb limit), refused before it is decoded."""


def open_image(source: str | os.PathLike | bytes, *, name: str | None = None, max_pixels: int | None = None,
               draft: bool = False) -> Image.Image:
    """The decoded image of a file path or of encoded bytes.

    `name` is how errors call the image (default: the path, or "the image"); `max_pixels` refuses larger images
    from their header, before decoding; `draft` decodes a JPEG at 1/8 scale (enough to prove it decodes: the whole
    stream is still read) and is for checking, not for using the pixels.
    """
    name = name or (str(source) if not isinstance(source, bytes) else "the image")
    if not isinstance(source, bytes) and not Path(source).is_file():
        raise UnreadableImage(f"image {name} does not exist", f"FileNotFoundError: no file {source}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as image:
                width, height = image.size
                if max_pixels is not None and width * height > max_pixels:
                    raise TooManyPixels(f"{name} is {width}x{height} pixels; the limit is {max_pixels:,} pixels",
                                        f"{width}x{height} pixels, over the limit of {max_pixels:,}")
                if draft:
                    image.draft("RGB", (1, 1))
                image.load()
                return image.copy()  # a copy outlives the closed file
    except UnreadableImage:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise TooManyPixels(f"{name} was refused as a decompression bomb: {e}", f"decompression bomb: {e}") from None
    except UnidentifiedImageError:
        raise UnreadableImage(f"{name} is not a readable image: {NOT_AN_IMAGE}", "not an image") from None
    except Exception as e:  # any decoding failure of a corrupt file
        reason = f"{type(e).__name__}: {e}"
        raise UnreadableImage(f"{name} is not a readable image ({reason})", reason) from None


def check_image(path: str | os.PathLike) -> str | None:
    """None if `path` decodes as an image, else the reason it does not."""
    try:
        open_image(path, draft=True)
    except UnreadableImage as e:
        return e.reason
    return None
