"""Datasets: the user's image–caption CSV/TSV, labelled images (class folders or a labels CSV), the built-in world.

The CSV layout is open_clip's (`--csv-img-key filepath --csv-caption-key title` there; ours defaults to
`filepath,caption`). Relative image paths are resolved against the CSV's folder, or `root` when given.

Unreadable images (missing, not an image, truncated) are skipped, not fatal: `__getitem__` returns None for them
and `collate_skip_bad` drops the Nones from the batch. Each dataset counts the bad images it met (`n_bad`, in this
process: DataLoader workers keep their own counts), and stops with a `DataError` naming examples once more than half
of the images it checked were bad, which almost always means wrong paths rather than a few damaged files.
`scan()` checks every image up front, in a thread per core. It decodes (at 1/8 scale for JPEG), because
`Image.verify()` passes truncated JPEGs.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from tqdm import tqdm

from ..errors import DataError
from ..models.transforms import OPENAI_MEAN, OPENAI_STD, to_tensor_batch
from .images import UnreadableImage, check_image, open_image
from .tables import read_table, read_table_with_lines
from .world import World

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
MAX_BAD_FRACTION = 0.5  # more bad images than this, among those checked, stops with a DataError
_MIN_CHECKED = 32  # the lazy check waits for this many images (or the whole set, if smaller) before judging
_SCAN_BLOCK = 4096  # images `scan` hands its threads at a time (a future per image, not per dataset)

Transform = Callable[[Image.Image], torch.Tensor]


class _ImageFiles(Dataset):
    """Shared bookkeeping: a list of image paths, bad-image counts and the >50% bad stop."""

    def __init__(self, paths: list[Path], *, source: str) -> None:
        self.paths = paths
        self.source = source  # what the paths came from, for error messages
        self.n_checked = 0
        self.bad: list[tuple[Path, str]] = []  # (path, reason) of every bad image met in this process

    @property
    def n_bad(self) -> int:
        return len(self.bad)

    def __len__(self) -> int:
        return len(self.paths)

    def _load(self, index: int) -> Image.Image | None:
        try:
            image, reason = open_image(self.paths[index]), None
        except UnreadableImage as e:
            image, reason = None, e.reason
        self._record(self.paths[index], reason)
        if reason is not None and self.n_checked >= min(_MIN_CHECKED, len(self)):
            self._stop_if_mostly_bad(self.bad, self.n_checked)
        return image

    def _record(self, path: Path, reason: str | None) -> None:
        self.n_checked += 1
        if reason is not None:
            self.bad.append((path, reason))
            log.warning("skipping unreadable image %s (%s)", path, reason)

    def _stop_if_mostly_bad(self, bad: list[tuple[Path, str]], n_checked: int) -> None:
        if len(bad) > MAX_BAD_FRACTION * n_checked:
            examples = "; ".join(f"{p} ({reason})" for p, reason in bad[:3])
            raise DataError(f"{len(bad)} of {n_checked} images from {self.source} could not be read, "
                            f"e.g. {examples}. Check that the paths are right: relative paths are resolved "
                            "against the data file's folder, or against `root` when the dataset is given one.")

    def _problem(self, path: Path) -> str | None:
        """Why the file at `path` cannot be used (None if it can): what `scan` checks each file with."""
        return check_image(path)

    def scan(self, *, threads: int | None = None, progress: bool = False) -> list[Path]:
        """Decode every image; drop the bad ones from the dataset and return their paths (in the dataset's order).

        The images are decoded in `threads` threads (default: one per core; PIL decodes without the GIL), a block
        at a time, with a progress bar if `progress`. Raises DataError if more than half are bad.
        """
        threads = threads or os.cpu_count() or 1
        keep, bad = [], []
        with ThreadPoolExecutor(threads) as pool, tqdm(total=len(self.paths), desc=f"checking {self.source}",
                                                       unit="image", disable=not progress, leave=False) as bar:
            for start in range(0, len(self.paths), _SCAN_BLOCK):
                block = self.paths[start:start + _SCAN_BLOCK]
                for i, (path, reason) in enumerate(zip(block, pool.map(self._problem, block)), start):
                    self._record(path, reason)
                    if reason is None:
                        keep.append(i)
                    else:
                        bad.append((path, reason))
                bar.update(len(block))
        self._stop_if_mostly_bad(bad, len(self.paths))
        self._keep(keep)
        return [p for p, _ in bad]

    def _keep(self, indices: list[int]) -> None:
        self.paths = [self.paths[i] for i in indices]


def resolve_path(value: str, base: Path) -> Path:
    """`value` as a path: absolute as given, relative to `base` otherwise (a CSV's own folder)."""
    path = Path(value).expanduser()
    return path if path.is_absolute() else base / path


class CsvDataset(_ImageFiles):
    """(image tensor, caption) pairs from a CSV/TSV; caption is token ids if `tokenize_fn` is given, else a str."""

    def __init__(self, path: str | os.PathLike, *, transform: Transform,
                 tokenize_fn: Callable[[list[str]], torch.Tensor] | None = None, image_key: str = "filepath",
                 caption_key: str = "caption", sep: str | None = None, root: str | os.PathLike | None = None) -> None:
        rows = read_table(path, columns=(image_key, caption_key), flags="--image-key/--caption-key", sep=sep)
        base = Path(root) if root is not None else Path(path).parent
        super().__init__([resolve_path(r[image_key], base) for r in rows], source=str(path))
        self.captions = [r[caption_key] for r in rows]
        self.transform = transform
        self.tokenize_fn = tokenize_fn  # list[str] -> (N, context) ids, as clipworks.tokenize
        # With a seed, a training transform's random crop of sample i in epoch e is drawn from (seed, e, i) alone:
        # the same crop whichever process or worker loads it, so a resumed run replays its data exactly.
        self.crop_seed: int | None = None
        self.epoch = 0

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor | str] | None:
        image = self._load(index)
        if image is None:
            return None
        caption = self.captions[index]
        transform = self.transform
        if self.crop_seed is not None and getattr(transform, "train", False):
            generator = torch.Generator().manual_seed(hash((self.crop_seed, self.epoch, index)) & (2**63 - 1))
            transform = dataclasses.replace(transform, generator=generator)
        return transform(image), caption if self.tokenize_fn is None else self.tokenize_fn([caption])[0]

    def _keep(self, indices: list[int]) -> None:
        super()._keep(indices)
        self.captions = [self.captions[i] for i in indices]


class LabelledImages(_ImageFiles):
    """(image tensor, class index) pairs; `classes[i]` is the name of class i."""

    def __init__(self, paths: list[Path], labels: list[int], classes: list[str], *, transform: Transform | None,
                 source: str) -> None:
        super().__init__(paths, source=source)
        self.labels = labels
        self.classes = classes
        self.transform = transform

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int] | None:
        image = self._load(index)
        return None if image is None else (self.transform(image), self.labels[index])

    def _keep(self, indices: list[int]) -> None:
        super()._keep(indices)
        self.labels = [self.labels[i] for i in indices]


