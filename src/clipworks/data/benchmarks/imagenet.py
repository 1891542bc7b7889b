"""Readers for ImageNet-1k's validation set and the robustness sets evaluated with ImageNet's classes: ImageNet-V2,
ImageNet-Sketch, ImageNet-A, ImageNet-R (Radford et al. 2021, Section 3.3 and Figure 13) and ObjectNet.

Label order:
- imagenet, imagenet_sketch: ImageNet's 1,000 WordNet ids, sorted (the usual class index; OpenAI's ImageNet class
  names are in this order). `classes` are the wnids. ImageNet's val set is read either as class folders named by
  wnid, or as the flat `ILSVRC2012_val_*.JPEG` files with the devkit's `data/ILSVRC2012_validation_ground_truth.txt`
  (ILSVRC2012_IDs in file order) and `data/meta.mat` (ILSVRC2012_ID -> wnid of the 1,000 leaf synsets).
- imagenet_v2: the folder number is the ImageNet class index; `classes` are "0".."999".
- imagenet_a, imagenet_r: their 200 wnid folders, sorted: labels 0..199, `classes` and `wnids` the sorted wnids.
  The benchmark spec's `class_subset` gives those 200 classes' ImageNet indices, so zero-shot classifies among the
  200 names.
- objectnet: the 113 ObjectNet classes that map to ImageNet-1k (those whose label is a key of
  `mappings/objectnet_to_imagenet_1k.json`), in the sorted order of their folder names (`folder_to_objectnet_label.json`
  maps folder to label; alarm_clock, backpack, ...); `classes` are those folder names, as the benchmark spec's
  `label_names`. Sorting the labels instead would not do: "Bath towel" is the folder full_sized_towel. Images of the
  other 200 ObjectNet classes are left out.
  The images are read as they are (their 1-pixel border is not cropped). With the mappings folder's
  `pytorch_to_imagenet_2012_id.json` and `imagenet_to_label_2012_v2`, the dataset's `imagenet_indices[c]` are the
  ImageNet class indices ObjectNet class c maps to, for scoring a 1,000-way classifier by the best of them (as Taori
  et al.'s robustness testbed does).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from ...errors import DataError
from ..datasets import LabelledImages
from ..tables import split_lines
from . import labelled, reader
from .annotated import check_split, first_existing, image_files, inside, loadmat, need, read_lines

WNID = re.compile(r"n\d{8}")


def wnid_folders(folder: Path) -> list[str]:
    """The sorted names of the sub-folders of `folder` that are WordNet ids."""
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and WNID.fullmatch(p.name)) if folder.is_dir() else []


def read_wnid_folders(folder: Path, dataset: str, n_classes: int) -> LabelledImages:
    """`folder/<wnid>/<image>` with exactly `n_classes` wnid folders; labels in sorted-wnid order."""
    wnids = wnid_folders(folder)
    if not wnids:
        raise FileNotFoundError(f"{dataset}: expected {n_classes} class folders named by WordNet id in {folder} "
                                f"({folder}/n01440764/..., or the folder the archive extracts to)")
    if len(wnids) != n_classes:
        raise DataError(f"{dataset}: {folder} has {len(wnids)} class folders named by WordNet id (n01440764 ...); "
                        f"expected {n_classes}")
    paths, labels = [], []
    for label, wnid in enumerate(wnids):
        files = image_files(folder / wnid)
        paths += files
        labels += [label] * len(files)
    dataset_ = labelled(paths, labels, wnids, folder)
    dataset_.wnids = wnids
    return dataset_


def imagenet_devkit_labels(devkit: Path) -> tuple[list[str], list[int]]:
    """(sorted wnids, label of each val image in file order) from the ILSVRC2012 devkit's `data` folder."""
    (synsets,) = loadmat(devkit / "meta.mat", "imagenet", "synsets")
    try:
        leaves = {int(s["ILSVRC2012_ID"]): str(s["WNID"]) for s in synsets if int(s["num_children"]) == 0}
    except (ValueError, KeyError, IndexError):
        raise DataError(f"imagenet: the synsets in {devkit / 'meta.mat'} lack the fields ILSVRC2012_ID, WNID, "
                        "num_children") from None
    wnids = sorted(leaves.values())
    index = {w: i for i, w in enumerate(wnids)}
    truth = devkit / "ILSVRC2012_validation_ground_truth.txt"
    try:
        labels = [index[leaves[int(line)]] for line in read_lines(truth, "imagenet")]
    except (ValueError, KeyError):
        raise DataError(f"imagenet: {truth} should hold one ILSVRC2012_ID (1..1000) per line") from None
    return wnids, labels


