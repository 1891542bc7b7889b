"""`clipworks eval`: the paper's evaluations on the user's data (Radford et al. 2021, Sec. 3.1.4, 3.2, 3.3, Table 13).

Glue only: datasets -> image features (cached) -> the pure metric functions of `zeroshot`, `retrieval` and
`linear_probe` -> `<out>/<name>.json` and `<out>/<name>.md`. Features are cached as .npz keyed by the checkpoint's
weights file (resolved path, size, mtime) and the dataset (image paths, sizes, mtimes), so a second evaluation of
the same model and images - another template set, another probe - does not run the image tower again.
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

from ..errors import ConfigError
from ..io.checkpoints import WEIGHTS, resolve_checkpoint
from ..io.files import write_npz_atomic, write_text_atomic
from ..models.inference import load_for_inference
from ..data.datasets import ImageFolderDataset, LabelCsvDataset, LabelledImages, collate_skip_bad, read_table
from ..errors import DataError
from ..models.clip import CLIP
from .prompts import DEFAULT_TEMPLATE
from .retrieval import recall_at_k_chunked
from .zeroshot import (
    confusion_matrix,
    encode_texts,
    mean_per_class_recall,
    per_class_recall,
    topk_accuracy,
    zero_shot_classifier,
    zero_shot_logits,
)


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


# ---------------------------------------------------------------- cache keys and feature cache
def digest(parts: Any) -> str:
    """A short stable hash of JSON-able parts, for cache keys."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:20]


def checkpoint_key(checkpoint: str | os.PathLike) -> str:
    """Identifies the weights: the resolved weights file's path, size and modification time."""
    weights = (resolve_checkpoint(checkpoint) / WEIGHTS).resolve()
    stat = weights.stat()
    return digest([str(weights), stat.st_size, stat.st_mtime_ns])


def files_key(paths: Sequence[Path]) -> str:
    """Identifies a dataset by its image files: paths, sizes and modification times (a missing file counts too)."""
    entries = []
    for p in paths:
        try:
            stat = p.stat()
            entries.append([str(p.resolve()), stat.st_size, stat.st_mtime_ns])
        except OSError:
            entries.append([str(p), None, None])
    return digest(entries)


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


# ---------------------------------------------------------------- features
class _Indexed(torch.utils.data.Dataset):
    """(image, index) so that the images a loader skipped as unreadable are known."""

    def __init__(self, dataset: LabelledImages) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int] | None:
        item = self.dataset[index]
        return None if item is None else (item[0], index)


@torch.no_grad()
def image_features(model: CLIP, dataset: LabelledImages, *, cache: FeatureCache, checkpoint: str | os.PathLike,
                   batch_size: int = 64, workers: int = 0, progress: bool = True, desc: str = "images"
                   ) -> tuple[np.ndarray, np.ndarray]:
    """(features (N, E) L2-normalised float32, kept (N,) indices into `dataset`); unreadable images are left out."""
    key = "img-" + digest([checkpoint_key(checkpoint), files_key(dataset.paths), model.image_size,
                           str(model.dtype)])
    hit = cache.get(key)
    if hit is not None:
        return hit["features"], hit["kept"]
    device = next(model.parameters()).device
    loader = torch.utils.data.DataLoader(_Indexed(dataset), batch_size=batch_size, num_workers=workers,
                                         collate_fn=collate_skip_bad)
    features, kept = [], []
    for batch in tqdm(loader, desc=desc, unit="batch", disable=not progress, leave=False):
        if batch is None:
            continue
        images, index = batch
        features.append(model.encode_image(images.to(device), normalize=True).float().cpu())
        kept.append(index)
    if not features:
        raise DataError(f"no readable images in {dataset.source}")
    result = torch.cat(features).numpy(), torch.cat(kept).numpy()
    cache.put(key, features=result[0], kept=result[1])
    return result


@torch.no_grad()
def text_features(model: CLIP, texts: Sequence[str], *, batch_size: int = 256) -> torch.Tensor:
    """(N, E) L2-normalised float32 text embeddings."""
    return encode_texts(model, texts, batch_size=batch_size).float().cpu()


