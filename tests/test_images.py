"""The one image opener: every reader gets the same decoded image or the same short reason."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from clipworks.data.images import NOT_AN_IMAGE, TooManyPixels, UnreadableImage, check_image, open_image
from clipworks.errors import ClipworksError, DataError


def _png(width: int, height: int, mode: str = "RGB") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, (width, height), 7).save(buffer, "PNG")
    return buffer.getvalue()


def test_a_file_and_its_bytes_decode_to_the_same_pixels_in_the_files_mode(tmp_path: Path) -> None:
    pixels = np.random.default_rng(0).integers(0, 256, (5, 7), dtype=np.uint8)
    path = tmp_path / "grey.png"
    Image.fromarray(pixels, "L").save(path)
    from_file, from_bytes = open_image(path), open_image(path.read_bytes())
    assert from_file.mode == from_bytes.mode == "L" and from_file.size == (7, 5)
    assert np.array_equal(np.asarray(from_file), pixels) and np.array_equal(np.asarray(from_bytes), pixels)


def test_failures_are_one_error_type_with_a_short_reason(tmp_path: Path) -> None:
    (tmp_path / "notes.jpg").write_text("not an image")
    (tmp_path / "cut.png").write_bytes(_png(64, 64)[:60])
    with pytest.raises(UnreadableImage, match=r"image .*missing.png does not exist") as missing:
        open_image(tmp_path / "missing.png")
    with pytest.raises(UnreadableImage, match="notes.jpg is not a readable image") as text:
        open_image(tmp_path / "notes.jpg")
    with pytest.raises(UnreadableImage, match="cut.png is not a readable image") as cut:
        open_image(tmp_path / "cut.png")
    assert missing.value.reason.startswith("FileNotFoundError")
    assert text.value.reason == "not an image" and NOT_AN_IMAGE in str(text.value)
    assert cut.value.reason.split(":")[0] in ("OSError", "SyntaxError", "ValueError")
    assert isinstance(cut.value, DataError) and isinstance(cut.value, ClipworksError)  # the CLI's one-line errors
    assert check_image(tmp_path / "notes.jpg") == "not an image" and check_image(tmp_path / "cut.png") is not None


def test_the_pixel_limit_is_checked_from_the_header_before_decoding(tmp_path: Path) -> None:
    data = _png(300, 200)
    assert open_image(data, max_pixels=60_000).size == (300, 200)
    with pytest.raises(TooManyPixels, match=r"the upload is 300x200 pixels; the limit is 59,999 pixels"):
        open_image(data, name="the upload", max_pixels=59_999)


def test_check_image_passes_a_good_jpeg_decoded_in_draft_mode(tmp_path: Path) -> None:
    path = tmp_path / "photo.jpg"
    Image.new("RGB", (640, 480), (200, 10, 10)).save(path, "JPEG")
    assert check_image(path) is None
    assert open_image(path).size == (640, 480)  # draft mode is for checking only: the opener decodes in full
