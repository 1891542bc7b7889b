"""Readers of the paper's evaluation datasets (Radford et al. 2021, Table 9 and section 3.3), each in its official
or torchvision on-disk layout, into the datasets of data/datasets.py.

Every reader module registers its readers with `@reader("<name>")`; `open_benchmark(name, root, split)` looks one up
and runs it. A reader takes the dataset's own folder (e.g. the one holding `cifar-10-batches-py/`, or that folder
itself: both are accepted) and a split, "test" or "train" (the split a linear probe trains on: where the dataset has
a validation split as well, "train" is train + validation, as the paper's Table 9 counts them), and returns a
dataset whose `transform` is None (the caller sets it). Class names are the dataset's own, in the label order the
reader's docstring states; the benchmark specs (evaluation/specs.py) give the readable names in that same order.
Nothing is downloaded: the error for a missing dataset names the file that was expected.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable
from pathlib import Path

from ...errors import ConfigError, DataError
from ..datasets import LabelledImages

Reader = Callable[[Path, str], LabelledImages]  # (dataset folder, split) -> dataset; may be MultiLabel/Captioned

READERS: dict[str, Reader] = {}
SPLITS = ("test", "train")


def reader(name: str) -> Callable[[Reader], Reader]:
    """Register the decorated function as the reader of dataset `name`."""
    def register(function: Reader) -> Reader:
        if name in READERS:
            raise ValueError(f"two readers for dataset {name!r}: {READERS[name].__module__} and {function.__module__}")
        READERS[name] = function
        return function
    return register


def open_benchmark(name: str, root: str | os.PathLike, split: str = "test") -> LabelledImages:
    """Dataset `name` read from `root` (its own folder, in the official or torchvision layout), split "test" or
    "train". Raises ConfigError for an unknown name or split, FileNotFoundError/DataError naming the file expected.
    """
    if name not in READERS:
        close = difflib.get_close_matches(name, READERS, n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(close)}?" if close else f"known: {', '.join(sorted(READERS))}"
        raise ConfigError(f"no reader for dataset {name!r}; {hint}")
    if split not in SPLITS:
        raise ConfigError(f"split {split!r} of {name}: expected one of {', '.join(SPLITS)}")
    root = Path(root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"{name}: dataset folder {root} does not exist")
    return READERS[name](root, split)


def find(root: Path, *candidates: str) -> Path:
    """The first of `root/<candidate>` that exists; FileNotFoundError naming the first (the expected layout) if none.

    Readers list the layout relative to the dataset's folder and again relative to its parent, so that `root` may
    be either (torchvision's `root` is the parent).
    """
    for candidate in candidates:
        if (root / candidate).exists():
            return root / candidate
    more = ", ..." if len(candidates) > 3 else ""
    others = f" (or {', '.join(candidates[1:3])}{more})" if len(candidates) > 1 else ""
    raise FileNotFoundError(f"expected {root / candidates[0]}{others}; is {root} the dataset's folder?")


def labelled(paths: list[Path], labels: list[int], classes: list[str], source: Path | str) -> LabelledImages:
    """A file-backed labelled set with no transform yet; DataError if it is empty."""
    if not paths:
        raise DataError(f"no images found for {source}: check the folder layout")
    return LabelledImages(paths, labels, classes, transform=None, source=str(source))


from . import annotated, arrays, folders, imagenet, retrieval, video  # noqa: E402,F401  (registers the readers)