class ImageFolderDataset(LabelledImages):
    """root/<class name>/**/<image>: classes are the sub-folder names, sorted. Non-image files are skipped."""

    def __init__(self, root: str | os.PathLike, transform: Transform) -> None:
        root = Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f"image folder {root} does not exist")
        classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        if not classes:
            raise DataError(f"{root} has no sub-folders; expected one folder per class, e.g. {root}/cat/0001.jpg")
        paths, labels = [], []
        self.n_skipped = 0  # files without an image extension
        for label, name in enumerate(classes):
            for file in sorted(p for p in (root / name).rglob("*") if p.is_file()):
                if file.suffix.lower() in IMAGE_EXTENSIONS:
                    paths.append(file)
                    labels.append(label)
                else:
                    self.n_skipped += 1
        if not paths:
            raise DataError(f"no images under {root} ({self.n_skipped} other files skipped); image files end in "
                            f"{', '.join(sorted(IMAGE_EXTENSIONS))}")
        super().__init__(paths, labels, classes, transform=transform, source=str(root))


class LabelCsvDataset(LabelledImages):
    """A CSV/TSV of image path and class name; classes are the sorted distinct labels unless `classes` is given."""

    def __init__(self, path: str | os.PathLike, *, transform: Transform, image_key: str = "filepath",
                 label_key: str = "label", classes: Sequence[str] | None = None, sep: str | None = None,
                 root: str | os.PathLike | None = None) -> None:
        numbered = read_table_with_lines(path, columns=(image_key, label_key), flags="--image-key/--label-key",
                                         sep=sep)
        rows = [row for _, row in numbered]
        base = Path(root) if root is not None else Path(path).parent
        names = list(classes) if classes is not None else sorted({r[label_key] for r in rows})
        known = set(names)
        unknown = [(line, row[label_key]) for line, row in numbered if row[label_key] not in known]
        if unknown:
            line, label = unknown[0]
            distinct = sorted({label for _, label in unknown})
            raise DataError(f"{path}, line {line}: label {label!r} is not among the given classes ({len(unknown)} "
                            f"rows have such labels: {', '.join(distinct[:5])}); add them to the class names, or "
                            "correct the rows")
        index = {name: i for i, name in enumerate(names)}
        super().__init__([resolve_path(r[image_key], base) for r in rows], [index[r[label_key]] for r in rows], names,
                         transform=transform, source=str(path))


