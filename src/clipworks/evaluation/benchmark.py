"""`clipworks benchmark`: the paper's evaluation suite on datasets in their own on-disk layouts (Radford et al. 2021,
zero-shot Table 11 / Figure 21, linear probes Table 10, retrieval Table 13, distribution shift Figure 13). LAION's
CLIP_benchmark is what users compare it with.

A run is a grid of cells, one per (model, dataset, task). A cell opens its dataset with its reader
(`data/benchmarks`, from `<root>/<dataset key>`), takes cached image features (`features`), scores them as the
dataset's spec says (`specs`: class names, templates, metric) and writes `<out>/cells/<model>/<dataset>/<task>.json`
atomically. A cell already written for the same weights is skipped, so an interrupted run resumes where it stopped;
a dataset missing (or unreadable) under the root is reported with its reason and the other cells still run. Beside
the registered datasets, `NAME=PATH` adds the user's own labelled set (class folders or a filepath,label CSV: its
names, "a photo of a {}.", accuracy) to the zero-shot table.
`<out>/table.md` and `<out>/table.csv` merge every cell under `<out>`: per task a row per model and a column per
dataset, and under each of OpenAI's models the paper's published figures for that task. Every task shares one
image-feature cache, `<out>/cache`: a linear probe reuses the test features zero-shot computed.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data.benchmarks import open_benchmark
from ..data.datasets import open_labelled
from ..errors import ConfigError, DataError
from ..hardware import default_device
from ..io.checkpoints import load_for_inference
from ..io.files import write_text_atomic
from ..io.pretrained import find
from ..models.encode import encode_texts
from . import linear_probe as lp
from .features import FeatureCache, checkpoint_key, image_features, text_features
from .metrics import benchmark_metric
from .prompts import DEFAULT_TEMPLATE
from .results import markdown_table
from .retrieval import recall_at_k_chunked
from .specs import COLLECTIONS, SPECS, BenchmarkSpec, spec
from .zeroshot import zero_shot_logits

TASKS = ("zeroshot", "linear-probe", "retrieval")
_TASK_TITLES = {"zeroshot": "Zero-shot", "linear-probe": "Linear probe", "retrieval": "Retrieval"}
_RECALL_KS = (1, 5, 10)
_RETRIEVAL_COLUMNS = (("image->text R@1", "image_to_text_R@1"), ("text->image R@1", "text_to_image_R@1"))


@dataclass
class Cell:
    """One (model, dataset, task) of a run and what became of it."""

    model: str  # the model's label: its folder under <out>/cells and its row in the table
    dataset: str
    task: str
    status: str = "pending"  # "done" (evaluated now), "skipped" (done before), "missing", "not applicable"
    reason: str = ""  # for "missing" and "not applicable": one line
    result: dict[str, Any] = field(default_factory=dict)


def resolve_datasets(names: Sequence[str]) -> list[str]:
    """Dataset keys from keys and collection names (`paper27`, ...), in order, each once; unknown names fail.
    A `NAME=PATH` (the user's own labelled set) is kept as it is."""
    keys: list[str] = []
    for name in names:
        if "=" in name:
            label, _, path = name.partition("=")
            if not label or not path or label in SPECS:
                raise ConfigError(f"{name!r}: a labelled set of your own is NAME=PATH (a folder of class folders or "
                                  "a filepath,label CSV), with a NAME that is not a benchmark dataset's")
            keys.append(name)
            continue
        for key in COLLECTIONS.get(name, (name,)):
            spec(key)  # a ConfigError naming the closest keys for an unknown one
            if key not in keys:
                keys.append(key)
    if not keys:
        raise ConfigError("give at least one dataset (e.g. --datasets cifar10,mnist or --datasets paper27)")
    return keys


def model_label(checkpoint: str | os.PathLike) -> str:
    """A file-name-safe label for a checkpoint: OpenAI's architecture name for its releases (`ViT-B-32`), else the
    name or path as given (`runs/a` -> `runs_a`)."""
    text = str(checkpoint).rstrip("/")
    entry = None if Path(text).exists() else find(text)
    if entry is not None:
        text = entry.arch if entry.tag == "openai" else entry.name
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", text).strip("_") or "model"


def paper_model(checkpoint: str | os.PathLike) -> str | None:
    """The OpenAI model name the paper reports figures for, when `checkpoint` names one of OpenAI's releases."""
    text = str(checkpoint)
    entry = None if Path(text).exists() else find(text)
    return entry.arch if entry is not None and entry.tag == "openai" else None


def paper_figures(spec_: BenchmarkSpec, task: str, model: str | None) -> dict[str, float] | None:
    """The paper's published figures for one cell, by the table column they stand beside, when `model` is one of
    OpenAI's (`paper_model`) and the paper printed them: zero-shot Table 11/16, linear probe Table 10/16, retrieval
    Table 13's R@1 both ways."""
    if model is None:
        return None
    if task == "retrieval":
        recalls = spec_.paper_recalls.get(model, {})
        figures = {f"{spec_.name} {column}": recalls[key] for column, key in _RETRIEVAL_COLUMNS if key in recalls}
    else:
        value = (spec_.paper if task == "zeroshot" else spec_.paper_probe).get(model)
        figures = {spec_.name: value} if value is not None else {}
    return figures or None


def run_benchmark(checkpoints: Sequence[str], datasets: Sequence[str], *, root: str | os.PathLike | None = None,
                  task: str = "zeroshot", out: str | os.PathLike, device: str | None = None, precision: str = "auto",
                  batch_size: int = 64, workers: int = 0, progress: bool = True,
                  report: Callable[[str], None] = print) -> list[Cell]:
    """Evaluate every checkpoint on every dataset (keys or collections) at `task`; returns the cells of this run.

    `root` holds one folder per dataset, named by its key (`<root>/cifar10`, `<root>/imagenet`, ...); a
    `NAME=PATH` dataset needs none. `report` receives one line per cell. The merged tables are rewritten at the end,
    whatever was missing.
    """
    if task not in TASKS:
        raise ConfigError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
    if not checkpoints:
        raise ConfigError("give at least one checkpoint")
    keys = resolve_datasets(datasets)
    out = Path(out)
    registered = [key for key in keys if "=" not in key]
    if registered and (root is None or not Path(root).is_dir()):
        raise FileNotFoundError(f"--root {root} does not exist (expected a folder with one folder per dataset, "
                                f"e.g. {Path(root or 'ROOT') / registered[0]})")
    cache = FeatureCache(out / "cache")
    cells = []
    for checkpoint in checkpoints:
        model = _LazyModel(checkpoint, device=device or default_device(), precision=precision)
        label = model_label(checkpoint)
        for key in keys:
            spec_, data = _own_set(key) if "=" in key else (spec(key), Path(root) / key)
            cell = Cell(label, spec_.name, task)
            path = out / "cells" / label / spec_.name / f"{task}.json"
            _run_cell(cell, path, model, spec_, data, cache=cache, batch_size=batch_size, workers=workers,
                      progress=progress)
            report(_describe(cell, path))
            cells.append(cell)
    write_tables(out, missing=[c for c in cells if c.status == "missing"], models=list(dict.fromkeys(
        c.model for c in cells)), datasets=list(dict.fromkeys(c.dataset for c in cells)))
    return cells


def _own_set(item: str) -> tuple[BenchmarkSpec, Path]:
    """The spec of a NAME=PATH set: its own class names (empty here: read from the set), the single default
    prompt, accuracy."""
    name, _, path = item.partition("=")
    return BenchmarkSpec(name=name, task="classification", classnames=(), templates=(DEFAULT_TEMPLATE,),
                         metric="accuracy", paper={}), Path(path)


def _open(spec_: BenchmarkSpec, data: Path, split: str) -> Any:
    """A dataset split: a registered dataset's reader, or for a NAME=PATH set the set itself (its test split)."""
    if spec_.name in SPECS:
        return open_benchmark(spec_.name, data, split)
    if split != "test":
        raise FileNotFoundError(f"{spec_.name}: a set given as NAME=PATH is a test set only; a linear probe needs a "
                                "benchmark dataset with a training split")
    return open_labelled(data, None)


class _LazyModel:
    """The model of one checkpoint, loaded when the first cell needs it (a run whose cells are all done loads none)."""

    def __init__(self, checkpoint: str, *, device: str, precision: str) -> None:
        self.checkpoint, self.device, self.precision = checkpoint, device, precision
        self._loaded: tuple[Any, Callable] | None = None
        self._key: str | None = None
        self.probes: dict[str, dict[str, Any]] = {}  # linear probes fitted in this run, by training dataset
        self.class_weights: dict[tuple, torch.Tensor] = {}  # zero-shot columns encoded in this run (`classifier`)

    def get(self) -> tuple[Any, Callable]:
        if self._loaded is None:
            self._loaded = load_for_inference(self.checkpoint, device=self.device, dtype=self.precision)
        return self._loaded

    @property
    def key(self) -> str:
        """The weights' identity (path, size, mtime), recorded in each cell: a cell of other weights (or another
        --precision) is redone."""
        if self._key is None:
            self._key = checkpoint_key(self.checkpoint)
        return self._key


def _run_cell(cell: Cell, path: Path, model: _LazyModel, spec_: BenchmarkSpec, data: Path, *, cache: FeatureCache,
              batch_size: int, workers: int, progress: bool) -> None:
    """Evaluate one cell into `path`, or mark it skipped, missing or not applicable."""
    applicable = {"zeroshot": spec_.task != "retrieval", "linear-probe": spec_.task == "classification",
                  "retrieval": spec_.task == "retrieval"}[cell.task]
    if not applicable:
        cell.status = "not applicable"
        cell.reason = (f"a {spec_.task} dataset; --task {cell.task} does not evaluate it"
                       + (" (use --task retrieval)" if spec_.task == "retrieval" else ""))
        return
    done = _read_cell(path)
    if done is not None and (done.get("weights"), done.get("precision")) == (model.key, model.precision):
        cell.status, cell.result = "skipped", done
        return
    run = {"zeroshot": _zeroshot, "linear-probe": _linear_probe, "retrieval": _retrieval}[cell.task]
    start = time.perf_counter()
    try:
        result = run(model, spec_, data, cache=cache, batch_size=batch_size, workers=workers,
                     progress=progress, desc=f"{cell.model} {cell.dataset}")
    except (FileNotFoundError, DataError) as e:  # the dataset is absent or unreadable: this cell only
        cell.status, cell.reason = "missing", str(e).splitlines()[0] if str(e) else type(e).__name__
        return
    cell.result = {"model": cell.model, "checkpoint": str(model.checkpoint), "weights": model.key,
                   "precision": model.precision,
                   "dataset": cell.dataset, "task": cell.task, "metric": spec_.metric, **result,
                   "paper": paper_figures(spec_, cell.task, paper_model(model.checkpoint)),
                   "seconds": round(time.perf_counter() - start, 2)}
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps(cell.result, indent=2))
    cell.status = "done"


