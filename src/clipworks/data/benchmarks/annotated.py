"""Readers for benchmark datasets whose labels live in annotation files: Stanford Cars, FGVC Aircraft, Oxford-IIIT
Pets, Caltech-101, Flowers-102, Birdsnap, Pascal VOC 2007 (multi-label) and KITTI distance.

Each reads the dataset's official layout (or torchvision's, which is the official one inside a named folder: `root`
may be either the dataset's own folder or the folder holding it). The label order, which the benchmark specs'
class names follow, is the dataset's own:
- cars: `devkit/cars_meta.mat` class_names order (the annotations' 1-based `class`, minus one).
- fgvc_aircraft: `data/variants.txt` line order (variant level; train = the `trainval` list, as the paper's 6,667).
- pets: the annotation files' 1-based CLASS-ID, minus one; names are the breed part of the image ids.
- caltech101: the 102 folders of `101_ObjectCategories` in Python's sorted order (upper case first), keeping
  BACKGROUND_Google as CLIP's class list (it starts with 'background') and TFDS/VTAB do. The paper's split (Table 9:
  3,060 train) is 30 random images per class for train and the rest for test, as TFDS draws it; ours is drawn by a
  RandomState(1234) over each class's sorted file names in sorted class order: the same sizes, not the same images.
- flowers102: `imagelabels.mat` labels 1..102, minus one (no names ship with the data; classes are "1".."102").
  Test is `tstid`; train is `trnid` + `valid` (the paper's 2,040).
- birdsnap: the species' image folder names (`species.txt`'s `dir`, e.g. Coopers_Hawk), sorted: the order of
  CLIP's Birdsnap class names, which are these names with spaces. Images not on disk (removed from Flickr) are
  left out, as the paper's counts show.
- voc2007: the 20 VOC classes in alphabetical order (VOC's own order); targets from `Annotations/*.xml`.
- kitti_distance: VTAB's closest-vehicle-distance task (task_adaptation/data/kitti.py): the smallest camera depth z
  of a Car, Van or Truck in `label_2`; 0 if z <= 8 m, 1 if 8 < z <= 20, 2 if z > 20, 3 with no vehicle. The split
  is TFDS kitti 3.1.0's, by drive (devkit `mapping/train_rand.txt` + `train_mapping.txt`, RandomState(123): 10% of
  drives for test, then 10% for validation); test is its 711 images, train its train + validation (6,770).
"""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import ConfigError, DataError
from ..datasets import IMAGE_EXTENSIONS, LabelledImages, MultiLabelImages
from ..tables import nonblank_lines, split_lines
from . import SPLITS, labelled, reader

log = logging.getLogger(__name__)

VOC_CLASSES = ("aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable",
               "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor")
KITTI_VEHICLES = frozenset({"Car", "Van", "Truck"})
KITTI_BINS = (8.0, 20.0, 999.0)  # VTAB's thresholds: depth <= 8, <= 20, <= 999 metres; beyond (no vehicle) is 3
KITTI_CLASSES = ("vehicle within 8 m", "vehicle 8 to 20 m away", "vehicle over 20 m away", "no vehicle")


# ---- layout helpers, shared by the other reader modules ----

def inside(root: Path, *names: str) -> Path:
    """`root/name` for the first of `names` that is a folder (the folder an archive extracts to), else `root`."""
    for name in names:
        if (root / name).is_dir():
            return root / name
    return root


def need(path: Path, dataset: str, what: str = "") -> Path:
    """`path` if it exists; else a one-line FileNotFoundError naming it."""
    if not path.exists():
        raise FileNotFoundError(f"{dataset}: expected {path}" + (f" ({what})" if what else ""))
    return path


def first_existing(paths: list[Path], dataset: str, what: str = "") -> Path:
    """The first of `paths` that exists; else a one-line FileNotFoundError naming the first."""
    for path in paths:
        if path.exists():
            return path
    return need(paths[0], dataset, what)


def image_files(folder: Path) -> list[Path]:
    """The image files under `folder`, sorted."""
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())


def check_split(dataset: str, split: str, splits: tuple[str, ...] = SPLITS) -> None:
    if split not in splits:
        raise ConfigError(f"{dataset} has the splits {', '.join(splits)}; got {split!r}")


