"""Readers of the evaluation datasets stored as image files: class folders, split lists or annotation files.

GTSRB, EuroSAT, RESISC45, DTD, Food-101, SUN397, Country211, Rendered SST2, Hateful Memes and CLEVR (counts), each
in its release's or torchvision's layout (torchvision/datasets/*.py, the dataset pages). Every reader's docstring
states its label order, which the benchmark specs' class names follow. Samples are in sorted path order.

EuroSAT has no official split, and RESISC45's is optional: the paper drew a fixed random subset of the sizes in its
Table 9. We draw ours by hashing each image's path relative to the dataset folder (SHA-256) and taking the
lowest hashes as test and the next ones as train, in the paper's proportions: the same images on every machine and
for every numpy version, and test and train never overlap. The paper's exact images are not published, so scores
can differ from its figures by the sampling noise of a 5,000-image test set.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Iterable
from pathlib import Path

from ...errors import DataError
from ..datasets import IMAGE_EXTENSIONS, LabelledImages
from ..tables import nonblank_lines
from . import find, labelled, reader


def _class_folders(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _images(folder: Path, extensions: Iterable[str] = IMAGE_EXTENSIONS) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in set(extensions))


def _from_folders(folders: list[Path], classes: list[str], source: Path) -> LabelledImages:
    """Images in `<folder>/<class>/` for each folder, labelled by the class's position in `classes`."""
    index = {name: i for i, name in enumerate(classes)}
    paths, labels = [], []
    for folder in folders:
        for name in _class_folders(folder):
            if name not in index:
                raise DataError(f"{folder / name} is not one of the {len(classes)} classes of {source}")
            images = _images(folder / name)
            paths += images
            labels += [index[name]] * len(images)
    return labelled(paths, labels, classes, source)


def _hash_split(base: Path, paths: list[Path], labels: list[int], split: str, *, test: float, train: float
                ) -> tuple[list[Path], list[int]]:
    """The `split` part of a fixed pseudo-random split: the `test` fraction of images with the lowest path hashes,
    then the next `train` fraction (see the module docstring)."""
    def rank(path: Path) -> str:
        return hashlib.sha256(path.relative_to(base).as_posix().encode()).hexdigest()

    order = sorted(range(len(paths)), key=lambda i: rank(paths[i]))
    n_test, n_train = round(len(paths) * test), round(len(paths) * train)
    chosen = sorted(order[:n_test] if split == "test" else order[n_test:n_test + n_train])
    return [paths[i] for i in chosen], [labels[i] for i in chosen]


GTSRB_CLASSES = [f"{i:05d}" for i in range(43)]


@reader("gtsrb")
def read_gtsrb(root: Path, split: str) -> LabelledImages:
    """torchvision's `gtsrb/`: test = `GTSRB/Final_Test/Images/*.ppm` labelled by `GT-final_test.csv`
    (semicolon-separated Filename;...;ClassId); train = `GTSRB/Training/<00000..00042>/*.ppm`. Labels are the
    ClassIds 0..42; classes "00000" ... "00042" (the training folder names).
    """
    if split == "train":
        folder = find(root, "GTSRB/Training", "gtsrb/GTSRB/Training")
        paths, labels = [], []
        for name in _class_folders(folder):
            if name not in GTSRB_CLASSES:
                raise DataError(f"{folder / name}: GTSRB's class folders are 00000 ... 00042")
            images = _images(folder / name, {".ppm"})
            paths += images
            labels += [int(name)] * len(images)
        return labelled(paths, labels, list(GTSRB_CLASSES), folder)
    table = find(root, "GT-final_test.csv", "gtsrb/GT-final_test.csv")
    images = find(table.parent, "GTSRB/Final_Test/Images")
    with open(table, newline="") as f:
        reader = csv.DictReader(f, delimiter=";", skipinitialspace=True)
        numbered = [(reader.line_num, row) for row in reader]  # (line number, row)
    columns, rows = reader.fieldnames or [], [row for _, row in numbered]
    if rows and not {"Filename", "ClassId"} <= set(columns):
        raise DataError(f"{table} has columns {', '.join(columns)}; expected Filename;...;ClassId separated by ;")
    labels = []
    for number, r in numbered:
        try:
            labels.append(int(r["ClassId"]))
        except (TypeError, ValueError):  # TypeError: None, a row that ends before its ClassId
            found = "no ClassId" if r["ClassId"] is None else f"ClassId {r['ClassId']!r}"
            raise DataError(f"{table} line {number} has {found}; expected a whole number 0..42") from None
    if any(not 0 <= label < len(GTSRB_CLASSES) for label in labels):
        raise DataError(f"{table} has ClassIds outside 0..42")
    return labelled([images / r["Filename"] for r in rows], labels, list(GTSRB_CLASSES), table)