# ---------------------------------------------------------------- datasets
def open_labelled(data: str | os.PathLike, transform: Any, classnames: Sequence[str] | None = None
                  ) -> LabelledImages:
    """A folder with one sub-folder per class, or a CSV/TSV of filepath,label (`transform` may be set later).

    With `classnames` for a folder: names equal to the folder names (any order) label by name; a list of entirely
    different names (ImageNet's WordNet-id folders with readable names) labels the sorted folders by position.
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
    if len(names) != len(folders) or set(names) & set(folders):
        missing = sorted(set(folders) - set(names))
        raise DataError(f"the class names ({len(names)}) do not match the {len(folders)} class folders of {path}"
                        + (f"; folders without a name: {', '.join(missing[:5])}" if missing else "")
                        + ". Give one name per folder, either the folder names themselves or, in sorted folder "
                          "order, a readable name for each; or leave out the class names to use the folder names.")
    dataset.classes = names
    return dataset


def write_results(out: str | os.PathLike, name: str, results: dict[str, Any], markdown: str) -> Path:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / f"{name}.json", json.dumps(results, indent=2))
    write_text_atomic(out / f"{name}.md", markdown)
    return out / f"{name}.md"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cell = lambda v: f"{v:.4f}" if isinstance(v, float) else str(v)  # noqa: E731
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows])


# ---------------------------------------------------------------- zero-shot
def zeroshot_metrics(features: torch.Tensor, labels: torch.Tensor, classifier: torch.Tensor) -> dict[str, Any]:
    """top-1, top-5, mean per-class recall, per-class recall and the confusion matrix of a zero-shot classifier."""
    logits = zero_shot_logits(features, classifier)
    n_classes = classifier.shape[1]
    confusion = confusion_matrix(logits.argmax(dim=1), labels, n_classes)
    return {**topk_accuracy(logits, labels, ks=(1, 5)), "mean_per_class_recall": mean_per_class_recall(confusion),
            "per_class_recall": [None if r != r else r for r in per_class_recall(confusion).tolist()],
            "confusion_matrix": confusion.tolist()}


def run_zeroshot(checkpoint: str, data: str, *, out: str | os.PathLike, classnames: Sequence[str] | None = None,
                 templates: Sequence[str] = (DEFAULT_TEMPLATE,), device: str | None = None, precision: str = "auto",
                 batch_size: int = 64, workers: int = 0, cache_dir: str | os.PathLike | None = None,
                 progress: bool = True) -> dict[str, Any]:
    """Zero-shot classification of a labelled set with one prompt and with `templates` ensembled (Sec. 3.1.4)."""
    dataset = open_labelled(data, None, classnames)  # before loading the model: a bad layout fails fast
    model, dataset.transform = load_for_inference(checkpoint, device=device or default_device(), dtype=precision)
    cache = FeatureCache(cache_dir if cache_dir is not None else Path(out) / "cache")
    features, kept = image_features(model, dataset, cache=cache, checkpoint=checkpoint, batch_size=batch_size,
                                    workers=workers, progress=progress)
    labels = torch.tensor(dataset.labels)[torch.from_numpy(kept)]
    prompt_sets = {"single prompt": [DEFAULT_TEMPLATE]}
    if list(templates) != [DEFAULT_TEMPLATE]:
        prompt_sets[f"ensemble of {len(templates)}"] = list(templates)
    results: dict[str, Any] = {"checkpoint": str(checkpoint), "data": str(data), "n_images": len(kept),
                               "n_skipped": len(dataset) - len(kept), "classes": list(dataset.classes),
                               "prompts": {}}
    for name, prompts in prompt_sets.items():
        classifier = zero_shot_classifier(model, dataset.classes, prompts).cpu()
        results["prompts"][name] = {"templates": prompts,
                                    **zeroshot_metrics(torch.from_numpy(features), labels, classifier)}
    best = list(results["prompts"])[-1]
    results["main"] = best
    rows = [(name, r["top1"], r["top5"], r["mean_per_class_recall"]) for name, r in results["prompts"].items()]
    md = [f"# Zero-shot classification: {data}", "",
          f"{len(kept)} images, {len(dataset.classes)} classes (chance {1 / len(dataset.classes):.4f}), "
          f"checkpoint `{checkpoint}`" + (f"; {results['n_skipped']} unreadable images skipped"
                                          if results["n_skipped"] else "") + ".", "",
          markdown_table(["prompts", "top-1", "top-5", "mean per-class recall"], rows), ""]
    main = results["prompts"][best]
    if len(dataset.classes) <= 50:
        md += [f"## Per-class recall ({best})", "",
               markdown_table(["class", "recall", "images"],
                              [(c, r if r is not None else "-", sum(row)) for c, r, row in
                               zip(dataset.classes, main["per_class_recall"], main["confusion_matrix"])]),
               ""]
    if len(dataset.classes) <= 20:
        md += [f"## Confusion matrix ({best}; rows: true class, columns: predicted)", "",
               markdown_table(["", *dataset.classes],
                              [(c, *row) for c, row in zip(dataset.classes, main["confusion_matrix"])]), ""]
    write_results(out, "zeroshot", results, "\n".join(md))
    return results


# ---------------------------------------------------------------- linear probe
def run_linear_probe(checkpoint: str, train: str, test: str, *, out: str | os.PathLike, val_fraction: float = 0.2,
                     shots: int | None = None, seeds: int = 5, device: str | None = None, precision: str = "auto",
                     batch_size: int = 64, workers: int = 0, cache_dir: str | os.PathLike | None = None,
                     progress: bool = True) -> dict[str, Any]:
    """Logistic regression on frozen features (Appendix A.3), or k-shot probes over several seeds (Sec. 3.1.5)."""
    from . import linear_probe as lp

    opened = {"train": open_labelled(train, None), "test": open_labelled(test, None)}
    model, preprocess = load_for_inference(checkpoint, device=device or default_device(), dtype=precision)
    cache = FeatureCache(cache_dir if cache_dir is not None else Path(out) / "cache")
    sets = {}
    for name, dataset in opened.items():
        dataset.transform = preprocess
        x, kept = image_features(model, dataset, cache=cache, checkpoint=checkpoint, batch_size=batch_size,
                                 workers=workers, progress=progress, desc=name)
        sets[name] = (dataset, x, np.asarray(dataset.labels)[kept])
    (train_set, train_x, train_y), (test_set, test_x, test_y) = sets["train"], sets["test"]
    if list(train_set.classes) != list(test_set.classes):
        raise DataError(f"the train and test sets have different classes ({len(train_set.classes)} in {train}, "
                        f"{len(test_set.classes)} in {test}); a probe needs the same class folders or labels in both")
    results: dict[str, Any] = {"checkpoint": str(checkpoint), "train": str(train), "test": str(test),
                               "n_train": len(train_y), "n_test": len(test_y), "n_classes": len(train_set.classes)}
    if shots:
        r = lp.few_shot_probe(train_x, train_y, test_x, test_y, k=shots, seeds=seeds)
        results["few_shot"] = r
        summary = f"{shots}-shot probe over {seeds} seeds: top-1 {r['mean']:.4f} ± {r['std']:.4f}"
        body = markdown_table(["seed", "C", "test top-1"],
                              [(i, f"{c:.3g}", a) for i, (c, a) in enumerate(zip(r["c"], r["accuracies"]))])
    else:
        r = lp.probe(train_x, train_y, test_x, test_y, val_fraction=val_fraction)
        results.update(c=r.c, val_top1=r.val_accuracy, top1=r.test_accuracy,
                       sweep={f"{c:.6g}": a for c, a in r.sweep.items()}, val_fraction=val_fraction)
        summary = (f"linear probe: test top-1 {r.test_accuracy:.4f} with C = {r.c:.3g} (validation top-1 "
                   f"{r.val_accuracy:.4f} on {val_fraction:.0%} of the training set)")
        body = markdown_table(["C", "validation top-1"], [(f"{c:.3g}", a) for c, a in r.sweep.items()])
    md = [f"# Linear probe: {train} -> {test}", "", f"{len(train_y)} training and {len(test_y)} test images, "
          f"{len(train_set.classes)} classes, checkpoint `{checkpoint}`.", "", summary, "", body, ""]
    write_results(out, "linear_probe", results, "\n".join(md))
    return results


# ---------------------------------------------------------------- retrieval
def run_retrieval(checkpoint: str, data: str, *, out: str | os.PathLike, image_key: str = "filepath",
                  caption_key: str = "caption", ks: Sequence[int] = (1, 5, 10), device: str | None = None,
                  precision: str = "auto", batch_size: int = 64, workers: int = 0,
                  cache_dir: str | os.PathLike | None = None,
                  progress: bool = True) -> dict[str, Any]:
    """Recall@K both ways on a CSV of filepath,caption; rows sharing a filepath are one image with several captions."""
    model, preprocess = load_for_inference(checkpoint, device=device or default_device(), dtype=precision)
    rows = read_table(data, columns=(image_key, caption_key), flags="--image-key/--caption-key")
    base = Path(data).parent
    index: dict[str, int] = {}
    for row in rows:
        index.setdefault(row[image_key], len(index))
    paths = [p if p.is_absolute() else base / p for p in (Path(v).expanduser() for v in index)]
    dataset = LabelledImages(paths, list(range(len(paths))), [], transform=preprocess, source=str(data))
    cache = FeatureCache(cache_dir if cache_dir is not None else Path(out) / "cache")
    img, kept = image_features(model, dataset, cache=cache, checkpoint=checkpoint, batch_size=batch_size,
                               workers=workers, progress=progress)
    # Unreadable images leave with their captions; the rest are renumbered 0..n-1.
    new_index = {int(old): new for new, old in enumerate(kept)}
    captions, owner = [], []
    for row in rows:
        old = index[row[image_key]]
        if old in new_index:
            captions.append(row[caption_key])
            owner.append(new_index[old])
    key = "txt-" + digest([checkpoint_key(checkpoint), hashlib.sha256("\n".join(captions).encode()).hexdigest(),
                           str(model.dtype)])
    hit = cache.get(key)
    txt = torch.from_numpy(hit["features"]) if hit is not None else text_features(model, captions,
                                                                                   batch_size=4 * batch_size)
    if hit is None:
        cache.put(key, features=txt.numpy())
    recalls = recall_at_k_chunked(torch.from_numpy(img), txt, owner, ks)
    results = {"checkpoint": str(checkpoint), "data": str(data), "n_images": len(kept), "n_captions": len(captions),
               "n_skipped": len(paths) - len(kept), **recalls}
    md = [f"# Retrieval: {data}", "", f"{len(kept)} images, {len(captions)} captions, checkpoint `{checkpoint}`. "
          "Image -> text counts a hit when any of the image's captions is in the top K.", "",
          markdown_table(["direction", *[f"R@{k}" for k in ks]],
                         [("image -> text", *[recalls[f"image_to_text_R@{k}"] for k in ks]),
                          ("text -> image", *[recalls[f"text_to_image_R@{k}"] for k in ks])]), ""]
    write_results(out, "retrieval", results, "\n".join(md))
    return results


# ---------------------------------------------------------------- robustness
def run_robustness(checkpoint: str, datasets: dict[str, str], *, out: str | os.PathLike,
                   classnames: Sequence[str] | None = None, templates: Sequence[str] = (DEFAULT_TEMPLATE,),
                   probe_train: str | None = None, device: str | None = None, precision: str = "auto",
                   batch_size: int = 64, workers: int = 0,
                   cache_dir: str | os.PathLike | None = None, progress: bool = True) -> dict[str, Any]:
    """One zero-shot classifier (and optionally one linear probe fitted on `probe_train`) on several datasets that
    share their classes: the paper's distribution-shift table (Sec. 3.3, Figure 13/14)."""
    from . import linear_probe as lp

    if not datasets:
        raise ConfigError("give at least one dataset as NAME=DIR")
    opened = {name: open_labelled(path, None, classnames) for name, path in datasets.items()}
    model, preprocess = load_for_inference(checkpoint, device=device or default_device(), dtype=precision)
    for dataset in opened.values():
        dataset.transform = preprocess
    cache = FeatureCache(cache_dir if cache_dir is not None else Path(out) / "cache")
    classes = list(next(iter(opened.values())).classes)
    for name, dataset in opened.items():
        if list(dataset.classes) != classes:
            raise DataError(f"dataset {name} ({datasets[name]}) has classes {', '.join(dataset.classes[:5])}... "
                            f"but the first has {', '.join(classes[:5])}...; all datasets must share their classes")
    classifier = zero_shot_classifier(model, classes, list(templates)).cpu()
    probe_model = None
    if probe_train is not None:
        train_set = open_labelled(probe_train, preprocess, classnames)
        if list(train_set.classes) != classes:
            raise DataError(f"--probe-train {probe_train} has different classes from the evaluation datasets")
        x, kept = image_features(model, train_set, cache=cache, checkpoint=checkpoint, batch_size=batch_size,
                                 workers=workers, progress=progress, desc="probe train")
        y = np.asarray(train_set.labels)[kept]
        tr, va = lp.split_train_val(y, 0.2, seed=0)
        c, _ = lp.select_c(x[tr], y[tr], x[va], y[va])
        probe_model = lp.fit(x, y, c)
    table: dict[str, dict[str, Any]] = {}
    for name, dataset in opened.items():
        x, kept = image_features(model, dataset, cache=cache, checkpoint=checkpoint, batch_size=batch_size,
                                 workers=workers, progress=progress, desc=name)
        y = torch.tensor(dataset.labels)[torch.from_numpy(kept)]
        m = zeroshot_metrics(torch.from_numpy(x), y, classifier)
        table[name] = {"n_images": len(kept), "zeroshot_top1": m["top1"], "zeroshot_top5": m["top5"],
                       "zeroshot_mean_per_class_recall": m["mean_per_class_recall"]}
        if probe_model is not None:
            table[name]["linear_probe_top1"] = lp.accuracy(probe_model, x, y.numpy())
    results = {"checkpoint": str(checkpoint), "classes": classes, "templates": list(templates),
               "probe_train": probe_train, "datasets": table}
    header = ["dataset", "images", "zero-shot top-1", "mean per-class recall"]
    rows = [[n, r["n_images"], r["zeroshot_top1"], r["zeroshot_mean_per_class_recall"]] for n, r in table.items()]
    if probe_model is not None:
        header.append(f"linear probe top-1 (fitted on {probe_train})")
        for row, r in zip(rows, table.values()):
            row.append(r["linear_probe_top1"])
    md = ["# Robustness to distribution shift", "", f"One zero-shot classifier ({len(classes)} classes, "
          f"{len(templates)} template(s)), checkpoint `{checkpoint}`, on each dataset.", "",
          markdown_table(header, rows), ""]
    write_results(out, "robustness", results, "\n".join(md))
    return results
