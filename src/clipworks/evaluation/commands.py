"""`clipworks eval`: the paper's evaluations on the user's data (Radford et al. 2021, Sec. 3.1.4, 3.2, 3.3, Table 13).

Each command composes the same steps: open the datasets (a bad layout fails before the model loads) -> load the
model for inference -> cached features (`features`) -> the pure metric functions of `zeroshot`, `retrieval` and
`linear_probe` -> `<out>/<name>.json` and `<out>/<name>.md`. `run_zeroshot` is also the quick `clipworks zeroshot`
(labels for single images, accuracy without writing files).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data.datasets import LabelledImages, open_labelled
from ..data.images import open_image
from ..data.tables import read_table
from ..errors import ConfigError, DataError, counted
from ..hardware import default_device
from ..io.checkpoints import load_for_inference
from ..models.clip import CLIP
from ..models.encode import embed_images
from . import linear_probe as lp
from .features import FeatureCache, image_features, text_features
from .prompts import DEFAULT_TEMPLATE
from .results import markdown_table, write_results
from .retrieval import recall_at_k_chunked
from .zeroshot import (
    confusion_matrix,
    mean_per_class_recall,
    per_class_recall,
    topk_accuracy,
    zero_shot_classifier,
    zero_shot_logits,
)


# ---------------------------------------------------------------- zero-shot
def zeroshot_metrics(features: torch.Tensor, labels: torch.Tensor, classifier: torch.Tensor) -> dict[str, Any]:
    """top-1, top-5, mean per-class recall, per-class recall and the confusion matrix of a zero-shot classifier."""
    logits = zero_shot_logits(features, classifier)
    n_classes = classifier.shape[1]
    confusion = confusion_matrix(logits.argmax(dim=1), labels, n_classes)
    return {**topk_accuracy(logits, labels, ks=(1, 5)), "mean_per_class_recall": mean_per_class_recall(confusion),
            "per_class_recall": [None if r != r else r for r in per_class_recall(confusion).tolist()],
            "confusion_matrix": confusion.tolist()}


def run_zeroshot(checkpoint: str, data: str | None = None, *, images: Sequence[str] = (),
                 classnames: Sequence[str] | None = None, templates: Sequence[str] = (DEFAULT_TEMPLATE,),
                 out: str | os.PathLike | None = None, top: int = 3, device: str | None = None,
                 precision: str = "auto", batch_size: int = 64, workers: int = 0,
                 cache_dir: str | os.PathLike | None = None, progress: bool = True) -> dict[str, Any]:
    """Zero-shot classification (Sec. 3.1.4): accuracy on a labelled set `data` with one prompt and with `templates`
    ensembled, and/or the `top` labels of each of `images`.

    Class names come from `classnames`, else from `data`'s folders or labels. With `out`, the results are written
    to `<out>/zeroshot.{json,md}` and image features cached in `<out>/cache` (or `cache_dir`); without it
    (`clipworks zeroshot`), nothing is written.
    """
    if not data and not images:
        raise ConfigError("give image files to label, or a labelled image set (--data)")
    dataset = open_labelled(data, None, classnames) if data else None  # before the model loads: fails fast
    names = list(dataset.classes) if dataset is not None else list(classnames or [])
    if not names:
        raise ConfigError("labelling images needs class names: pass --classes 'cat,dog' or --classes-file")
    model, preprocess = load_for_inference(checkpoint, device=device or default_device(), dtype=precision)
    results: dict[str, Any] = {"checkpoint": str(checkpoint), "classes": names, "n_classes": len(names),
                               "templates": list(templates)}
    if dataset is not None:
        dataset.transform = preprocess
        cache = FeatureCache(cache_dir if cache_dir is not None else Path(out) / "cache" if out else None)
        results.update(data=str(data), **_zeroshot_accuracy(model, dataset, templates, cache=cache,
                                                            checkpoint=checkpoint, batch_size=batch_size,
                                                            workers=workers, progress=progress))
        if out is not None:
            write_results(out, "zeroshot", results, _zeroshot_markdown(results))
    if images:
        classifier = zero_shot_classifier(model, names, list(templates))
        results["predictions"] = [_top_labels(model, preprocess, path, classifier, names, top) for path in images]
    return results


def _zeroshot_accuracy(model: CLIP, dataset: LabelledImages, templates: Sequence[str], *, cache: FeatureCache,
                       checkpoint: str, batch_size: int, workers: int, progress: bool) -> dict[str, Any]:
    features, kept = image_features(model, dataset, cache=cache, checkpoint=checkpoint, batch_size=batch_size,
                                    workers=workers, progress=progress)
    labels = torch.tensor(dataset.labels)[torch.from_numpy(kept)]
    prompt_sets = {"single prompt": [DEFAULT_TEMPLATE]}
    if list(templates) != [DEFAULT_TEMPLATE]:
        prompt_sets[f"ensemble of {len(templates)}"] = list(templates)
    metrics = {name: {"templates": prompts, **zeroshot_metrics(torch.from_numpy(features), labels,
                                                               zero_shot_classifier(model, dataset.classes, prompts))}
               for name, prompts in prompt_sets.items()}
    main = list(metrics)[-1]
    return {"n_images": len(kept), "n_skipped": len(dataset) - len(kept), "prompts": metrics, "main": main,
            "accuracy": {k: metrics[main][k] for k in ("top1", "top5")}}


def _top_labels(model: CLIP, preprocess: Callable, path: str, classifier: torch.Tensor, names: Sequence[str],
                top: int) -> dict[str, Any]:
    (embedding, _), = embed_images(model, [(preprocess(open_image(path)).unsqueeze(0), None)])
    probs = zero_shot_logits(embedding, classifier).softmax(dim=-1)[0]
    best = probs.topk(min(top, len(names)))
    return {"image": str(path), "top": [{"label": names[i], "prob": p}
                                        for p, i in zip(best.values.tolist(), best.indices.tolist())]}


def _zeroshot_markdown(results: dict[str, Any]) -> str:
    classes, best = results["classes"], results["main"]
    rows = [(name, r["top1"], r["top5"], r["mean_per_class_recall"]) for name, r in results["prompts"].items()]
    md = [f"# Zero-shot classification: {results['data']}", "",
          f"{results['n_images']} images, {len(classes)} classes (chance {1 / len(classes):.4f}), "
          f"checkpoint `{results['checkpoint']}`" + (f"; {counted(results['n_skipped'], 'unreadable image')} skipped"
                                                     if results["n_skipped"] else "") + ".", "",
          markdown_table(["prompts", "top-1", "top-5", "mean per-class recall"], rows), ""]
    main = results["prompts"][best]
    if len(classes) <= 50:
        md += [f"## Per-class recall ({best})", "",
               markdown_table(["class", "recall", "images"],
                              [(c, r if r is not None else "-", sum(row)) for c, r, row in
                               zip(classes, main["per_class_recall"], main["confusion_matrix"])]), ""]
    if len(classes) <= 20:
        md += [f"## Confusion matrix ({best}; rows: true class, columns: predicted)", "",
               markdown_table(["", *classes], [(c, *row) for c, row in zip(classes, main["confusion_matrix"])]), ""]
    return "\n".join(md)


# ---------------------------------------------------------------- linear probe
def run_linear_probe(checkpoint: str, train: str, test: str, *, out: str | os.PathLike, val_fraction: float = 0.2,
                     shots: int | None = None, seeds: int = 5, device: str | None = None, precision: str = "auto",
                     batch_size: int = 64, workers: int = 0, cache_dir: str | os.PathLike | None = None,
                     progress: bool = True) -> dict[str, Any]:
    """Logistic regression on frozen features (Appendix A.3), or k-shot probes over several seeds (Sec. 3.1.5)."""
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
    txt = text_features(model, captions, cache=cache, checkpoint=checkpoint, batch_size=4 * batch_size)
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
