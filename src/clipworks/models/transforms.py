"""Image preprocessing: OpenAI's CLIP eval transform, bit-exact on PIL input, and the paper's training crop.

Eval reproduces openai/CLIP `clip/clip.py::_transform`, i.e. torchvision's
`Compose([Resize(n, BICUBIC), CenterCrop(n), _convert_image_to_rgb, ToTensor(), Normalize(mean, std)])`, on PIL images
without depending on torchvision. The arithmetic follows torchvision's for PIL input:
  Resize(int)  the shorter side becomes n, the longer `int(n * long / short)` (truncated, not rounded), by a single
               `PIL.Image.resize((w, h), BICUBIC)` call (no `reducing_gap`; PIL antialiases by itself); an image whose
               shorter side already is n is returned untouched.
  CenterCrop   `top = int(round((h - n) / 2.0))`, `left` likewise (Python's round: halves go to the even integer),
               then `PIL.Image.crop`.
  ToTensor     uint8 HWC -> float32 CHW divided by 255.
  Normalize    `(x - mean) / std` per channel, in float32.
The RGB conversion comes after the crop, as in OpenAI's order; it matters for RGBA and palette ("P") images, which
PIL resizes in their own mode.

Models trained elsewhere name their own preprocessing (`Preprocess`, read from open_clip's `preprocess_cfg` or HF's
`preprocessor_config.json`): mean and std, bilinear instead of bicubic, and open_clip's three resize modes --
"shortest" (the above), "squash" (torchvision `Resize((n, n))`: both sides to n, aspect ratio not kept, no crop) and
"longest" (open_clip's `ResizeKeepRatio(longest=1)`: the longer side to n, the shorter `round(side * n / longer)`,
then centred on an n x n black canvas, `(n - side) // 2` pixels left/above, as its `CenterCropOrPad`). Deliberate
difference in "longest": the image becomes RGB before it is padded, so a palette image's padding is black rather
than its palette's colour 0.

Training (Radford et al. 2021, §2.5: "a random square crop from resized images is the only data augmentation"):
a square whose side is a random fraction of the shorter side (area fraction uniform in `scale`, default (0.9, 1.0))
at a uniformly random position, resized to n x n with bicubic. Deliberate difference from open_clip, whose
`RandomResizedCrop` draws aspect ratios in (3/4, 4/3) and measures area against the whole image: the paper says
square. Randomness comes from `generator` if given, else from torch's global RNG, which DataLoader seeds differently
in every worker (a passed generator is copied into each worker, which would repeat the same crops there).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, get_args

import numpy as np
import torch
from PIL import Image

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)

ResizeMode = Literal["shortest", "squash", "longest"]
Interpolation = Literal["bicubic", "bilinear"]
_RESAMPLE = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR}


def resize_shorter_side(image: Image.Image, size: int, interpolation: Interpolation = "bicubic") -> Image.Image:
    """torchvision `Resize(size, interpolation=BICUBIC)` on a PIL image: shorter side to `size`, aspect kept."""
    w, h = image.size
    short, long = (w, h) if w <= h else (h, w)
    if short == size:
        return image
    new_long = int(size * long / short)  # truncation, as torchvision
    new_w, new_h = (size, new_long) if w <= h else (new_long, size)
    return image.resize((new_w, new_h), _RESAMPLE[interpolation])


def resize_longer_side_and_pad(image: Image.Image, size: int, interpolation: Interpolation = "bicubic") -> Image.Image:
    """open_clip's "longest" mode: the longer side to `size` (aspect kept, sides rounded), centred on a black
    size x size RGB canvas."""
    w, h = image.size
    ratio = max(w / size, h / size)
    new_w, new_h = round(w / ratio), round(h / ratio)
    image = image.resize((new_w, new_h), _RESAMPLE[interpolation]).convert("RGB")
    canvas = Image.new("RGB", (size, size))
    canvas.paste(image, ((size - new_w) // 2, (size - new_h) // 2))
    return canvas


def center_crop(image: Image.Image, size: int) -> Image.Image:
    """torchvision `CenterCrop(size)` for an image whose sides are both >= size (always true after the resize).

    torchvision zero-pads smaller images first; after `resize_shorter_side` that case cannot occur, so it is refused.
    """
    w, h = image.size
    if w < size or h < size:
        raise ValueError(f"center_crop needs an image at least {size}x{size}, got {w}x{h}; resize it first")
    top = int(round((h - size) / 2.0))
    left = int(round((w - size) / 2.0))
    return image.crop((left, top, left + size, top + size))


def to_tensor(image: Image.Image) -> torch.Tensor:
    """An RGB PIL image -> float32 (3, H, W) in [0, 1], as torchvision `ToTensor`."""
    if image.mode != "RGB":
        raise ValueError(f"to_tensor expects an RGB image, got mode {image.mode!r}; call image.convert('RGB') first")
    hwc = torch.from_numpy(np.array(image, dtype=np.uint8))  # (H, W, 3), a writable copy
    return hwc.permute(2, 0, 1).contiguous().float().div(255)


def normalize(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """(x - mean) / std over the channel dimension -3 of (..., 3, H, W), in x's dtype."""
    mean_t = torch.as_tensor(mean, dtype=x.dtype).view(-1, 1, 1)
    std_t = torch.as_tensor(std, dtype=x.dtype).view(-1, 1, 1)
    return (x - mean_t) / std_t