def _published(cell: dict[str, Any]) -> dict[str, float]:
    """A cell's paper figures by column (a cell written before they were kept by column holds one number)."""
    paper = cell.get("paper")
    return {cell["dataset"]: paper} if isinstance(paper, (int, float)) else dict(paper or {})


def _read_cell(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):  # absent, or not JSON: evaluate it (again)
        return None


def _describe(cell: Cell, path: Path) -> str:
    head = f"{cell.model} {cell.dataset} {cell.task}"
    if cell.status in ("missing", "not applicable"):
        return f"{head}: {cell.status}: {cell.reason}"
    scores = ", ".join(f"{name} {100 * value:.2f}" for name, value in cell.result["columns"].items())
    if cell.status == "skipped":
        return f"{head}: already done ({scores}), skipped; delete {path} to redo it"
    return f"{head}: {scores} ({cell.result['n_images']} images, {cell.result['seconds']:.0f} s)"


# ---------------------------------------------------------------- the three tasks
def prompts(spec_: BenchmarkSpec) -> tuple[list[str], list[str]]:
    """The class names and templates of a dataset; a subset of another's classes (ImageNet-R's 200 of ImageNet's
    1,000) takes the parent's names at its indices and the parent's templates, unless it has its own."""
    names, templates = spec_.classnames, spec_.templates
    if spec_.classes_from:
        parent = spec(spec_.classes_from)
        names = names or tuple(parent.classnames[i] for i in spec_.class_subset) or parent.classnames
        templates = templates or parent.templates
    return list(names), list(templates)