@reader("eurosat")
def read_eurosat(root: Path, split: str) -> LabelledImages:
    """EuroSAT RGB: `2750/<Class>/*.jpg` (or `eurosat/2750/`, `EuroSAT_RGB/`, or the class folders directly).
    Labels in sorted folder order: AnnualCrop, Forest, HerbaceousVegetation, Highway, Industrial, Pasture,
    PermanentCrop, Residential, River, SeaLake. Split: the paper's sizes as fractions of the 27,000 images, test
    5,000/27,000 and train 10,000/27,000, drawn by path hash (module docstring).
    """
    base = find(root, "2750/AnnualCrop", "eurosat/2750/AnnualCrop", "EuroSAT_RGB/AnnualCrop", "EuroSAT/AnnualCrop",
                "AnnualCrop").parent
    data = _from_folders([base], _class_folders(base), base)
    paths, labels = _hash_split(base, data.paths, data.labels, split, test=5000 / 27000, train=10000 / 27000)
    return labelled(paths, labels, data.classes, base)


@reader("resisc45")
def read_resisc45(root: Path, split: str) -> LabelledImages:
    """NWPU-RESISC45: `NWPU-RESISC45/<class>/*.jpg`, labels in sorted folder order (airplane, airport,
    baseball_diamond, ..., wetland). With the TFDS/VTAB split lists `resisc45-{train,val,test}.txt` (file names like
    airplane_001.jpg, beside or inside the image folder): test = resisc45-test.txt, train = train + val lists.
    Without them, the paper's sizes drawn by path hash: test 25,200/31,500, train 3,150/31,500 (module docstring).
    """
    base = find(root, "NWPU-RESISC45/airplane", "airplane").parent
    classes = _class_folders(base)
    lists = [base.parent / f"resisc45-{split}.txt", base / f"resisc45-{split}.txt"]
    if not any(p.exists() for p in lists):
        data = _from_folders([base], classes, base)
        paths, labels = _hash_split(base, data.paths, data.labels, split, test=0.8, train=0.1)
        return labelled(paths, labels, classes, base)
    index = {name: i for i, name in enumerate(classes)}
    paths, labels = [], []
    for part in ("test",) if split == "test" else ("train", "val"):
        listing = find(base.parent, f"resisc45-{part}.txt", f"{base.name}/resisc45-{part}.txt")
        for name in nonblank_lines(listing):
            folder = name.rsplit("_", 1)[0]
            if folder not in index:
                raise DataError(f"{listing}: {name} names class {folder!r}, which has no folder in {base}")
            paths.append(base / folder / name)
            labels.append(index[folder])
    return labelled(paths, labels, classes, base)


@reader("dtd")
def read_dtd(root: Path, split: str) -> LabelledImages:
    """DTD: `dtd/images/<class>/*.jpg` with the split lists `dtd/labels/{test,train,val}1.txt` (partition 1):
    test = test1, train = train1 + val1 (3,760 images, as the paper's Table 9). Labels in sorted folder order
    (banded, blotchy, braided, ..., zigzagged).
    """
    base = find(root, "dtd/labels/test1.txt", "labels/test1.txt", "dtd/dtd/labels/test1.txt").parent.parent
    classes = _class_folders(find(base, "images"))
    index = {name: i for i, name in enumerate(classes)}
    paths, labels = [], []
    for part in ("test",) if split == "test" else ("train", "val"):
        listing = find(base, f"labels/{part}1.txt")
        for line in nonblank_lines(listing):
            name = line.split("/")[0]
            if name not in index:
                raise DataError(f"{listing}: {line} is not in a class folder of {base / 'images'}")
            paths.append(base / "images" / line)
            labels.append(index[name])
    return labelled(paths, labels, classes, base)


@reader("food101")
def read_food101(root: Path, split: str) -> LabelledImages:
    """Food-101: `food-101/images/<class>/<id>.jpg` with `meta/{test,train}.txt` (lines <class>/<id>) and
    `meta/classes.txt`, whose order (alphabetical: apple_pie, baby_back_ribs, ...) the labels follow.
    """
    base = find(root, "food-101/meta/classes.txt", "meta/classes.txt").parent.parent
    classes = nonblank_lines(base / "meta" / "classes.txt")
    index = {name: i for i, name in enumerate(classes)}
    listing = find(base, f"meta/{split}.txt")
    paths, labels = [], []
    for line in nonblank_lines(listing):
        name = line.split("/")[0]
        if name not in index:
            raise DataError(f"{listing}: {line} is of a class not in {base / 'meta' / 'classes.txt'}")
        paths.append(base / "images" / f"{line}.jpg")
        labels.append(index[name])
    return labelled(paths, labels, classes, base)