def loadmat(path: Path, dataset: str, *keys: str) -> list[Any]:
    """The named variables of a MATLAB file (squeezed, as 1-d arrays); a one-line error if one is missing."""
    from scipy.io import loadmat as scipy_loadmat  # scipy comes with scikit-learn

    need(path, dataset)
    try:
        mat = scipy_loadmat(path, squeeze_me=True)
    except Exception as e:
        raise DataError(f"{dataset}: {path} is not a readable MATLAB file ({type(e).__name__}: {e})") from None
    missing = [k for k in keys if k not in mat]
    if missing:
        raise DataError(f"{dataset}: {path} has no variable {missing[0]!r}; is it the dataset's own file?")
    return [np.atleast_1d(mat[k]) for k in keys]


def read_lines(path: Path, dataset: str) -> list[str]:
    """The non-empty lines of a text file, stripped (`nonblank_lines`); a missing file is one error naming it."""
    return nonblank_lines(need(path, dataset))


# ---- readers ----

@reader("cars")
def read_cars(root: Path, split: str) -> LabelledImages:
    check_split("cars", split)
    base = inside(root, "stanford_cars")
    devkit = base / "devkit"
    (class_names,) = loadmat(devkit / "cars_meta.mat", "cars", "class_names")
    if split == "train":
        annos, images = devkit / "cars_train_annos.mat", base / "cars_train"
    else:
        annos = first_existing([base / "cars_test_annos_withlabels.mat", devkit / "cars_test_annos_withlabels.mat"],
                               "cars", "the test labels")
        images = base / "cars_test"
    (annotations,) = loadmat(annos, "cars", "annotations")
    need(images, "cars")
    try:
        paths = [images / str(a["fname"]) for a in annotations]
        labels = [int(a["class"]) - 1 for a in annotations]
    except (ValueError, KeyError, IndexError):
        raise DataError(f"cars: the annotations in {annos} have no 'fname' and 'class' fields") from None
    return labelled(paths, labels, [str(c) for c in class_names], annos)


@reader("fgvc_aircraft")
def read_fgvc_aircraft(root: Path, split: str) -> LabelledImages:
    check_split("fgvc_aircraft", split)
    data = inside(root, "fgvc-aircraft-2013b") / "data"
    classes = read_lines(data / "variants.txt", "fgvc_aircraft")
    index = {name: i for i, name in enumerate(classes)}
    listing = data / f"images_variant_{'trainval' if split == 'train' else 'test'}.txt"
    paths, labels = [], []
    for line in read_lines(listing, "fgvc_aircraft"):
        image_id, _, variant = line.partition(" ")
        if variant not in index:
            raise DataError(f"fgvc_aircraft: {listing} names the variant {variant!r}, which is not in variants.txt")
        paths.append(data / "images" / f"{image_id}.jpg")
        labels.append(index[variant])
    return labelled(paths, labels, classes, listing)


@reader("pets")
def read_pets(root: Path, split: str) -> LabelledImages:
    check_split("pets", split)
    base = inside(root, "oxford-iiit-pet")
    listing = base / "annotations" / ("trainval.txt" if split == "train" else "test.txt")
    names: dict[int, str] = {}

    def rows(path: Path) -> list[tuple[str, int]]:
        out = []
        for line in read_lines(path, "pets"):
            if line.startswith("#"):
                continue
            fields = line.split()
            if len(fields) < 2 or not fields[1].isdigit():
                raise DataError(f"pets: {path} has a line {line!r}; expected 'IMAGE_ID CLASS-ID SPECIES BREED-ID'")
            out.append((fields[0], int(fields[1]) - 1))
            names.setdefault(out[-1][1], fields[0].rsplit("_", 1)[0])
        return out

    samples = rows(listing)
    if not samples:
        raise DataError(f"pets: {listing} lists no images")
    other = base / "annotations" / ("test.txt" if split == "train" else "trainval.txt")
    if other.is_file():
        rows(other)  # the other split's file names the breeds this one may lack
    classes = [names.get(i, str(i + 1)) for i in range(max(names) + 1)]
    paths = [base / "images" / f"{image_id}.jpg" for image_id, _ in samples]
    return labelled(paths, [label for _, label in samples], classes, listing)


