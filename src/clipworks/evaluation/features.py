"""Image and text features for the evaluations, cached on disk so that a second evaluation of the same model and
images (another template set, another probe) does not run the image tower again.

Features are cached as .npz keyed by the checkpoint's weights file (resolved path, size, mtime), the dataset (image
paths, sizes, mtimes), the image size and the dtype the model ran in.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from ..data.datasets import LabelledImages, collate_skip_bad
from ..distributed import exit_with_parent
from ..errors import DataError
from ..io.checkpoints import WEIGHTS, is_native, resolve_checkpoint
from ..io.files import write_npz_atomic
from ..io.pretrained import locate
from ..models.clip import CLIP
from ..models.encode import embed_images, encode_texts


def digest(parts: Any) -> str:
    """A short stable hash of JSON-able parts, for cache keys."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:20]


def checkpoint_key(checkpoint: str | os.PathLike) -> str:
    """Identifies the weights: the resolved weights file's path, size and modification time (for a pretrained name
    or a foreign-format directory, every file of what it resolves to)."""
    if is_native(checkpoint):
        weights = (resolve_checkpoint(checkpoint) / WEIGHTS).resolve()
        stat = weights.stat()
        return digest([str(weights), stat.st_size, stat.st_mtime_ns])
    path, _ = locate(checkpoint, progress=False)  # already cached: the model was loaded from it
    files = sorted(p.resolve() for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path.resolve()]
    return digest([[str(f), f.stat().st_size, f.stat().st_mtime_ns] for f in files])


def files_key(paths: Sequence[Path]) -> str:
    """Identifies a dataset by its image files: paths, sizes and modification times (a missing file counts too).

    An array-backed set's stand-in paths `<file>#<index>` (data/datasets.py `ArrayImages`) are keyed by the
    stand-ins themselves (their count and order) plus each source file's path, size and modification time, stat'ed
    once per file: rewriting `test_batch` changes the key of every CIFAR image drawn from it.
    """
    entries: list = []
    sources: dict[str, list] = {}
    for p in paths:
        source = _array_source(p)
        if source is not None:
            entries.append(str(p))
            if str(source) not in sources:
                sources[str(source)] = _stat_entry(source)
        else:
            entries.append(_stat_entry(p))
    return digest([entries, sorted(sources.values(), key=str)] if sources else entries)


def _stat_entry(path: Path) -> list:
    try:
        stat = path.stat()
        return [str(path.resolve()), stat.st_size, stat.st_mtime_ns]
    except OSError:
        return [str(path), None, None]


def _array_source(path: Path) -> Path | None:
    """The source file of a stand-in path `<file>#<index>`, or None for an ordinary image path."""
    file, sep, index = path.name.rpartition("#")
    if not sep or not index.isdigit() or path.exists():
        return None
    return path.with_name(file)


class FeatureCache:
    """Named arrays in `<dir>/<key>.npz`, written atomically; `dir=None` caches nothing."""

    def __init__(self, directory: str | os.PathLike | None) -> None:
        self.dir = Path(directory) if directory is not None else None

    def get(self, key: str) -> dict[str, np.ndarray] | None:
        if self.dir is None or not (self.dir / f"{key}.npz").is_file():
            return None
        with np.load(self.dir / f"{key}.npz", allow_pickle=False) as f:
            return {name: f[name] for name in f.files}

    def put(self, key: str, **arrays: np.ndarray) -> None:
        if self.dir is None:
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        write_npz_atomic(self.dir / f"{key}.npz", **arrays)


class _Indexed(torch.utils.data.Dataset):
    """(image, index) so that the images a loader skipped as unreadable are known."""

    def __init__(self, dataset: LabelledImages) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int] | None:
        item = self.dataset[index]
        return None if item is None else (item[0], index)


def image_features(model: CLIP, dataset: LabelledImages, *, cache: FeatureCache, checkpoint: str | os.PathLike,
                   batch_size: int = 64, workers: int = 0, progress: bool = True, desc: str = "images"
                   ) -> tuple[np.ndarray, np.ndarray]:
    """(features (N, E) L2-normalised float32, kept (N,) indices into `dataset`); unreadable images are left out."""
    key = "img-" + digest([checkpoint_key(checkpoint), files_key(dataset.paths), model.image_size,
                           str(model.dtype)])
    hit = cache.get(key)
    if hit is not None:
        return hit["features"], hit["kept"]
    loader = torch.utils.data.DataLoader(_Indexed(dataset), batch_size=batch_size, num_workers=workers,
                                         collate_fn=collate_skip_bad, worker_init_fn=exit_with_parent)
    batches = tqdm(loader, desc=desc, unit="batch", disable=not progress, leave=False)
    features, kept = [], []
    for embeddings, index in embed_images(model, batches):
        features.append(embeddings)
        kept.append(index)
    if not features:
        raise DataError(f"no readable images in {dataset.source}")
    result = torch.cat(features).numpy(), torch.cat(kept).numpy()
    cache.put(key, features=result[0], kept=result[1])
    return result


def text_features(model: CLIP, texts: Sequence[str], *, cache: FeatureCache, checkpoint: str | os.PathLike,
                  batch_size: int = 256) -> torch.Tensor:
    """(N, E) L2-normalised float32 text embeddings, cached by the texts themselves."""
    key = "txt-" + digest([checkpoint_key(checkpoint), hashlib.sha256("\n".join(texts).encode()).hexdigest(),
                           str(model.dtype)])
    hit = cache.get(key)
    if hit is not None:
        return torch.from_numpy(hit["features"])
    features = encode_texts(model, texts, batch_size=batch_size)
    cache.put(key, features=features.numpy())
    return features