def _features(model: _LazyModel, dataset: Any, *, cache: FeatureCache, batch_size: int, workers: int,
              progress: bool, desc: str) -> tuple[np.ndarray, np.ndarray]:
    clip, preprocess = model.get()
    dataset.transform = preprocess
    return image_features(clip, dataset, cache=cache, checkpoint=model.checkpoint, batch_size=batch_size,
                          workers=workers, progress=progress, desc=desc)


def _truth(dataset: Any, kept: np.ndarray) -> torch.Tensor:
    """The kept images' labels (N,), or a multi-label set's targets (N, C) with 1/0/-1."""
    targets = getattr(dataset, "targets", None)
    return torch.as_tensor(np.asarray(targets if targets is not None else dataset.labels)[kept])


def _bare(name: str) -> str:
    """A class name as lower-case letters and digits only: a reader's "Allens_Hummingbird" is "Allens Hummingbird"."""
    return "".join(ch for ch in name.casefold() if ch.isalnum())


def check_classes(dataset: Any, spec_: BenchmarkSpec, names: Sequence[str], data: Path) -> None:
    """A reader's classes and a spec's labels must pair up one to one (a mismatch would score against wrong labels).
    Where several classes share a label (ObjectNet's 125 ImageNet classes for its 113), the labels are counted.
    Where the dataset's own class names are the spec's names in another order (read from the dataset's metadata:
    Cars' cars_meta.mat, FGVC's variants.txt, Birdsnap's folders), the spec's order is wrong for these files; a spec
    with `label_names` (ObjectNet's folders) is compared by those."""
    classes = getattr(dataset, "classes", None)
    class_labels = getattr(spec_, "class_labels", ())
    n_labels = max(class_labels) + 1 if class_labels else len(names)
    if classes and len(classes) != n_labels:
        raise DataError(f"{data}: the reader found {len(classes)} classes but the dataset's spec has {n_labels}")
    expected = list(getattr(spec_, "label_names", ()) or names)
    theirs, ours = [_bare(str(c)) for c in classes or ()], [_bare(n) for n in expected]
    if theirs != ours and sorted(theirs) == sorted(ours) and len(set(ours)) == len(ours):
        i = next(i for i, (a, b) in enumerate(zip(theirs, ours)) if a != b)
        field_ = "label_names" if getattr(spec_, "label_names", ()) else "classnames"
        raise DataError(f"{data}: the dataset's class {i} is {classes[i]!r} but the spec's class {i} is "
                        f"{expected[i]!r}; its names are the spec's in another order, which would score against "
                        f"wrong labels: put the {field_} of benchmark_data/{spec_.name}.json in the dataset's order")