@reader("caltech101")
def read_caltech101(root: Path, split: str, *, n_train: int = 30) -> LabelledImages:
    check_split("caltech101", split)
    folder = need(inside(root, "caltech101") / "101_ObjectCategories", "caltech101", "one folder per class")
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir())
    rng = np.random.RandomState(1234)
    paths, labels = [], []
    for label, name in enumerate(classes):
        files = sorted(p for p in (folder / name).iterdir() if p.suffix.lower() == ".jpg")
        if len(files) <= n_train:
            raise DataError(f"caltech101: {folder / name} has {len(files)} images; every class has more than "
                            f"{n_train} (the train split takes {n_train} per class)")
        train = set(rng.choice(len(files), n_train, replace=False).tolist())
        chosen = [f for i, f in enumerate(files) if (i in train) == (split == "train")]
        paths += chosen
        labels += [label] * len(chosen)
    return labelled(paths, labels, classes, folder)


@reader("flowers102")
def read_flowers102(root: Path, split: str) -> LabelledImages:
    check_split("flowers102", split)
    base = inside(root, "flowers-102")
    (image_labels,) = loadmat(base / "imagelabels.mat", "flowers102", "labels")
    trnid, valid, tstid = loadmat(base / "setid.mat", "flowers102", "trnid", "valid", "tstid")
    ids = np.concatenate([trnid, valid]) if split == "train" else tstid
    need(base / "jpg", "flowers102")
    paths = [base / "jpg" / f"image_{int(i):05d}.jpg" for i in ids]
    labels = [int(image_labels[int(i) - 1]) - 1 for i in ids]
    classes = [str(c) for c in range(1, int(image_labels.max()) + 1)]
    return labelled(paths, labels, classes, base / "setid.mat")


def _tsv(path: Path, dataset: str, *columns: str) -> list[tuple[int, dict[str, str]]]:
    """(line number, fields by column name) of each non-empty line after the header line of a tab-separated file;
    a one-line DataError naming the file (and line) for a header without one of `columns` or a row without them."""
    text = need(path, dataset).read_text(encoding="utf-8")
    lines = [(number, line.split("\t")) for number, line in enumerate(split_lines(text), 1) if line]
    header = lines[0][1] if lines else []
    missing = [c for c in columns if c not in header]
    if missing:
        raise DataError(f"{dataset}: {path} has no column {missing[0]!r} in its header line")
    rows = []
    for number, fields in lines[1:]:
        row = dict(zip(header, fields))
        absent = [c for c in columns if c not in row]
        if absent:
            raise DataError(f"{dataset}: {path} line {number} has {len(fields)} tab-separated fields, no "
                            f"{absent[0]!r}; the header line names {len(header)}")
        rows.append((number, row))
    return rows


def _whole_number(path: Path, dataset: str, number: int, row: dict[str, str], column: str, what: str) -> int:
    try:
        return int(row[column])
    except ValueError:
        raise DataError(f"{dataset}: {path} line {number} has {column} {row[column]!r}; expected a whole number, "
                        f"{what}") from None


@reader("birdsnap")
def read_birdsnap(root: Path, split: str) -> LabelledImages:
    check_split("birdsnap", split)
    base = inside(root, "birdsnap")
    species_file, images_file = base / "species.txt", base / "images.txt"
    species = {_whole_number(species_file, "birdsnap", number, r, "id", "the species' id"): r["dir"]
               for number, r in _tsv(species_file, "birdsnap", "id", "dir")}
    classes = sorted(species.values())
    label_of = {id_: classes.index(folder) for id_, folder in species.items()}
    images = []  # (path, label) of every row of images.txt
    for number, r in _tsv(images_file, "birdsnap", "path", "species_id"):
        id_ = _whole_number(images_file, "birdsnap", number, r, "species_id", "an id of species.txt")
        if id_ not in label_of:
            raise DataError(f"birdsnap: {images_file} line {number} has species_id {id_}, which {species_file} "
                            "does not list")
        images.append((r["path"], label_of[id_]))
    test = set(read_lines(base / "test_images.txt", "birdsnap")) - {"path"}  # less its header line
    folder = first_existing([base / "download" / "images", base / "images"], "birdsnap",
                            "the images get_birdsnap.py downloads")
    rows = [(path, label) for path, label in images if (path in test) == (split == "test")]
    present = [(path, label) for path, label in rows if (folder / path).is_file()]
    if len(present) < len(rows):
        log.warning("birdsnap: %d of the %d %s images are not under %s (removed from Flickr?); using the %d present",
                    len(rows) - len(present), len(rows), split, folder, len(present))
    return labelled([folder / path for path, _ in present], [label for _, label in present], classes, folder)


