"""What each benchmark of the paper is: its task, class names, prompt templates and metric (Radford et al. 2021,
Table 9 for the 27 datasets and their metrics, Sec. 3.3 / Fig. 13 for the ImageNet distribution shifts, Table 13 for
retrieval).

Data, not code: every dataset's names and templates live in `benchmark_data/<name>.json`, carried over from OpenAI's
`data/prompts.md` (which covers 26 of the 27; ImageNet's names and 80 templates, and CIFAR's, are those already in
`prompts.py`, which the files point at instead of repeating). Each file says where it came from (`source`), the
label order its names are in (`label_order`) and any deliberate change from prompts.md (`note`).

The label order is the contract with the readers (`clipworks.data.benchmarks`): label i of a dataset is
`classnames[i]`. In short:
    CIFAR: batches.meta order · folder datasets (DTD, EuroSAT, RESISC45, Country211 ISO codes, Caltech101 with
    BACKGROUND_Google, ImageNet WordNet ids, ImageNet-Sketch/-A/-R, rendered SST2): sorted folder names ·
    Food-101 meta/classes.txt · SUN397 ClassName.txt · Stanford Cars cars_meta.mat · FGVC variants.txt ·
    Flowers-102 label 1..102 · Pets breed ids 1..37 (names sorted ignoring case) · Birdsnap sorted folders ·
    UCF101 classInd.txt · Kinetics sorted names · GTSRB class ids 0..42 · KITTI distance VTAB's 4 bins ·
    CLEVR counts 3..10 · hateful memes [not hateful, hateful] · PCam [no tumor, tumor] · STL-10 class_names.txt ·
    MNIST 0..9 · FER2013 emotion ids 0..6 · VOC 2007 devkit order · ImageNetV2 folders 0..999 as numbers.
Where that order differs from prompts.md's listing (Pets, VOC 2007, EuroSAT, UCF101, CLEVR, SUN397's jail pair) the
same names are reordered, and the JSON's `note` says so. A reader that returns the dataset's own names (Cars from
cars_meta.mat, FGVC from variants.txt, Birdsnap's folders, ...) is refused by the benchmark when they are the spec's
names in another order (`benchmark.check_classes`).

ImageNet-A and -R cover 200 of ImageNet's classes: `class_subset[i]` is the ImageNet index of their label i (their
sorted WordNet ids), and `classnames` are those ImageNet names, so a 200-way classifier built from `classnames`
equals ImageNet's 1000-way one restricted to the subset. ObjectNet's 113 ImageNet-overlapping classes cover 125
ImageNet classes (ImageNet Testbed's mapping): `class_subset` lists those 125, `class_labels[j]` the ObjectNet label
(index into `label_names`, its sorted folder names) that column j stands for.

The paper's published figures, in percent per OpenAI model, with `paper_source` saying where each was read: `paper`
the zero-shot ones (Table 11 for the 27 datasets, all nine models; Table 16's zero-shot row for the ImageNet shifts,
ViT-L/14@336px), `paper_probe` the linear-probe ones (Table 10, all nine; Table 16's linear-probe row for the
shifts), `paper_recalls` the retrieval ones (Table 13's CLIP row, R@1/5/10 both ways, filed under ViT-L/14@336px).
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ..errors import ConfigError
from . import prompts

DATA_DIR = Path(__file__).with_name("benchmark_data")

Task = Literal["classification", "multilabel", "retrieval"]
Metric = Literal["accuracy", "mean_per_class_recall", "map_11point", "roc_auc", "mean_top1_top5", "recall"]


@dataclass(frozen=True)
class BenchmarkSpec:
    name: str                            # dataset key ("food101", ..., "imagenet_r", "mscoco")
    task: Task
    classnames: tuple[str, ...]          # readable names in the reader's label order (empty for retrieval)
    templates: tuple[str, ...]           # "{}" where the name goes (empty for retrieval)
    metric: Metric                       # the headline number of Table 9 for this dataset
    paper: dict[str, float] = field(default_factory=dict)  # published zero-shot % per OpenAI model ("ViT-B-32")
    paper_source: str = ""               # where the paper's figures were read (table, column, copy of the table)
    paper_probe: dict[str, float] = field(default_factory=dict)  # published linear-probe % per OpenAI model
    paper_recalls: dict[str, dict[str, float]] = field(default_factory=dict)  # retrieval: model -> R@k % by metric
    classes_from: str | None = None      # "imagenet" for the distribution shifts: names/templates are ImageNet's
    class_subset: tuple[int, ...] = ()   # indices into the parent's classes (ImageNet-A/R: 200, ObjectNet: 125)
    class_labels: tuple[int, ...] = ()   # reader label of each class when several share one (ObjectNet: 125 -> 113)
    label_names: tuple[str, ...] = ()    # the dataset's own name of each label, where not 1:1 with classnames
    synonyms: tuple[tuple[str, ...], ...] = ()  # several names per class (FER2013 only); classnames holds the first
    label_order: str = ""                # how the reader's labels map onto classnames, in words
    source: str = ""                     # where the names and templates were carried over from


# Table 9's metric where it is not plain accuracy.
_METRICS: dict[str, Metric] = {
    "fgvc_aircraft": "mean_per_class_recall", "pets": "mean_per_class_recall",
    "caltech101": "mean_per_class_recall", "flowers102": "mean_per_class_recall",
    "voc2007": "map_11point", "hateful_memes": "roc_auc", "kinetics700": "mean_top1_top5",
}

PAPER27: tuple[str, ...] = (
    "food101", "cifar10", "cifar100", "birdsnap", "sun397", "cars", "fgvc_aircraft", "voc2007", "dtd", "pets",
    "caltech101", "flowers102", "mnist", "fer2013", "stl10", "eurosat", "resisc45", "gtsrb", "kitti_distance",
    "country211", "pcam", "ucf101", "kinetics700", "clevr_counts", "hateful_memes", "rendered_sst2", "imagenet",
)
ROBUSTNESS: tuple[str, ...] = ("imagenet_v2", "imagenet_sketch", "imagenet_a", "imagenet_r", "objectnet")
RETRIEVAL: tuple[str, ...] = ("flickr30k", "mscoco")

COLLECTIONS: dict[str, tuple[str, ...]] = {
    "paper27": PAPER27,
    "imagenet-robustness": ("imagenet", *ROBUSTNESS),
    "retrieval": RETRIEVAL,
}


def _read(name: str) -> dict:
    return json.loads((DATA_DIR / f"{name}.json").read_text(encoding="utf-8"))


def _names_and_templates(doc: dict) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """A file either lists its names and templates or points at the tuples in prompts.py."""
    if "classnames_from" in doc:
        return getattr(prompts, doc["classnames_from"]), getattr(prompts, doc["templates_from"])
    return tuple(doc["classnames"]), tuple(doc["templates"])


def _load(name: str) -> BenchmarkSpec:
    doc = _read(name)
    sources = {"paper_source": "\n".join(doc[key] for key in ("paper_source", "paper_probe_source") if key in doc)}
    if name in RETRIEVAL:
        return BenchmarkSpec(name=name, task="retrieval", classnames=(), templates=(), metric="recall",
                             paper_recalls={model: {k: float(v) for k, v in recalls.items()}
                                            for model, recalls in doc.get("paper_recalls", {}).items()},
                             label_order=doc["label_order"], source=doc["source"], **sources)
    subset = tuple(doc.get("class_subset", ()))
    if doc.get("classes_from"):
        parent_names, templates = _names_and_templates(_read(doc["classes_from"]))
        classnames = tuple(parent_names[i] for i in subset) if subset else parent_names
    else:
        classnames, templates = _names_and_templates(doc)
    return BenchmarkSpec(
        name=name,
        task="multilabel" if name == "voc2007" else "classification",
        classnames=classnames,
        templates=templates,
        metric=_METRICS.get(name, "accuracy"),
        paper={model: float(value) for model, value in doc.get("paper", {}).items()},
        paper_probe={model: float(value) for model, value in doc.get("paper_probe", {}).items()},
        **sources,
        classes_from=doc.get("classes_from"),
        class_subset=subset,
        class_labels=tuple(doc.get("class_labels", ())),
        label_names=tuple(doc.get("label_names", ())),
        synonyms=tuple(tuple(names) for names in doc.get("synonyms", ())),
        label_order=doc["label_order"],
        source=doc["source"],
    )


SPECS: dict[str, BenchmarkSpec] = {name: _load(name) for name in (*PAPER27, *ROBUSTNESS, *RETRIEVAL)}


def spec(name: str) -> BenchmarkSpec:
    """The spec of one dataset key; an unknown key raises ConfigError naming the closest known ones."""
    if name not in SPECS:
        close = difflib.get_close_matches(name.lower(), list(SPECS) + list(COLLECTIONS), n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise ConfigError(f"unknown benchmark dataset {name!r}: {hint}known datasets are {', '.join(SPECS)}; "
                          f"collections are {', '.join(COLLECTIONS)}")
    return SPECS[name]