def label_pool(spec_: BenchmarkSpec) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """(N, C) logits -> (N, labels) where several classes share a label (ObjectNet), else None."""
    class_labels = getattr(spec_, "class_labels", ())
    if not class_labels:
        return None
    from .metrics import pool_by_label

    return lambda logits: pool_by_label(logits, class_labels)


def classifier(model: Any, spec_: BenchmarkSpec, names: Sequence[str], templates: Sequence[str], *,
               memo: dict[tuple[tuple[str, ...], tuple[str, ...]], torch.Tensor] | None = None) -> torch.Tensor:
    """(E, C) zero-shot weights, as `zero_shot_classifier`'s: a class's column is the normalised mean of its name x
    template embeddings (a class with several names, spec.synonyms (FER2013), averages them all). `memo` keeps each
    column by (names, templates) for the next dataset of the same model: ImageNet's 80,000 prompts are encoded once
    for ImageNet and its five shifts, whose classes are ImageNet's."""
    memo = {} if memo is None else memo
    synonyms = getattr(spec_, "synonyms", ())
    keys = [(tuple(synonyms[i]) if i < len(synonyms) and synonyms[i] else (name,), tuple(templates))
            for i, name in enumerate(names)]
    todo = [key for key in dict.fromkeys(keys) if key not in memo]
    if todo:
        texts = [t.format(n) for class_names, _ in todo for n in class_names for t in templates]
        embeddings = encode_texts(model, texts)  # (sum of names x templates, E), L2-normalised rows
        start = 0
        for key in todo:
            end = start + len(key[0]) * len(templates)
            memo[key] = torch.nn.functional.normalize(embeddings[start:end].mean(dim=0), dim=0)
            start = end
    return torch.stack([memo[key] for key in keys], dim=1)


