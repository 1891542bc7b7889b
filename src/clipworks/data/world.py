"""The built-in world: procedurally generated image–caption pairs for `clipworks demo`, tests and tutorials.

Not from the paper. CLIP's claim (Radford et al. 2021, §3.1) is that natural-language supervision gives classifiers
for concepts named only in text. This world makes that claim checkable on a CPU in minutes: each image shows one to
three flat shapes of one colour, and its caption names the colour and shape (always) plus, sometimes, size, count,
position and background, in varied wording. A fixed set of colour×shape pairs is held out: no training image or
caption ever shows, say, a "red triangle", yet red things and triangles are common, so a model that learned words
compositionally can pick "red triangle" out of all 48 pairs zero-shot.

Every sample is a pure function of (config, split, index): sample 7 of "train" is the same image and caption however
many samples are drawn, in any order, in any process. Shapes are drawn at `supersample` times the image size and
box-filtered down, for anti-aliased edges without resampling cost.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import math
import os
import random
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from ..errors import ConfigError
from ..io.files import write_dir_atomic, write_npz_atomic

Split = Literal["train", "val", "heldout"]
SPLITS: tuple[str, ...] = ("train", "val", "heldout")
# Rendering styles. Training uses "flat"; the others are distribution shifts of the same scenes (same attributes,
# geometry and caption) for robustness evaluation, in the spirit of the paper's Sec. 3.3 (ImageNet-Sketch, -R, ...).
Style = Literal["flat", "outline", "texture", "noise", "unseen-background"]
STYLES: tuple[str, ...] = ("flat", "outline", "texture", "noise", "unseen-background")

# Saturated, mutually distant RGB values; each sample jitters them by up to `colour_jitter` per channel.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30), "green": (40, 170, 50), "blue": (40, 70, 220), "yellow": (245, 215, 35),
    "purple": (140, 50, 180), "orange": (245, 135, 25), "white": (245, 245, 245), "black": (20, 20, 20),
}
# Background names share no word with the object colours, so "gray" in a caption never means the object.
BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "gray": (128, 128, 128), "beige": (215, 200, 165), "cyan": (160, 215, 225), "dark gray": (62, 62, 66),
    "pink": (235, 175, 195),
}
# Backgrounds of the "unseen-background" style only: never in training; drawn as a vertical gradient of two of them.
UNSEEN_BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "teal": (20, 110, 110), "olive": (120, 120, 40), "lavender": (190, 180, 230), "mint": (170, 230, 190),
    "navy": (25, 30, 90), "brown": (110, 70, 40),
}
MIN_CONTRAST = 100.0  # RGB distance below which a background is never paired with an object colour
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "cross", "heart")
PLURALS: dict[str, str] = {s: s + "es" if s.endswith(("s", "x", "ch", "sh")) else s + "s" for s in SHAPES}
SIZES: tuple[str, ...] = ("small", "large")
POSITIONS: tuple[str, ...] = ("left", "right", "top", "bottom", "center")
NUMBER_WORDS: dict[int, str] = {1: "one", 2: "two", 3: "three"}
# One pair per colour; "triangle" and "star" twice, the other shapes once: every colour and shape keeps partners.
HELDOUT_PAIRS: tuple[tuple[str, str], ...] = (
    ("red", "triangle"), ("green", "star"), ("blue", "heart"), ("yellow", "circle"),
    ("purple", "cross"), ("orange", "square"), ("white", "triangle"), ("black", "star"),
)

# Where a group sits, in unit coordinates (x, y); groups of 2-3 spread along y for left/right, else along x.
_ANCHORS = {"left": (0.25, 0.5), "right": (0.75, 0.5), "top": (0.5, 0.25), "bottom": (0.5, 0.75), "center": (0.5, 0.5)}
_SPACING = {1: 0.0, 2: 0.42, 3: 0.32}  # distance between neighbouring objects of a group, in image widths
# Object radius in image widths by (size, count): three large shapes must still fit in a row without touching.
_RADIUS = {("small", 1): 0.11, ("small", 2): 0.10, ("small", 3): 0.09,
           ("large", 1): 0.20, ("large", 2): 0.165, ("large", 3): 0.13}
_POSITION_PHRASES = {"left": ("on the left", "on the left side"), "right": ("on the right", "on the right side"),
                     "top": ("at the top",), "bottom": ("at the bottom",), "center": ("in the center", "in the middle")}
# Sentence frames, drawn uniformly; the bare phrase is listed twice to be the most common.
_FRAMES = ("{}", "{}", "a photo of {}", "a picture of {}", "an image of {}", "a drawing of {}", "there {be} {}")
_CACHE_VERSION = 1  # bump when rendering or captions change, so old caches are not reused


@dataclass(frozen=True)
class WorldConfig:
    seed: int = 0  # changes every sample; the held-out pairs stay fixed
    image_size: int = 64  # output side in pixels
    supersample: int = 4  # draw at image_size * supersample, then box-filter down (anti-aliasing)
    colour_jitter: int = 12  # max per-channel deviation of an object's RGB from its named colour
    background_jitter: int = 8
    heldout_pairs: tuple[tuple[str, str], ...] = HELDOUT_PAIRS
    style: Style = "flat"  # rendering only (see STYLES); captions and attributes do not change


@dataclass(frozen=True)
class Attributes:
    colour: str
    shape: str
    size: str  # "small" | "large"
    position: str  # one of POSITIONS
    count: int  # 1..3 objects, all of this colour, shape and size
    background: str  # a BACKGROUNDS name, never close to `colour`
    variation: int  # seeds the jitter (exact colours, offsets, radii) so equal attributes give distinct images


@dataclass(frozen=True)
class Sample:
    attributes: Attributes
    caption: str
    image: Image.Image


@dataclass(frozen=True)
class ZeroShotTask:
    """Classes and prompts for one zero-shot test, in the form `zeroshot.zero_shot_classifier` takes.

    `templates` are callables class name -> prompt (all classes share them, so they are averaged per class); they
    build phrases with the caption code itself, so prompts read like captions ("an orange star", "two red hearts").
    """

    name: str
    classnames: tuple[str, ...]
    templates: tuple[Callable[[str], str], ...]
    split: str  # the split it is meant for: "heldout" for combinations, "val" otherwise

    def label(self, attributes: Attributes) -> int:
        return self.classnames.index(class_name(self.name, attributes))


def article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def noun_phrase(colour: str, shape: str, *, count: int = 1, size: str | None = None, colour_last: bool = False,
                say_one: bool = False) -> str:
    """'a red star', 'an orange cross', 'two small blue circles', 'three crosses in green', 'one large heart'."""
    noun = shape if count == 1 else PLURALS[shape]
    words = ([size] if size else []) + ([noun] if colour_last else [colour, noun])
    core = " ".join(words) + (f" in {colour}" if colour_last else "")
    determiner = NUMBER_WORDS[count] if count > 1 or say_one else article(core)
    return f"{determiner} {core}"


def class_name(task: str, a: Attributes) -> str:
    """The class of `a` under a zero-shot task: its colour, shape, size, count word, position or 'colour shape'."""
    names = {"colour": a.colour, "shape": a.shape, "size": a.size, "count": NUMBER_WORDS[a.count],
             "position": a.position, "combination": f"{a.colour} {a.shape}"}
    return names[task]


class World:
    """Samples, bulk arrays, file exports and zero-shot tasks of one configured world."""

    def __init__(self, config: WorldConfig = WorldConfig()) -> None:
        if config.style not in STYLES:
            raise ConfigError(f"unknown style {config.style!r}; choose one of {', '.join(STYLES)}")
        for colour, shape in config.heldout_pairs:
            if colour not in COLOURS or shape not in SHAPES:
                raise ConfigError(f"held-out pair ({colour}, {shape}) is not a known colour and shape")
        heldout = set(config.heldout_pairs)
        train = [(c, s) for c in COLOURS for s in SHAPES if (c, s) not in heldout]
        for name in [*COLOURS, *SHAPES]:
            if not any(name in pair for pair in train):
                raise ConfigError(f"holding out every pair with {name!r} leaves no training example of it")
        self.config = config
        self.heldout_pairs: tuple[tuple[str, str], ...] = tuple(config.heldout_pairs)
        self.train_pairs: tuple[tuple[str, str], ...] = tuple(train)
        # Backgrounds far enough from each object colour to leave the object visible.
        self.backgrounds_for: dict[str, tuple[str, ...]] = {
            c: tuple(b for b, rgb in BACKGROUNDS.items() if _distance(rgb, COLOURS[c]) >= MIN_CONTRAST)
            for c in COLOURS}

    @property
    def colours(self) -> tuple[str, ...]:
        return tuple(COLOURS)

    @property
    def shapes(self) -> tuple[str, ...]:
        return SHAPES

    # ---------------------------------------------------------------- samples
    def sample(self, split: Split, index: int) -> Sample:
        rng = self._rng(split, index)
        attributes = self._draw_attributes(split, rng)
        return Sample(attributes, self.caption(attributes, rng), self.render(attributes))

    def _rng(self, split: str, index: int) -> random.Random:
        if split not in SPLITS:
            raise ConfigError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
        if index < 0:
            raise IndexError(f"sample index must be >= 0, got {index}")
        # A str seed is hashed with SHA-512 by `random`, so this is stable across processes and Python runs.
        return random.Random(f"clipworks-world:{self.config.seed}:{split}:{index}")

    def _draw_attributes(self, split: str, rng: random.Random) -> Attributes:
        colour, shape = rng.choice(self.heldout_pairs if split == "heldout" else self.train_pairs)
        return Attributes(colour=colour, shape=shape, size=rng.choice(SIZES), position=rng.choice(POSITIONS),
                          count=rng.choice((1, 2, 3)), background=rng.choice(self.backgrounds_for[colour]),
                          variation=rng.getrandbits(32))

    def caption(self, attributes: Attributes, rng: random.Random) -> str:
        """A caption that always names colour and shape; size, position and background are each said sometimes."""
        a = attributes
        phrase = noun_phrase(a.colour, a.shape, count=a.count, size=a.size if rng.random() < 0.5 else None,
                             colour_last=rng.random() < 0.15, say_one=rng.random() < 0.2)
        if rng.random() < 0.5:
            phrase += " " + rng.choice(_POSITION_PHRASES[a.position])
        if rng.random() < 0.3:
            phrase += f" {rng.choice(('on', 'against'))} {article(a.background)} {a.background} background"
        return rng.choice(_FRAMES).format(phrase, be="is" if a.count == 1 else "are")

    def render(self, attributes: Attributes) -> Image.Image:
        """The RGB image of `attributes`, image_size square; jitter comes from `attributes.variation` alone.

        Every style draws the same geometry and colours; only how the shapes and background are painted differs.
        """
        a, cfg = attributes, self.config
        rng = random.Random(a.variation)
        canvas = cfg.image_size * cfg.supersample
        background = _jitter(BACKGROUNDS[a.background], cfg.background_jitter, rng)
        image = Image.new("RGB", (canvas, canvas), background)
        # Flat (and noise) shapes are painted straight onto the image; the other styles paint a mask to composite.
        direct = cfg.style in ("flat", "noise")
        mask = None if direct else Image.new("L", (canvas, canvas), 0)
        draw = ImageDraw.Draw(image if mask is None else mask)
        fill = _jitter(COLOURS[a.colour], cfg.colour_jitter, rng)
        radius = _RADIUS[(a.size, a.count)] * rng.uniform(0.94, 1.06)
        along_y = a.position in ("left", "right")
        # A lone object wanders +-0.04 both ways; a group only across its row, each member +-0.01 along it.
        ax, ay = _ANCHORS[a.position]
        across, along = rng.uniform(-0.04, 0.04), rng.uniform(-0.04, 0.04) if a.count == 1 else 0.0
        ax, ay = (ax + across, ay + along) if along_y else (ax + along, ay + across)
        for k in range(a.count):
            offset = (k - (a.count - 1) / 2) * _SPACING[a.count] + (rng.uniform(-0.01, 0.01) if a.count > 1 else 0.0)
            x, y = (ax, ay + offset) if along_y else (ax + offset, ay)
            _draw_shape(draw, a.shape, x * canvas, y * canvas, radius * canvas, fill if mask is None else 255)
        if cfg.style == "flat":
            return image.reduce(cfg.supersample)
        # A separate generator for the style's own randomness leaves the flat draws above untouched.
        style_rng = random.Random(f"{a.variation}:{cfg.style}")
        if mask is not None:
            image = _stylise(cfg.style, mask, background, fill, a.colour, cfg.supersample, style_rng)
        image = image.reduce(cfg.supersample)
        if cfg.style == "noise":
            noise = np.random.default_rng(style_rng.getrandbits(64)).normal(0.0, 32.0, (*image.size[::-1], 3))
            image = Image.fromarray(np.clip(np.asarray(image) + noise, 0, 255).round().astype(np.uint8))
        return image

    # ---------------------------------------------------------------- bulk data
    def arrays(self, split: Split, n: int, *, cache_dir: str | os.PathLike | None = None
               ) -> tuple[np.ndarray, list[str], list[Attributes]]:
        """Samples 0..n-1 of `split` as uint8 images (n, H, W, 3), captions and attributes.

        With `cache_dir`, the result is stored there under a hash of (config, split, n) and loaded on later calls.
        """
        path = None
        if cache_dir is not None:
            config = dataclasses.asdict(self.config)
            if config["style"] == "flat":
                del config["style"]  # caches written before styles existed stay valid
            key = json.dumps([config, split, n, _CACHE_VERSION], sort_keys=True)
            digest = hashlib.sha256(key.encode()).hexdigest()[:16]
            path = Path(cache_dir) / f"world-{split}-{n}-{digest}.npz"
            if path.exists():
                with np.load(path, allow_pickle=False) as f:
                    attributes = [Attributes(**d) for d in json.loads(str(f["attributes"]))]
                    return f["images"], [str(c) for c in f["captions"]], attributes
        size = self.config.image_size
        images = np.empty((n, size, size, 3), dtype=np.uint8)
        captions, attributes = [], []
        for i in range(n):
            s = self.sample(split, i)
            images[i] = np.asarray(s.image)
            captions.append(s.caption)
            attributes.append(s.attributes)
        if path is not None:
            # Compressed: flat-coloured images shrink ~50x and load as fast.
            path.parent.mkdir(parents=True, exist_ok=True)
            write_npz_atomic(path, compressed=True, images=images, captions=np.array(captions, dtype=str),
                             attributes=np.array(json.dumps([dataclasses.asdict(a) for a in attributes])))
        return images, captions, attributes

    def export(self, split: Split, n: int, out_dir: str | os.PathLike, *, task: str = "shape",
               class_folders: bool = False) -> Path:
        """Write samples 0..n-1 as PNGs with `captions.csv` (filepath,caption) and `labels.csv` (filepath,label).

        Labels are class names of zero-shot `task`. PNGs go to `images/`, or with `class_folders` to
        `<task>/<class name>/`, the layout `ImageFolderDataset` reads. Paths in the CSVs are relative to `out_dir`.
        """
        if task not in ZERO_SHOT_TASKS:
            raise ConfigError(f"unknown task {task!r}; choose one of {', '.join(ZERO_SHOT_TASKS)}")

        def write(tmp: Path) -> None:
            rows = []
            for i in range(n):
                s = self.sample(split, i)
                label = class_name(task, s.attributes)
                relative = Path(task, label, f"{i:06d}.png") if class_folders else Path("images", f"{i:06d}.png")
                (tmp / relative).parent.mkdir(parents=True, exist_ok=True)
                s.image.save(tmp / relative)
                rows.append((relative.as_posix(), s.caption, label))
            for name, header, column in (("captions.csv", "caption", 1), ("labels.csv", "label", 2)):
                with open(tmp / name, "w", newline="", encoding="utf-8") as f:
                    writer = csv.writer(f)
                    writer.writerow(["filepath", header])
                    writer.writerows((row[0], row[column]) for row in rows)

        # Written beside `out_dir`, then moved into it: a full disk leaves nothing of a half-written export.
        return write_dir_atomic(out_dir, write, keep_others=True, what=f"{n} images and their CSVs")

    # ---------------------------------------------------------------- zero-shot
    def zero_shot_tasks(self) -> dict[str, ZeroShotTask]:
        """colour, shape, size, count, position (on "val") and combination (all 48 pairs, on "heldout")."""
        pairs = self.train_pairs
        # Colour, shape and combination prompts are ensembled over counts too: singular and plural nouns
        # ("cross", "crosses") are different tokens, and images show one to three objects.
        counts = tuple(NUMBER_WORDS)
        return {
            "colour": ZeroShotTask("colour", self.colours, tuple(
                partial(_colour_prompt, shape=s, count=n) for s in self.shapes for n in counts), "val"),
            "shape": ZeroShotTask("shape", self.shapes, tuple(
                partial(_shape_prompt, colour=c, count=n) for c in self.colours for n in counts), "val"),
            "size": ZeroShotTask("size", SIZES, tuple(partial(_size_prompt, colour=c, shape=s) for c, s in pairs),
                                 "val"),
            "count": ZeroShotTask("count", tuple(NUMBER_WORDS.values()),
                                  tuple(partial(_count_prompt, colour=c, shape=s) for c, s in pairs), "val"),
            "position": ZeroShotTask("position", POSITIONS,
                                     tuple(partial(_position_prompt, colour=c, shape=s) for c, s in pairs), "val"),
            "combination": ZeroShotTask("combination", tuple(f"{c} {s}" for c in self.colours for s in self.shapes),
                                        tuple(partial(_combination_prompt, frame=f, count=n)
                                              for f in ("{}", "a photo of {}") for n in counts),
                                        "heldout"),
        }


ZERO_SHOT_TASKS: tuple[str, ...] = ("colour", "shape", "size", "count", "position", "combination")


# Prompt builders: module-level functions (not lambdas) so tasks print and pickle.
def _colour_prompt(colour: str, *, shape: str, count: int = 1) -> str:
    return noun_phrase(colour, shape, count=count)


def _shape_prompt(shape: str, *, colour: str, count: int = 1) -> str:
    return noun_phrase(colour, shape, count=count)


def _size_prompt(size: str, *, colour: str, shape: str) -> str:
    return noun_phrase(colour, shape, size=size)


def _count_prompt(number_word: str, *, colour: str, shape: str) -> str:
    count = {w: k for k, w in NUMBER_WORDS.items()}[number_word]
    return noun_phrase(colour, shape, count=count)


def _position_prompt(position: str, *, colour: str, shape: str) -> str:
    return f"{noun_phrase(colour, shape)} {_POSITION_PHRASES[position][0]}"


def _combination_prompt(pair: str, *, frame: str, count: int = 1) -> str:
    colour, shape = pair.split(" ", 1)
    return frame.format(noun_phrase(colour, shape, count=count))


# ---------------------------------------------------------------- drawing helpers
def _distance(a: tuple[int, int, int], b: tuple[int, int, int]) -> float:
    return sum((x - y) ** 2 for x, y in zip(a, b)) ** 0.5


def _jitter(rgb: tuple[int, int, int], amount: int, rng: random.Random) -> tuple[int, int, int]:
    return tuple(min(255, max(0, v + rng.randint(-amount, amount))) for v in rgb)


def _star(cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    # Five points at 1.05 r, notches at 0.45 r, the first point straight up.
    return [(cx + rr * math.cos(t), cy + rr * math.sin(t))
            for k in range(10) for rr, t in [(r * (1.05 if k % 2 == 0 else 0.45), -math.pi / 2 + k * math.pi / 5)]]


def _draw_shape(draw: ImageDraw.ImageDraw, shape: str, cx: float, cy: float, r: float,
                fill: tuple[int, int, int]) -> None:
    """One filled shape centred at (cx, cy) in pixels, fitting a circle of radius ~r."""
    if shape == "circle":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)
    elif shape == "square":
        h = 0.85 * r  # equal-ish area to the circle rather than the same bounding box
        draw.rectangle((cx - h, cy - h, cx + h, cy + h), fill=fill)
    elif shape == "triangle":
        # Equilateral, apex up; centred on its bounding box, not its centroid, so it fills the same region.
        R = 1.15 * r
        y0 = cy + R / 4
        draw.polygon([(cx, y0 - R), (cx + R * 0.866, y0 + R / 2), (cx - R * 0.866, y0 + R / 2)], fill=fill)
    elif shape == "star":
        draw.polygon(_star(cx, cy, r), fill=fill)
    elif shape == "cross":
        a = 0.34 * r  # half the arm width: a plus sign, arms reaching r
        draw.rectangle((cx - r, cy - a, cx + r, cy + a), fill=fill)
        draw.rectangle((cx - a, cy - r, cx + a, cy + r), fill=fill)
    elif shape == "heart":
        lobe = 0.52 * r  # two lobes on top, a point at the bottom
        for sx in (-1, 1):
            x = cx + sx * 0.48 * r
            draw.ellipse((x - lobe, cy - 0.3 * r - lobe, x + lobe, cy - 0.3 * r + lobe), fill=fill)
        draw.polygon([(cx - 0.98 * r, cy - 0.15 * r), (cx + 0.98 * r, cy - 0.15 * r), (cx, cy + 0.95 * r)], fill=fill)
    else:
        raise ConfigError(f"unknown shape {shape!r}; known: {', '.join(SHAPES)}")


def _stylise(style: str, mask: Image.Image, background: tuple[int, int, int], fill: tuple[int, int, int],
             colour: str, supersample: int, rng: random.Random) -> Image.Image:
    """Composite the shapes' mask (L, 255 inside) onto a canvas in `style`, at the supersampled size."""
    size = mask.size[0]
    if style == "outline":
        # Thick stroke: the mask minus its erosion by ~1.5 output pixels (a 3x3 min filter shrinks it by one pixel).
        inner = mask
        for _ in range(max(1, round(1.5 * supersample))):
            inner = inner.filter(ImageFilter.MinFilter(3))
        edge = Image.fromarray(np.asarray(mask) & ~np.asarray(inner))
        return Image.composite(Image.new("RGB", mask.size, fill), Image.new("RGB", mask.size, background), edge)
    if style == "texture":
        # Stripes or dots of the object's colour over the background, about 3 output pixels per period.
        period = 6 * supersample
        yy, xx = np.mgrid[0:size, 0:size]
        if rng.random() < 0.5:
            pattern = ((xx + yy) // (period // 2)) % 2 == 0
        else:
            pattern = (xx % period - period / 2) ** 2 + (yy % period - period / 2) ** 2 < (period / 3) ** 2
        paint = np.where(pattern[..., None], np.array(fill, np.uint8), np.array(background, np.uint8))
        return Image.composite(Image.fromarray(paint.astype(np.uint8)), Image.new("RGB", mask.size, background), mask)
    if style == "unseen-background":
        names = [b for b, rgb in UNSEEN_BACKGROUNDS.items() if _distance(rgb, COLOURS[colour]) >= MIN_CONTRAST]
        top, bottom = (np.array(UNSEEN_BACKGROUNDS[b], np.float64) for b in rng.sample(names, 2))
        t = np.linspace(0.0, 1.0, size)[:, None, None]
        gradient = np.broadcast_to((1 - t) * top + t * bottom, (size, size, 3)).round().astype(np.uint8)
        return Image.composite(Image.new("RGB", mask.size, fill), Image.fromarray(np.ascontiguousarray(gradient)),
                               mask)
    raise ConfigError(f"unknown style {style!r}; choose one of {', '.join(STYLES)}")