@reader("imagenet")
def read_imagenet(root: Path, split: str) -> LabelledImages:
    check_split("imagenet", split)
    if split == "train":
        return read_wnid_folders(root / "train", "imagenet", 1000)
    for folder in (root / "val", root):
        if wnid_folders(folder):
            return read_wnid_folders(folder, "imagenet", 1000)
    images = first_existing([root / "val", root / "ILSVRC2012_img_val", root], "imagenet")
    files = sorted(images.glob("ILSVRC2012_val_*.JPEG"))
    if not files:
        raise FileNotFoundError(f"imagenet: expected class folders {root}/val/n01440764/... or the flat files "
                                f"{images}/ILSVRC2012_val_00000001.JPEG ... with the devkit")
    devkit = first_existing([root / "ILSVRC2012_devkit_t12" / "data", root / "devkit" / "data", root / "data"],
                            "imagenet", "the ILSVRC2012 devkit's data folder, for the flat val files' labels")
    wnids, labels = imagenet_devkit_labels(devkit)
    number = [int(f.stem.rsplit("_", 1)[1]) for f in files]  # ILSVRC2012_val_00000001 is line 1 of the truth
    if max(number) > len(labels):
        raise DataError(f"imagenet: {devkit / 'ILSVRC2012_validation_ground_truth.txt'} has {len(labels)} lines; "
                        f"{files[number.index(max(number))].name} needs {max(number)}")
    dataset = labelled(files, [labels[n - 1] for n in number], wnids, images)
    dataset.wnids = wnids
    return dataset


@reader("imagenet_v2")
def read_imagenet_v2(root: Path, split: str) -> LabelledImages:
    check_split("imagenet_v2", split, ("test",))
    folder = inside(root, "imagenetv2-matched-frequency-format-val", "imagenetv2-matched-frequency")
    numbered = sorted((int(p.name), p) for p in need(folder, "imagenet_v2").iterdir() if p.name.isdigit())
    if not numbered:
        raise FileNotFoundError(f"imagenet_v2: expected {folder}/0 ... {folder}/999 (one folder per ImageNet class "
                                "index, as imagenetv2-matched-frequency-format-val extracts)")
    paths, labels = [], []
    for label, sub in numbered:
        files = image_files(sub)
        paths += files
        labels += [label] * len(files)
    return labelled(paths, labels, [str(i) for i in range(1000)], folder)


@reader("imagenet_sketch")
def read_imagenet_sketch(root: Path, split: str) -> LabelledImages:
    check_split("imagenet_sketch", split, ("test",))
    return read_wnid_folders(inside(root, "sketch", "imagenet-sketch"), "imagenet_sketch", 1000)


@reader("imagenet_a")
def read_imagenet_a(root: Path, split: str) -> LabelledImages:
    check_split("imagenet_a", split, ("test",))
    return read_wnid_folders(inside(root, "imagenet-a"), "imagenet_a", 200)


@reader("imagenet_r")
def read_imagenet_r(root: Path, split: str) -> LabelledImages:
    check_split("imagenet_r", split, ("test",))
    return read_wnid_folders(inside(root, "imagenet-r"), "imagenet_r", 200)


def _json(path: Path, dataset: str) -> dict[str, str]:
    try:
        data = json.loads(need(path, dataset).read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataError(f"{dataset}: {path} is not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise DataError(f"{dataset}: {path} should hold a JSON object")
    return data


@reader("objectnet")
def read_objectnet(root: Path, split: str) -> LabelledImages:
    check_split("objectnet", split, ("test",))
    base = inside(root, "objectnet-1.0")
    folder_label = _json(base / "mappings" / "folder_to_objectnet_label.json", "objectnet")
    to_imagenet = _json(base / "mappings" / "objectnet_to_imagenet_1k.json", "objectnet")
    folders = sorted(folder for folder, name in folder_label.items() if name in to_imagenet)
    images = need(base / "images", "objectnet")
    paths, labels = [], []
    for label, folder in enumerate(folders):
        if (images / folder).is_dir():
            files = image_files(images / folder)
            paths += files
            labels += [label] * len(files)
    dataset = labelled(paths, labels, folders, images)
    dataset.imagenet_indices = objectnet_imagenet_indices(base / "mappings",
                                                          [to_imagenet[folder_label[f]] for f in folders])
    return dataset


def objectnet_imagenet_indices(mappings: Path, imagenet_names: list[str]) -> list[list[int]] | None:
    """ImageNet class indices (sorted-wnid order) of each entry of `imagenet_names` ("name; name; ..."), through
    ObjectNet's mapping files; None when they are not there."""
    to_2012, labels_file = mappings / "pytorch_to_imagenet_2012_id.json", mappings / "imagenet_to_label_2012_v2"
    if not (to_2012.is_file() and labels_file.is_file()):
        return None
    index_of_2012 = {int(v): int(k) for k, v in _json(to_2012, "objectnet").items()}
    line_of = {line.strip(): i for i, line in enumerate(split_lines(labels_file.read_text(encoding="utf-8")))}
    try:
        return [[index_of_2012[line_of[name]] for name in names.split("; ")] for names in imagenet_names]
    except KeyError as e:
        raise DataError(f"objectnet: the ImageNet class {e.args[0]} of objectnet_to_imagenet_1k.json is not in "
                        f"{labels_file} and {to_2012.name}") from None