def _zeroshot(model: _LazyModel, spec_: BenchmarkSpec, data: Path, **kw: Any) -> dict[str, Any]:
    dataset = _open(spec_, data, "test")  # before the model loads: a missing set costs nothing
    if not spec_.classnames and not spec_.classes_from:  # a NAME=PATH set: its own names
        spec_ = replace(spec_, classnames=tuple(dataset.classes))
    names, templates = prompts(spec_)
    check_classes(dataset, spec_, names, data)
    x, kept = _features(model, dataset, **kw)
    weights = classifier(model.get()[0], spec_, names, templates, memo=model.class_weights)
    metrics = benchmark_metric(spec_, zero_shot_logits(torch.from_numpy(x), weights), _truth(dataset, kept))
    return {"split": "test", "n_images": len(kept), "n_skipped": len(dataset) - len(kept), "n_classes": len(names),
            "n_templates": len(templates), "metrics": metrics, "columns": {spec_.name: metrics["score"]}}


def _linear_probe(model: _LazyModel, spec_: BenchmarkSpec, data: Path, *, desc: str, **kw: Any) -> dict[str, Any]:
    """A probe fitted on the dataset's train split and scored on its test split; a distribution shift of another
    dataset (ImageNet-V2/-Sketch/-A/-R, ObjectNet: `classes_from`) is scored with the probe fitted on that one's
    train split (`<root>/imagenet`), as the paper's Figure 14 compares them, over its classes (subset, pooled)."""
    parent = spec(spec_.classes_from) if spec_.classes_from else None
    train_spec, train_data = (parent, data.parent / parent.name) if parent else (spec_, data)
    test = _open(spec_, data, "test")  # before the probe: a missing test set costs no fit
    probe = _fitted_probe(model, train_spec, train_data, desc=desc, **kw)
    x, kept = _features(model, test, desc=f"{desc} test", **kw)
    y = np.asarray(test.labels)[kept]
    n_classes = len(train_spec.classnames) or max(len(getattr(test, "classes", ()) or ()), int(y.max()) + 1)
    metrics = benchmark_metric(spec_, _probe_scores(probe["model"], x, n_classes), torch.as_tensor(y))
    return {"split": f"{train_spec.name} train -> test", "n_images": len(y), "n_train": probe["n_train"],
            "n_skipped": len(test) - len(y) + probe["n_skipped"], "c": probe["c"], "val_top1": probe["val_top1"],
            "metrics": metrics, "columns": {spec_.name: metrics["score"]}}


def _fitted_probe(model: _LazyModel, train_spec: BenchmarkSpec, data: Path, *, desc: str, **kw: Any
                  ) -> dict[str, Any]:
    """The probe on a dataset's train split (C chosen on a validation split of it, then refitted on all of it),
    fitted once per model and dataset in a run: ImageNet's serves all five shifts."""
    if train_spec.name not in model.probes:
        train = _open(train_spec, data, "train")
        x, kept = _features(model, train, desc=f"{desc} train", **kw)
        y = np.asarray(train.labels)[kept]
        tr, va = lp.split_train_val(y, 0.2, seed=0)
        c, sweep = lp.select_c(x[tr], y[tr], x[va], y[va])
        model.probes[train_spec.name] = {"model": lp.fit(x, y, c), "c": c, "val_top1": sweep[c], "n_train": len(y),
                                         "n_skipped": len(train) - len(y)}
    return model.probes[train_spec.name]


def _probe_scores(probe: Any, x: np.ndarray, n_classes: int) -> torch.Tensor:
    """(N, n_classes) probabilities of a fitted probe (ranked as its logits are); classes absent from its training
    set score -1, below every probability."""
    scores = np.full((len(x), n_classes), -1.0, dtype=np.float32)
    scores[:, probe.classes_] = probe.predict_proba(x)
    return torch.from_numpy(scores)