def voc_targets(annotation: Path, classes: tuple[str, ...] = VOC_CLASSES) -> np.ndarray:
    """(C,) int8: 1 for a class with a non-difficult object, -1 for one with difficult objects only, 0 otherwise."""
    try:
        objects = ET.parse(annotation).getroot().findall("object")
    except ET.ParseError as e:
        raise DataError(f"voc2007: {annotation} is not readable XML ({e})") from None
    target = np.zeros(len(classes), dtype=np.int8)
    index = {name: i for i, name in enumerate(classes)}
    for obj in objects:
        name = (obj.findtext("name") or "").strip()
        if name not in index:
            raise DataError(f"voc2007: {annotation} has an object named {name!r}, not one of the 20 VOC classes")
        difficult = (obj.findtext("difficult") or "0").strip() == "1"
        i = index[name]
        target[i] = 1 if not difficult or target[i] == 1 else -1
    return target


@reader("voc2007")
def read_voc2007(root: Path, split: str) -> MultiLabelImages:
    check_split("voc2007", split)
    base = inside(inside(root, "VOCdevkit"), "VOC2007")
    listing = base / "ImageSets" / "Main" / ("trainval.txt" if split == "train" else "test.txt")
    ids = read_lines(listing, "voc2007")
    if not ids:
        raise DataError(f"{listing} lists no images")
    targets = np.stack([voc_targets(need(base / "Annotations" / f"{i}.xml", "voc2007")) for i in ids])  # (N, 20)
    paths = [base / "JPEGImages" / f"{i}.jpg" for i in ids]
    return MultiLabelImages(paths, targets, list(VOC_CLASSES), transform=None, source=str(listing))


def kitti_label(label_file: Path) -> int:
    """VTAB's closest-vehicle-distance class of one `label_2` file (see the module docstring)."""
    depths = [1000.0]  # VTAB's stand-in depth for "no vehicle"
    for line in read_lines(label_file, "kitti_distance"):
        fields = line.split()
        if len(fields) < 15:
            raise DataError(f"kitti_distance: {label_file} has a line of {len(fields)} fields; KITTI object labels "
                            "have 15 (type truncated occluded alpha bbox*4 dimensions*3 location*3 rotation_y)")
        if fields[0] in KITTI_VEHICLES:
            try:
                depths.append(float(fields[13]))  # location z: metres ahead of the camera
            except ValueError:
                raise DataError(f"kitti_distance: {label_file} has a {fields[0]} at location z {fields[13]!r}; "
                                "expected metres, a number") from None
    depth = min(depths)
    return sum(depth > t for t in KITTI_BINS)


def kitti_split(mapping: Path) -> dict[str, list[int]]:
    """Image ids of TFDS kitti 3.1.0's test split and of its train + validation, split by drive."""
    rand = need(mapping / "train_rand.txt", "kitti_distance", "from the object devkit").read_text()
    lines = read_lines(mapping / "train_mapping.txt", "kitti_distance")
    try:
        drive_of = [lines[int(x) - 1].split(" ")[1] for x in rand.replace("\n", "").split(",") if x.strip()]
    except (ValueError, IndexError):
        raise DataError(f"kitti_distance: {mapping / 'train_rand.txt'} does not index the lines of "
                        "train_mapping.txt ('DATE DRIVE FRAME' per line)") from None
    drives = sorted(set(drive_of))
    rng = np.random.RandomState(123)
    n_held = max(1, 10 * len(drives) // 100)
    test = set(rng.choice(drives, n_held, replace=False).tolist())
    rng.choice(sorted(set(drives) - test), n_held, replace=False)  # TFDS's validation drives: part of our train
    return {"test": [i for i, d in enumerate(drive_of) if d in test],
            "train": [i for i, d in enumerate(drive_of) if d not in test]}


@reader("kitti_distance")
def read_kitti_distance(root: Path, split: str) -> LabelledImages:
    check_split("kitti_distance", split)
    base = inside(root, "Kitti/raw", "kitti")
    mapping = first_existing([base / "mapping", base / "devkit_object" / "mapping", base / "devkit" / "mapping"],
                             "kitti_distance", "the object devkit's mapping folder")
    training = need(base / "training", "kitti_distance")
    ids = kitti_split(mapping)[split]
    paths = [training / "image_2" / f"{i:06d}.png" for i in ids]
    labels = [kitti_label(training / "label_2" / f"{i:06d}.txt") for i in ids]
    return labelled(paths, labels, list(KITTI_CLASSES), training)