@reader("sun397")
def read_sun397(root: Path, split: str) -> LabelledImages:
    """SUN397: `SUN397/<letter>/<class path>/*.jpg` with `ClassName.txt` (lines /a/abbey, /a/apartment_building/
    outdoor) and the partition lists `Partitions/{Testing,Training}_01.txt` (beside or inside SUN397/). Classes are
    ClassName.txt's entries without the letter ("abbey", "apartment_building/outdoor"), in that file's order
    (alphabetical).
    """
    base = find(root, "SUN397/ClassName.txt", "ClassName.txt").parent
    entries = nonblank_lines(base / "ClassName.txt")
    flat = next((entry for entry in entries if "/" not in entry.strip("/")), None)
    if flat is not None:
        raise DataError(f"{base / 'ClassName.txt'} has the line {flat!r}; expected /<letter>/<class> lines, "
                        "e.g. /a/abbey")
    classes = [entry.strip("/").split("/", 1)[1] for entry in entries]
    index = {entry.strip("/"): i for i, entry in enumerate(entries)}  # "a/abbey" -> 0
    name = f"{'Testing' if split == 'test' else 'Training'}_01.txt"
    listing = find(base, f"Partitions/{name}", f"../Partitions/{name}")
    paths, labels = [], []
    for line in nonblank_lines(listing):
        folder = line.strip("/").rsplit("/", 1)[0]
        if folder not in index:
            raise DataError(f"{listing}: {line} is in no class of {base / 'ClassName.txt'}")
        paths.append(base / line.strip("/"))
        labels.append(index[folder])
    return labelled(paths, labels, classes, base)


@reader("country211")
def read_country211(root: Path, split: str) -> LabelledImages:
    """Country211 (OpenAI): `country211/{test,train,valid}/<ISO code>/*.jpg`; train = train + valid. Labels in
    sorted folder order of test/ (the 211 ISO 3166 codes: AD, AE, AF, ...).
    """
    base = find(root, "country211/test", "test").parent
    parts = ["test"] if split == "test" else ["train", "valid"]
    folders = [find(base, part) for part in parts if part == "train" or (base / part).exists()]
    return _from_folders(folders, _class_folders(base / "test"), base)


@reader("rendered_sst2")
def read_rendered_sst2(root: Path, split: str) -> LabelledImages:
    """Rendered SST2 (OpenAI): `rendered-sst2/{test,train,valid}/{negative,positive}/*.png`; train = train + valid
    (7,792, as the paper's Table 9). Labels: negative 0, positive 1 (sorted folders).
    """
    base = find(root, "rendered-sst2/test", "test").parent
    parts = ["test"] if split == "test" else ["train", "valid"]
    folders = [find(base, part) for part in parts if part == "train" or (base / part).exists()]
    return _from_folders(folders, ["negative", "positive"], base)


@reader("hateful_memes")
def read_hateful_memes(root: Path, split: str) -> LabelledImages:
    """Hateful Memes: `hateful_memes/img/*.png` with JSON-lines files of id,img,label,text: test = dev_seen.jsonl
    (or the first release's dev.jsonl: the 500 images of the paper's Table 9), train = train.jsonl. Labels are the
    files' 0/1: "not hateful", "hateful". (The meme text is not used: CLIP sees only the image.)
    """
    base = find(root, "hateful_memes/img", "img").parent
    listing = find(base, "dev_seen.jsonl", "dev.jsonl") if split == "test" else find(base, "train.jsonl")
    paths, labels = [], []
    for number, line in enumerate(nonblank_lines(listing), 1):
        try:
            entry = json.loads(line)
            paths.append(base / entry["img"])
            labels.append(int(entry["label"]))
        except (ValueError, KeyError, TypeError) as e:
            raise DataError(f"{listing} line {number}: expected a JSON object with img and label 0/1 "
                            f"({type(e).__name__}: {e})") from None
        if labels[-1] not in (0, 1):
            raise DataError(f"{listing} line {number}: label {labels[-1]}; expected 0 or 1")
    return labelled(paths, labels, ["not hateful", "hateful"], listing)


CLEVR_COUNTS = range(3, 11)  # CLEVR scenes hold 3 to 10 objects: 8 classes, as VTAB's clevr count_all


@reader("clevr_counts")
def read_clevr_counts(root: Path, split: str) -> LabelledImages:
    """CLEVR v1.0 counting: `CLEVR_v1.0/images/{val,train}/*.png` with `scenes/CLEVR_{val,train}_scenes.json`;
    test = val (CLEVR's test scenes are unreleased), train = train. Label = number of objects - 3; classes
    "3" ... "10". The paper used subsets (2,000 train, 500 test, Table 9) that are not published: these are the
    whole splits.
    """
    part = "val" if split == "test" else "train"
    base = find(root, f"CLEVR_v1.0/scenes/CLEVR_{part}_scenes.json", f"scenes/CLEVR_{part}_scenes.json",
                f"clevr/CLEVR_v1.0/scenes/CLEVR_{part}_scenes.json").parent.parent
    scenes_file = base / "scenes" / f"CLEVR_{part}_scenes.json"
    try:
        scenes = json.loads(scenes_file.read_text())["scenes"]
        counts = {scene["image_filename"]: len(scene["objects"]) for scene in scenes}
    except (ValueError, KeyError, TypeError) as e:
        raise DataError(f"{scenes_file} is not a CLEVR scenes file ({type(e).__name__}: {e})") from None
    wrong = [name for name, n in counts.items() if n not in CLEVR_COUNTS]
    if wrong:
        raise DataError(f"{scenes_file}: {wrong[0]} has {counts[wrong[0]]} objects; CLEVR counts are 3 to 10")
    names = sorted(counts)
    return labelled([base / "images" / part / name for name in names], [counts[n] - 3 for n in names],
                    [str(n) for n in CLEVR_COUNTS], scenes_file)