def _retrieval(model: _LazyModel, spec_: BenchmarkSpec, data: Path, **kw: Any) -> dict[str, Any]:
    dataset = _open(spec_, data, "test")
    x, kept = _features(model, dataset, **kw)
    captions, owner = [], []  # unreadable images leave with their captions; the rest are renumbered 0..n-1
    for new, old in enumerate(kept.tolist()):
        captions += dataset.captions[old]
        owner += [new] * len(dataset.captions[old])
    clip, _ = model.get()
    txt = text_features(clip, captions, cache=kw["cache"], checkpoint=model.checkpoint,
                        batch_size=4 * kw["batch_size"])
    recalls = recall_at_k_chunked(torch.from_numpy(x), txt, owner, _RECALL_KS)
    return {"split": "test", "n_images": len(kept), "n_captions": len(captions),
            "n_skipped": len(dataset) - len(kept), "metrics": {"score": recalls["image_to_text_R@1"], **recalls},
            "columns": {f"{spec_.name} {column}": recalls[key] for column, key in _RETRIEVAL_COLUMNS}}


# ---------------------------------------------------------------- the merged table
def write_tables(out: str | os.PathLike, *, missing: Sequence[Cell] = (), models: Sequence[str] = (),
                 datasets: Sequence[str] = ()) -> tuple[Path, Path]:
    """`<out>/table.md` and `<out>/table.csv` from every cell under `<out>/cells`, in percent: per task, a row per
    model and a column per dataset, and a "(paper)" row under each of OpenAI's models. Columns are in the paper's order
    (Table 11's 27, then the ImageNet shifts, then retrieval) whatever order runs added them in, a user's own sets
    after them in `datasets` order; rows put `models` (the last run's) first in their order, other models by name."""
    out = Path(out)
    cells = [c for c in (_read_cell(p) for p in sorted((out / "cells").glob("*/*/*.json"))) if c]
    order = {name: i for i, name in enumerate([*SPECS, *(name for name in datasets if name not in SPECS)])}
    rank = {name: i for i, name in enumerate(models)}
    md = ["# Benchmark", "", "Scores in percent: each dataset's metric as the paper reports it (Table 9). A `(paper)` "
          "row gives the paper's published figure for that OpenAI model: zero-shot Table 11, linear probe Table 10 "
          "(the ImageNet shifts: Table 16, ViT-L/14@336px only), retrieval Table 13 (its CLIP row, filed under "
          "ViT-L/14@336px); `-` means not evaluated or not published.", ""]
    rows_csv: list[dict[str, Any]] = []
    header = ["task", "model", "source"]
    for task in TASKS:
        mine = sorted((c for c in cells if c.get("task") == task), key=lambda c: order.get(c["dataset"], len(order)))
        if not mine:
            continue
        columns = list(dict.fromkeys(col for c in mine for col in c["columns"]))
        rows = sorted(dict.fromkeys(c["model"] for c in mine), key=lambda m: (rank.get(m, len(rank)), m))
        table = []
        for name in rows:
            own = {col: v for c in mine if c["model"] == name for col, v in c["columns"].items()}
            table.append((name, "clipworks", [100 * own[col] if col in own else None for col in columns]))
            paper = {col: v for c in mine if c["model"] == name for col, v in _published(c).items()}
            if paper:
                table.append((f"{name} (paper)", "paper", [paper.get(col) for col in columns]))
        fmt = lambda v: "-" if v is None else f"{v:.1f}"  # noqa: E731
        metrics = ", ".join(f"{c['dataset']} {c['metric'].replace('_', ' ')}"
                            for c in {c["dataset"]: c for c in mine}.values())
        md += [f"## {_TASK_TITLES[task]}", "", markdown_table(["model", *columns],
                                                            [(name, *map(fmt, values)) for name, _, values in table]),
               "", f"Metrics: {metrics}.", ""]
        header += [col for col in columns if col not in header]
        rows_csv += [{"task": task, "model": name.removesuffix(" (paper)"), "source": source,
                      **{col: round(v, 4) for col, v in zip(columns, values) if v is not None}}
                     for name, source, values in table]
    if missing:
        md += ["## Not evaluated in the last run", "",
               *(f"- {c.model} {c.dataset} {c.task}: {c.reason}" for c in missing), ""]
    text = io.StringIO()
    writer = csv.DictWriter(text, header, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows_csv)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "table.md", "\n".join(md))
    write_text_atomic(out / "table.csv", text.getvalue())
    return out / "table.md", out / "table.csv"