def collate_skip_bad(batch: list[tuple[torch.Tensor, Any] | None]) -> tuple[torch.Tensor, Any] | None:
    """DataLoader collate that drops unreadable samples (None). Returns None if the whole batch was bad.

    Images are stacked to (B, 3, H, W); the second items become a (B, ...) tensor for token ids or labels, and
    stay a list for str captions.
    """
    kept = [item for item in batch if item is not None]
    if not kept:
        return None
    images = torch.stack([image for image, _ in kept])
    seconds = [second for _, second in kept]
    if isinstance(seconds[0], torch.Tensor):
        return images, torch.stack(seconds)
    if isinstance(seconds[0], int):
        return images, torch.tensor(seconds)
    return images, seconds


class WorldDataset(Dataset):
    """The world's pre-rendered uint8 images (N, H, W, 3) and token ids (N, context), normalised per access.

    `batch(indices)` normalises a whole batch in one call: the fast path for training loops that index directly.
    """

    def __init__(self, images: np.ndarray, tokens: torch.Tensor, *, mean: Sequence[float] = OPENAI_MEAN,
                 std: Sequence[float] = OPENAI_STD, captions: Sequence[str] | None = None) -> None:
        if len(images) != len(tokens):
            raise ValueError(f"{len(images)} images but {len(tokens)} token rows; they must pair up one to one")
        self.images = images
        self.tokens = tokens
        self.mean, self.std = tuple(mean), tuple(std)
        self.captions = list(captions) if captions is not None else None

    @classmethod
    def from_world(cls, world: World, split: str, n: int, tokenize_fn: Callable[[list[str]], torch.Tensor], *,
                   cache_dir: str | os.PathLike | None = None) -> WorldDataset:
        images, captions, _ = world.arrays(split, n, cache_dir=cache_dir)
        return cls(images, tokenize_fn(captions), captions=captions)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return to_tensor_batch(self.images[index:index + 1], mean=self.mean, std=self.std)[0], self.tokens[index]

    def batch(self, indices: torch.Tensor | Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 3, H, W) normalised images and (B, context) token ids for `indices`."""
        idx = torch.as_tensor(indices, dtype=torch.long)
        return to_tensor_batch(self.images[idx.numpy()], mean=self.mean, std=self.std), self.tokens[idx]


def open_labelled(data: str | os.PathLike, transform: Any, classnames: Sequence[str] | None = None
                  ) -> LabelledImages:
    """A folder with one sub-folder per class, or a CSV/TSV of filepath,label (`transform` may be set later).

    With `classnames` for a folder: names equal to the folder names (any order) label by name; names that include
    every folder name and more (ImageNet-R's 200 folders among ImageNet's 1,000 names) classify among all the names,
    each image labelled by its folder's index in `classnames`; a list of entirely different names (ImageNet's
    WordNet-id folders with readable names) labels the sorted folders by position.
    """
    path = Path(data)
    if path.is_file():
        return LabelCsvDataset(path, transform=transform, classes=classnames)
    if not path.exists():
        raise FileNotFoundError(f"dataset {path} does not exist (expected a folder of class folders or a CSV)")
    dataset = ImageFolderDataset(path, transform)
    if classnames is None or set(classnames) == set(dataset.classes):
        return dataset
    names, folders = list(classnames), dataset.classes
    if set(folders) < set(names):  # a subset of the classes: label by name among all of them
        index = {name: i for i, name in enumerate(names)}
        dataset.labels = [index[folders[label]] for label in dataset.labels]
        dataset.classes = names
        return dataset
    if len(names) != len(folders) or set(names) & set(folders):
        missing = sorted(set(folders) - set(names))
        raise DataError(f"the class names ({len(names)}) do not match the {len(folders)} class folders of {path}"
                        + (f"; folders without a name: {', '.join(missing[:5])}" if missing else "")
                        + ". Give one name per folder, either the folder names themselves (or more names that include "
                          "them all) or, in sorted folder order, a readable name for each; or leave out the class "
                          "names to use the folder names.")
    dataset.classes = names
    return dataset


class ArrayImages(LabelledImages):
    """Labelled images held in an array (CIFAR, MNIST, STL-10, FER2013, PCam) rather than one file each.

    `images[i]` is image i as uint8 (H, W) grey or (H, W, 3) RGB; `images` may be an in-memory array or a lazy
    reader that opens its file on first use (so that DataLoader workers do not inherit open handles). `paths` are
    stand-ins `<source file>#<index in that file>`: they name each image in messages and key the feature cache
    (evaluation/features.py `files_key` keys a stand-in by its source file's path, size and modification time).
    """

    def __init__(self, images: Sequence[np.ndarray], labels: list[int], classes: list[str], *,
                 paths: list[Path], transform: Transform | None, source: str) -> None:
        if not len(images) == len(labels) == len(paths):
            raise ValueError(f"{len(images)} images, {len(labels)} labels and {len(paths)} paths; they must pair up")
        super().__init__(paths, labels, classes, transform=transform, source=source)
        self.images = images
        self.index = list(range(len(paths)))  # position in `images` of each kept sample

    @staticmethod
    def stand_ins(file: Path, n: int) -> list[Path]:
        """`<file>#0` ... `<file>#<n-1>`, with `file` made absolute so that the cache key does not depend on cwd."""
        file = Path(file).resolve()
        return [Path(f"{file}#{i}") for i in range(n)]

    def _load(self, index: int) -> Image.Image:
        self._record(self.paths[index], None)
        return Image.fromarray(np.asarray(self.images[self.index[index]], dtype=np.uint8))

    def scan(self) -> list[Path]:
        """Arrays always decode: nothing to drop."""
        return []

    def _keep(self, indices: list[int]) -> None:
        super()._keep(indices)
        self.index = [self.index[i] for i in indices]


class MultiLabelImages(LabelledImages):
    """Images with any number of classes each (PASCAL VOC 2007): `targets` (N, C) holds 1 present, 0 absent and
    -1 "difficult" (present but ignored by the mAP metric). `labels` is each image's first present class (0 if
    none), so that code written for single-label sets runs unchanged; the metric reads `targets`.
    """

    def __init__(self, paths: list[Path], targets: np.ndarray, classes: list[str], *, transform: Transform | None,
                 source: str) -> None:
        targets = np.asarray(targets, dtype=np.int8)
        if targets.shape != (len(paths), len(classes)):
            raise ValueError(f"targets have shape {targets.shape}; expected ({len(paths)}, {len(classes)}): "
                             "one row per image, one column per class")
        labels = [int(np.argmax(row == 1)) for row in targets]
        super().__init__(paths, labels, classes, transform=transform, source=source)
        self.targets = targets  # (N, C) int8

    def _keep(self, indices: list[int]) -> None:
        super()._keep(indices)
        self.targets = self.targets[np.asarray(indices, dtype=np.int64)]


class CaptionedImages(LabelledImages):
    """Images with several captions each, for retrieval (Flickr30k, MSCOCO): `captions[i]` are image i's captions.

    `__getitem__` returns (image tensor, i): `labels` is range(N), so feature extraction keeps track of which images
    were unreadable; `classes` is empty.
    """

    def __init__(self, paths: list[Path], captions: list[list[str]], *, transform: Transform | None,
                 source: str) -> None:
        if len(paths) != len(captions):
            raise ValueError(f"{len(paths)} images but {len(captions)} caption lists; they must pair up")
        super().__init__(paths, list(range(len(paths))), [], transform=transform, source=source)
        self.captions = captions

    def _keep(self, indices: list[int]) -> None:
        super()._keep(indices)
        self.captions = [self.captions[i] for i in indices]
        self.labels = list(range(len(self.paths)))
