"""transforms.py against torchvision's documented arithmetic, recomputed here with PIL calls and numpy."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from clipworks.models.transforms import (
    OPENAI_MEAN,
    OPENAI_STD,
    ImageTransform,
    Preprocess,
    center_crop,
    image_transform,
    resize_shorter_side,
    to_tensor_batch,
)


def _noise(w: int, h: int, mode: str = "RGB", seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    if mode == "L":
        return Image.fromarray(rng.integers(0, 256, (h, w), dtype=np.uint8), "L")
    if mode == "RGBA":
        return Image.fromarray(rng.integers(0, 256, (h, w, 4), dtype=np.uint8), "RGBA")
    rgb = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), "RGB")
    return rgb.quantize(colors=64) if mode == "P" else rgb


def _reference(image: Image.Image, n: int) -> np.ndarray:
    """OpenAI's Resize(n, BICUBIC) -> CenterCrop(n) -> RGB -> ToTensor -> Normalize, step by step."""
    w, h = image.size
    if min(w, h) != n:
        size = (n, int(n * h / w)) if w < h else (int(n * w / h), n)
        image = image.resize(size, Image.BICUBIC)
    w, h = image.size
    top, left = int(round((h - n) / 2.0)), int(round((w - n) / 2.0))
    image = image.crop((left, top, left + n, top + n)).convert("RGB")
    x = np.asarray(image).astype(np.float32) / np.float32(255)
    x = (x - np.asarray(OPENAI_MEAN, np.float32)) / np.asarray(OPENAI_STD, np.float32)
    return x.transpose(2, 0, 1)


@pytest.mark.parametrize(
    "w, h, mode",
    [(300, 200, "RGB"), (200, 300, "RGB"), (224, 224, "RGB"), (100, 50, "RGB"), (260, 240, "RGBA"),
     (240, 300, "L"), (300, 250, "P"), (1000, 10, "RGB")],
)
def test_eval_matches_openai_preprocessing(w: int, h: int, mode: str) -> None:
    image = _noise(w, h, mode)
    out = image_transform(224)(image)
    assert out.shape == (3, 224, 224) and out.dtype == torch.float32
    np.testing.assert_allclose(out.numpy(), _reference(image, 224), rtol=0, atol=1e-6)


def test_resize_truncates_long_side() -> None:
    # 224 * 333 / 200 = 372.96: torchvision truncates to 372 where rounding would give 373.
    assert resize_shorter_side(_noise(333, 200), 224).size == (372, 224)
    assert resize_shorter_side(_noise(200, 333), 224).size == (224, 372)


def test_resize_leaves_image_alone_when_short_side_matches() -> None:
    image = _noise(300, 224)
    assert resize_shorter_side(image, 224) is image


def test_center_crop_rounds_half_to_even() -> None:
    # (225 - 224) / 2 = 0.5 rounds to 0 and (227 - 224) / 2 = 1.5 rounds to 2 under Python's round.
    ramp = Image.fromarray(np.tile(np.arange(227, dtype=np.uint8), (224, 1)), "L")
    assert np.asarray(center_crop(ramp.crop((0, 0, 225, 224)), 224))[0, 0] == 0
    assert np.asarray(center_crop(ramp, 224))[0, 0] == 2


def test_center_crop_refuses_small_image() -> None:
    with pytest.raises(ValueError, match="resize it first"):
        center_crop(_noise(100, 50), 64)


def test_normalise_constant_image_by_hand() -> None:
    image = Image.new("RGB", (64, 64), (255, 0, 128))
    out = image_transform(64)(image)
    # (1 - 0.48145466) / 0.26862954, (0 - 0.4578275) / 0.26130258, (128/255 - 0.40821073) / 0.27577711
    expected = [1.930336254158794, -1.7520971281645974, 0.33994864299551714]
    for c in range(3):
        assert torch.allclose(out[c], torch.full((64, 64), expected[c]), atol=1e-6)


def test_to_tensor_batch_equals_per_image_path() -> None:
    rng = np.random.default_rng(1)
    batch = rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    out = to_tensor_batch(batch)
    assert out.shape == (4, 3, 32, 32) and out.is_contiguous()
    per_image = torch.stack([image_transform(32)(Image.fromarray(a)) for a in batch])
    assert torch.equal(out, per_image)