def to_tensor_batch(
    images: np.ndarray, *, mean: Sequence[float] = OPENAI_MEAN, std: Sequence[float] = OPENAI_STD
) -> torch.Tensor:
    """Pre-rendered uint8 images (N, H, W, 3) -> normalised float32 (N, 3, H, W), with no resize or crop.

    Element for element the same float32 operations as `to_tensor` then `normalize`, so an image already at the
    model's resolution gives identical values on both paths.
    """
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"to_tensor_batch expects uint8 (N, H, W, 3), got {images.dtype} {images.shape}")
    nchw = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)
    x = nchw.contiguous().float().div(255)
    return normalize(x, mean, std)


@dataclass(frozen=True)
class ImageTransform:
    """PIL image -> normalised float32 (3, size, size). Eval: OpenAI's preprocessing; train: random square crop.

    A plain frozen dataclass so that it pickles into DataLoader workers and prints its settings.
    """

    size: int  # output side in pixels (the model's input resolution)
    train: bool = False  # random square crop instead of resize + center crop
    mean: tuple[float, float, float] = OPENAI_MEAN
    std: tuple[float, float, float] = OPENAI_STD
    resize_mode: ResizeMode = "shortest"  # eval only: see the module docstring
    interpolation: Interpolation = "bicubic"
    scale: tuple[float, float] = (0.9, 1.0)  # train only: crop area as a fraction of the largest square
    generator: torch.Generator | None = field(default=None, repr=False, compare=False)  # train only; None = global

    def __post_init__(self) -> None:
        if self.size <= 0:
            raise ValueError(f"size must be positive, got {self.size}")
        if not 0.0 < self.scale[0] <= self.scale[1] <= 1.0:
            raise ValueError(f"scale must satisfy 0 < low <= high <= 1, got {self.scale}")
        if self.resize_mode not in get_args(ResizeMode):
            raise ValueError(f"resize_mode {self.resize_mode!r} is not one of {', '.join(get_args(ResizeMode))}")
        if self.interpolation not in _RESAMPLE:
            raise ValueError(f"interpolation {self.interpolation!r} is not one of {', '.join(_RESAMPLE)}")
        object.__setattr__(self, "mean", tuple(float(m) for m in self.mean))
        object.__setattr__(self, "std", tuple(float(s) for s in self.std))

    def __call__(self, image: Image.Image) -> torch.Tensor:
        if self.train:
            image = self._random_square_crop(image)
        elif self.resize_mode == "squash":
            image = image.resize((self.size, self.size), _RESAMPLE[self.interpolation])
        elif self.resize_mode == "longest":
            image = resize_longer_side_and_pad(image, self.size, self.interpolation)
        else:
            image = center_crop(resize_shorter_side(image, self.size, self.interpolation), self.size)
        return normalize(to_tensor(image.convert("RGB")), self.mean, self.std)

    def _random_square_crop(self, image: Image.Image) -> Image.Image:
        w, h = image.size
        u = torch.rand(3, generator=self.generator).tolist()
        area = self.scale[0] + (self.scale[1] - self.scale[0]) * u[0]
        side = max(1, min(w, h, round(math.sqrt(area) * min(w, h))))
        left = int(u[1] * (w - side + 1))
        top = int(u[2] * (h - side + 1))
        # One resample straight from the crop box: no intermediate full-image resize, no double blur.
        return image.resize((self.size, self.size), _RESAMPLE[self.interpolation],
                            box=(left, top, left + side, top + side))


def image_transform(
    size: int,
    *,
    train: bool = False,
    mean: Sequence[float] = OPENAI_MEAN,
    std: Sequence[float] = OPENAI_STD,
    resize_mode: ResizeMode = "shortest",
    interpolation: Interpolation = "bicubic",
    generator: torch.Generator | None = None,
) -> ImageTransform:
    """The preprocessing for a model of input resolution `size`; see the module docstring for exact semantics."""
    return ImageTransform(size=size, train=train, mean=tuple(mean), std=tuple(std), resize_mode=resize_mode,
                          interpolation=interpolation, generator=generator)


@dataclass(frozen=True)
class Preprocess:
    """How a checkpoint's images are to be prepared, as its training prepared them (OpenAI's unless it says so)."""

    mean: tuple[float, float, float] = OPENAI_MEAN
    std: tuple[float, float, float] = OPENAI_STD
    resize_mode: ResizeMode = "shortest"
    interpolation: Interpolation = "bicubic"

    def __post_init__(self) -> None:
        for name in ("mean", "std"):
            values = getattr(self, name)
            if isinstance(values, (int, float)) and not isinstance(values, bool):
                values = (values,) * 3  # one number for every channel, as open_clip and HF accept
            if (not isinstance(values, (list, tuple)) or len(values) != 3
                    or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)):
                raise ValueError(f"{name} must be three numbers, one per RGB channel (or one for all), got "
                                 f"{values!r}")
            object.__setattr__(self, name, tuple(float(v) for v in values))
        if not all(s > 0 for s in self.std):
            raise ValueError(f"std must be positive, got {self.std}")
        image_transform(1, resize_mode=self.resize_mode, interpolation=self.interpolation)  # checks both names

    def transform(self, size: int, *, train: bool = False, generator: torch.Generator | None = None) -> ImageTransform:
        """The image transform for a model of input resolution `size` with these settings."""
        return image_transform(size, train=train, mean=self.mean, std=self.std, resize_mode=self.resize_mode,
                               interpolation=self.interpolation, generator=generator)