def test_to_tensor_batch_rejects_wrong_layout() -> None:
    with pytest.raises(ValueError, match="uint8"):
        to_tensor_batch(np.zeros((2, 3, 8, 8), np.uint8))


def test_train_crop_is_seedable_and_varies_with_seed() -> None:
    image = _noise(300, 200, seed=3)

    def crop(seed: int) -> torch.Tensor:
        return image_transform(64, train=True, generator=torch.Generator().manual_seed(seed))(image)

    assert crop(0).shape == (3, 64, 64)
    assert torch.equal(crop(0), crop(0))
    assert not torch.equal(crop(0), crop(1))


def test_train_crop_uses_global_rng_without_generator() -> None:
    t = image_transform(48, train=True)
    image = _noise(120, 90, seed=4)
    torch.manual_seed(7)
    first = t(image)
    torch.manual_seed(7)
    assert torch.equal(first, t(image))


def test_train_full_scale_crop_of_square_image_is_plain_resize() -> None:
    # scale (1, 1) on a square image leaves one possible crop: the whole image.
    image = _noise(96, 96, seed=5)
    out = ImageTransform(size=48, train=True, scale=(1.0, 1.0))(image)
    expected = image_transform(48)(image.resize((48, 48), Image.BICUBIC))
    assert torch.equal(out, expected)


def test_transform_pickles_and_prints_settings() -> None:
    t = image_transform(224, train=True, generator=torch.Generator().manual_seed(0))
    clone = pickle.loads(pickle.dumps(t))
    image = _noise(250, 230)
    assert torch.equal(clone(image), t(image))
    assert repr(image_transform(224)).startswith("ImageTransform(size=224, train=False, mean=(0.48145466")


# ---------------------------------------------------------------- open_clip's resize modes (bench/open_clip_parity.py
# compares them with open_clip's own transforms: equal to the bit)


def _normalised(image: Image.Image) -> np.ndarray:
    x = np.asarray(image.convert("RGB")).astype(np.float32) / np.float32(255)
    return ((x - np.asarray(OPENAI_MEAN, np.float32)) / np.asarray(OPENAI_STD, np.float32)).transpose(2, 0, 1)


@pytest.mark.parametrize("w, h", [(300, 200), (64, 200), (64, 64)])
def test_squash_resizes_both_sides_without_cropping(w: int, h: int) -> None:
    image = _noise(w, h, seed=6)
    out = image_transform(64, resize_mode="squash")(image)
    np.testing.assert_allclose(out.numpy(), _normalised(image.resize((64, 64), Image.BICUBIC)), rtol=0, atol=1e-6)


def test_longest_fits_the_image_and_pads_it_black_centred() -> None:
    image = _noise(200, 101, seed=7)  # -> 64 x round(101 * 64 / 200) = 64 x 32, 16 rows of padding above
    out = image_transform(64, resize_mode="longest", interpolation="bilinear")(image)
    np.testing.assert_allclose(out[:, 16:48].numpy(), _normalised(image.resize((64, 32), Image.BILINEAR)), rtol=0,
                               atol=1e-6)
    black = (torch.zeros(3) - torch.tensor(OPENAI_MEAN)) / torch.tensor(OPENAI_STD)
    assert torch.equal(out[:, :16], black.view(3, 1, 1).expand(3, 16, 64))
    assert torch.equal(out[:, 48:], black.view(3, 1, 1).expand(3, 16, 64))


def test_preprocess_settings_make_the_transform() -> None:
    pp = Preprocess(mean=[0.5, 0.5, 0.5], std=(1, 2, 3), resize_mode="squash")
    assert pp.mean == (0.5, 0.5, 0.5) and pp.std == (1.0, 2.0, 3.0)
    assert pp.transform(32) == image_transform(32, mean=(0.5,) * 3, std=(1, 2, 3), resize_mode="squash")
    assert Preprocess().transform(32) == image_transform(32)  # OpenAI's by default
    assert Preprocess(mean=0.5, std=1).std == (1.0, 1.0, 1.0)  # one number for all channels


def test_unknown_resize_mode_and_interpolation_are_refused() -> None:
    with pytest.raises(ValueError, match="resize_mode 'fit' is not one of shortest, squash, longest"):
        image_transform(32, resize_mode="fit")
    with pytest.raises(ValueError, match="interpolation 'nearest' is not one of bicubic, bilinear"):
        Preprocess(interpolation="nearest")
