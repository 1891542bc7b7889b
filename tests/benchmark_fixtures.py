"""Tiny synthetic copies of every benchmark dataset (the 34 of `specs.COLLECTIONS`: paper27, the ImageNet shifts,
Flickr30k and MS-COCO), each in its real on-disk layout at ROOT/<key>/, as `clipworks benchmark --root ROOT` reads
them; written with benchmark_formats.py's writers.

test_benchmark_fixtures.py runs `clipworks benchmark` on them; run as a script, this module writes them for the
README's table:

    PYTHONPATH=src python tests/benchmark_fixtures.py DIR

It lives with the tests, not in the package: it is test data (a Python 2 pickler, a fake devkit) that no user of
clipworks needs, and a checkout has it. Pixels are the built-in world's 64 px images (resized or grey where a format
says so): a few images of three classes per split, so scores mean nothing. Class names are the spec's, spelled as
the dataset spells them (underscores, UCF101's CamelCase), in the order its reader labels them, so that every
reader's classes pair up with the spec; where a release names its classes otherwise (Caltech-101's folders,
EuroSAT's, Country211's ISO codes, ImageNet's WordNet ids) the release's names are written.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import random
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from benchmark_formats import (
    cifar_rows,
    fer2013_csv,
    idx_bytes,
    karpathy_json,
    kitti_line,
    mat_structs,
    py2_pickle,
    sentences,
    stl10_bytes,
    voc_xml,
    write_bytes,
    write_h5,
    write_image,
    write_lines,
    write_mat,
    write_text,
    write_video,
)
from PIL import Image

from clipworks.data.benchmarks.annotated import VOC_CLASSES
from clipworks.data.world import Sample, World
from clipworks.evaluation.specs import DATA_DIR, spec


@dataclass(frozen=True)
class Written:
    """How many images (clips; captioned images) a fixture holds per split, as its reader reads them."""

    test: int
    train: int  # train + validation where the reader joins them; 0 for a test-only dataset


class Pixels:
    """The built-in world's val samples in turn: every file written shows another picture."""

    def __init__(self) -> None:
        self.world, self.count = World(), 0

    def sample(self) -> Sample:
        self.count += 1
        return self.world.sample("val", self.count - 1)

    def image(self) -> Image.Image:
        return self.sample().image

    def arrays(self, n: int, side: int, *, grey: bool = False) -> np.ndarray:
        """(n, side, side, 3) uint8 images, or (n, side, side) grey ones."""
        return np.stack([np.asarray(self.image().convert("L" if grey else "RGB").resize((side, side)))
                         for _ in range(n)])

    def captions(self, sample: Sample, n: int = 5) -> list[str]:
        """n captions of one sample: the world's wording of its attributes, drawn anew for each."""
        return [self.world.caption(sample.attributes, random.Random(f"{sample.attributes}:{j}")) for j in range(n)]


Row = tuple[str, int, int]  # (split, label, a number unique within the dataset, for file names)
WRITERS: dict[str, Callable[[Path, Pixels], Written]] = {}  # dataset key -> writer of its folder


def writes(key: str) -> Callable:
    def register(function: Callable[[Path, Pixels], Written]) -> Callable[[Path, Pixels], Written]:
        WRITERS[key] = function
        return function
    return register


def write_all(root: Path, keys: Sequence[str] | None = None) -> dict[str, Written]:
    """Every dataset (or those of `keys`) at `root/<key>/`, as `clipworks benchmark --root` expects them."""
    pixels = Pixels()
    return {key: WRITERS[key](Path(root) / key, pixels) for key in keys or WRITERS}


def chosen(n_classes: int) -> list[int]:
    """The labels given images: the first, a middle and the last, both ends of the label order."""
    return sorted({0, n_classes // 2, n_classes - 1})


def rows(n_classes: int, n_test: int = 2, n_train: int = 3) -> list[Row]:
    """n_test test and n_train train images of each chosen class."""
    plan = [(split, label) for split, n in (("test", n_test), ("train", n_train))
            for label in chosen(n_classes) for _ in range(n)]
    return [(split, label, number) for number, (split, label) in enumerate(plan)]


def count(plan: Sequence[Row]) -> Written:
    return Written(sum(s == "test" for s, _, _ in plan), sum(s == "train" for s, _, _ in plan))


def names(key: str, joiner: str = "_") -> list[str]:
    """The spec's class names as the dataset spells them: words joined by `joiner`."""
    return [joiner.join(name.split()) for name in spec(key).classnames]


def data_file(key: str) -> dict:
    """A spec's data file (benchmark_data/<key>.json), for what the spec object does not carry (wnids, ...)."""
    return json.loads((DATA_DIR / f"{key}.json").read_text(encoding="utf-8"))


@writes("food101")
def _food101(folder: Path, px: Pixels) -> Written:
    base, classes = folder / "food-101", names("food101")
    plan = rows(len(classes))
    write_lines(base / "meta" / "classes.txt", classes)
    for split in ("test", "train"):
        write_lines(base / "meta" / f"{split}.txt", [f"{classes[c]}/{n}" for s, c, n in plan if s == split])
    for _, c, n in plan:
        write_image(base / "images" / classes[c] / f"{n}.jpg", px.image())
    return count(plan)


def _cifar_batch(px: Pixels, plan: Sequence[Row], labels_key: str, batch_label: str) -> dict:
    return {"batch_label": batch_label, labels_key: [c for _, c, _ in plan],
            "data": cifar_rows(px.arrays(len(plan), 32)), "filenames": [f"image_{n}.png" for _, _, n in plan]}


@writes("cifar10")
def _cifar10(folder: Path, px: Pixels) -> Written:
    base, plan = folder / "cifar-10-batches-py", rows(10)
    py2_pickle(base / "batches.meta", {"label_names": names("cifar10"), "num_cases_per_batch": 10000, "num_vis": 3072})
    py2_pickle(base / "test_batch", _cifar_batch(px, [r for r in plan if r[0] == "test"], "labels",
                                                 "testing batch 1 of 1"))
    train = [r for r in plan if r[0] == "train"]
    for i in range(5):
        batch = _cifar_batch(px, train[i::5], "labels", f"training batch {i + 1} of 5")
        py2_pickle(base / f"data_batch_{i + 1}", batch)
    return count(plan)


@writes("cifar100")
def _cifar100(folder: Path, px: Pixels) -> Written:
    base, plan = folder / "cifar-100-python", rows(100)
    py2_pickle(base / "meta", {"fine_label_names": names("cifar100"), "coarse_label_names": [f"superclass_{i}"
                                                                                             for i in range(20)]})
    for split in ("test", "train"):
        batch = _cifar_batch(px, [r for r in plan if r[0] == split], "fine_labels", f"{split}ing batch 1 of 1")
        py2_pickle(base / split, {**batch, "coarse_labels": [c // 5 for c in batch["fine_labels"]]})  # not read
    return count(plan)


@writes("birdsnap")
def _birdsnap(folder: Path, px: Pixels) -> Written:
    base, dirs, common = folder / "birdsnap", names("birdsnap"), spec("birdsnap").classnames
    plan = rows(len(dirs))
    species_id = [len(dirs) - i for i in range(len(dirs))]  # ids in another order than the dirs, which the reader sorts
    write_lines(base / "species.txt", ["id\tcommon\tscientific\tdir", *(f"{species_id[i]}\t{common[i]}\t-\t{d}"
                                                                        for i, d in enumerate(dirs))])
    paths = {n: f"{dirs[c]}/{n:06d}.jpg" for _, c, n in plan}
    write_lines(base / "images.txt", ["url\tmd5\tpath\tspecies_id", *(f"http://example.org/{n}.jpg\t-\t{paths[n]}\t"
                                                                       f"{species_id[c]}" for _, c, n in plan)])
    write_lines(base / "test_images.txt", ["path", *(paths[n] for s, _, n in plan if s == "test")])
    for path in paths.values():
        write_image(base / "download" / "images" / path, px.image())
    return count(plan)


@writes("sun397")
def _sun397(folder: Path, px: Pixels) -> Written:
    entries = [f"/{name[0].lower()}/{name}" for name in names("sun397")]  # /a/abbey, ...
    plan = rows(len(entries))
    files = {n: f"{entries[c]}/sun_{n:014d}.jpg" for _, c, n in plan}
    write_lines(folder / "SUN397" / "ClassName.txt", entries)
    for split, listing in (("test", "Testing_01.txt"), ("train", "Training_01.txt")):
        write_lines(folder / "Partitions" / listing, [files[n] for s, _, n in plan if s == split])
    for file in files.values():
        write_image(folder / "SUN397" / file.lstrip("/"), px.image())
    return count(plan)


@writes("cars")
def _cars(folder: Path, px: Pixels) -> Written:
    base, classes = folder / "stanford_cars", list(spec("cars").classnames)
    plan = rows(len(classes))
    write_mat(base / "devkit" / "cars_meta.mat", class_names=np.array(classes, dtype=object))
    fields = ("bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2", "class", "fname")
    for split, annotations, images in (("test", base / "cars_test_annos_withlabels.mat", base / "cars_test"),
                                       ("train", base / "devkit" / "cars_train_annos.mat", base / "cars_train")):
        mine = [(c + 1, f"{n:05d}.jpg") for s, c, n in plan if s == split]  # classes 1-based
        write_mat(annotations, annotations=mat_structs(fields, [(1, 1, 63, 63, c, f) for c, f in mine]))
        for _, fname in mine:
            write_image(images / fname, px.image())
    return count(plan)


@writes("fgvc_aircraft")
def _fgvc_aircraft(folder: Path, px: Pixels) -> Written:
    data, variants = folder / "fgvc-aircraft-2013b" / "data", list(spec("fgvc_aircraft").classnames)
    plan = rows(len(variants))
    write_lines(data / "variants.txt", variants)
    for split, name in (("test", "test"), ("train", "trainval")):
        write_lines(data / f"images_variant_{name}.txt", [f"{n:07d} {variants[c]}" for s, c, n in plan if s == split])
    for _, _, n in plan:
        write_image(data / "images" / f"{n:07d}.jpg", px.image())
    return count(plan)


@writes("voc2007")
def _voc2007(folder: Path, px: Pixels) -> Written:
    base, plan = folder / "VOCdevkit" / "VOC2007", rows(len(VOC_CLASSES))
    for split, listing in (("test", "test.txt"), ("train", "trainval.txt")):
        write_lines(base / "ImageSets" / "Main" / listing, [f"{n:06d}" for s, _, n in plan if s == split])
    for _, c, n in plan:  # its class, and another one that is difficult (neither right nor wrong) every other image
        objects = [(VOC_CLASSES[c], 0), (VOC_CLASSES[(c + 7) % len(VOC_CLASSES)], n % 2)]
        write_text(base / "Annotations" / f"{n:06d}.xml", voc_xml(f"{n:06d}", objects))
        write_image(base / "JPEGImages" / f"{n:06d}.jpg", px.image())
    return count(plan)


@writes("dtd")
def _dtd(folder: Path, px: Pixels) -> Written:
    base, classes = folder / "dtd", names("dtd")
    plan = rows(len(classes))
    for name in classes:
        (base / "images" / name).mkdir(parents=True, exist_ok=True)
    files = {n: f"{classes[c]}/{classes[c]}_{n:04d}.jpg" for _, c, n in plan}
    for part, keep in (("test", lambda s, n: s == "test"), ("train", lambda s, n: s == "train" and n % 2 == 0),
                       ("val", lambda s, n: s == "train" and n % 2 == 1)):
        write_lines(base / "labels" / f"{part}1.txt", [files[n] for s, _, n in plan if keep(s, n)])
    for file in files.values():
        write_image(base / "images" / file, px.image())
    return count(plan)


@writes("pets")
def _pets(folder: Path, px: Pixels) -> Written:
    base, breeds = folder / "oxford-iiit-pet", names("pets")
    plan = rows(len(breeds))  # and one train image of every other breed: the lists are where the names are read
    plan += [("train", c, len(plan) + i) for i, c in enumerate(set(range(len(breeds))) - set(chosen(len(breeds))))]
    species = [1 if b[0].isupper() else 2 for b in breeds]  # cat breeds are capitalised, dog breeds not
    breed_id = [species[:i + 1].count(species[i]) for i in range(len(breeds))]
    ids = {n: f"{breeds[c]}_{n}" for _, c, n in plan}
    for split, listing in (("test", "test.txt"), ("train", "trainval.txt")):
        write_lines(base / "annotations" / listing, [f"{ids[n]} {c + 1} {species[c]} {breed_id[c]}"
                                                     for s, c, n in plan if s == split])
    for image_id in ids.values():
        write_image(base / "images" / f"{image_id}.jpg", px.image())
    return count(plan)


CALTECH101_FOLDERS = (  # 101_ObjectCategories/, sorted (upper case first)
    "BACKGROUND_Google Faces Faces_easy Leopards Motorbikes accordion airplanes anchor ant barrel bass beaver "
    "binocular bonsai brain brontosaurus buddha butterfly camera cannon car_side ceiling_fan cellphone chair "
    "chandelier cougar_body cougar_face crab crayfish crocodile crocodile_head cup dalmatian dollar_bill dolphin "
    "dragonfly electric_guitar elephant emu euphonium ewer ferry flamingo flamingo_head garfield gerenuk "
    "gramophone grand_piano hawksbill headphone hedgehog helicopter ibis inline_skate joshua_tree kangaroo ketch "
    "lamp laptop llama lobster lotus mandolin mayfly menorah metronome minaret nautilus octopus okapi pagoda panda "
    "pigeon pizza platypus pyramid revolver rhino rooster saxophone schooner scissors scorpion sea_horse snoopy "
    "soccer_ball stapler starfish stegosaurus stop_sign strawberry sunflower tick trilobite umbrella watch "
    "water_lilly wheelchair wild_cat windsor_chair wrench yin_yang").split()


@writes("caltech101")
def _caltech101(folder: Path, px: Pixels) -> Written:
    base = folder / "caltech101" / "101_ObjectCategories"
    for name in CALTECH101_FOLDERS:  # 31 images a class: the reader's train split takes 30 of each, as the paper's
        first = write_image(base / name / "image_0001.jpg", px.image())
        for i in range(2, 32):
            os.link(first, base / name / f"image_{i:04d}.jpg")  # one picture, linked: 3,162 files written fast
    return Written(test=len(CALTECH101_FOLDERS), train=30 * len(CALTECH101_FOLDERS))


@writes("flowers102")
def _flowers102(folder: Path, px: Pixels) -> Written:
    base, plan = folder / "flowers-102", rows(len(spec("flowers102").classnames))
    labels = np.zeros((1, len(plan)), np.uint8)  # image n + 1 (1-based, as the file names) has label c + 1
    for _, c, n in plan:
        labels[0, n] = c + 1
    test, train = ([n + 1 for s, _, n in plan if s == split] for split in ("test", "train"))
    write_mat(base / "imagelabels.mat", labels=labels)
    write_mat(base / "setid.mat", trnid=np.array([train[::2]]), valid=np.array([train[1::2]]), tstid=np.array([test]))
    for _, _, n in plan:
        write_image(base / "jpg" / f"image_{n + 1:05d}.jpg", px.image())
    return count(plan)


@writes("mnist")
def _mnist(folder: Path, px: Pixels) -> Written:
    raw, plan = folder / "MNIST" / "raw", rows(10)
    for split, prefix in (("test", "t10k"), ("train", "train")):
        labels = np.array([c for s, c, _ in plan if s == split], np.uint8)
        write_bytes(raw / f"{prefix}-images-idx3-ubyte", idx_bytes(px.arrays(len(labels), 28, grey=True)))
        write_bytes(raw / f"{prefix}-labels-idx1-ubyte", idx_bytes(labels))
    return count(plan)


@writes("fer2013")
def _fer2013(folder: Path, px: Pixels) -> Written:
    plan = rows(len(spec("fer2013").classnames))
    usage = ["PrivateTest" if s == "test" else ("Training", "PublicTest")[n % 2] for s, _, n in plan]
    write_text(folder / "fer2013" / "fer2013.csv", fer2013_csv(px.arrays(len(plan), 48, grey=True),
                                                                [c for _, c, _ in plan], usage))
    return count(plan)


@writes("stl10")
def _stl10(folder: Path, px: Pixels) -> Written:
    base, plan = folder / "stl10_binary", rows(10)
    write_lines(base / "class_names.txt", names("stl10"))
    for split in ("test", "train"):
        labels = [c for s, c, _ in plan if s == split]
        write_bytes(base / f"{split}_X.bin", stl10_bytes(px.arrays(len(labels), 96)))
        write_bytes(base / f"{split}_y.bin", bytes(c + 1 for c in labels))  # 1-based
    return count(plan)


EUROSAT_FOLDERS = ("AnnualCrop", "Forest", "HerbaceousVegetation", "Highway", "Industrial", "Pasture", "PermanentCrop",
                   "Residential", "River", "SeaLake")


@writes("eurosat")
def _eurosat(folder: Path, px: Pixels) -> Written:
    base, plan = folder / "2750", rows(len(EUROSAT_FOLDERS))
    for name in EUROSAT_FOLDERS:
        (base / name).mkdir(parents=True, exist_ok=True)
    for _, c, n in plan:
        write_image(base / EUROSAT_FOLDERS[c] / f"{EUROSAT_FOLDERS[c]}_{n + 1}.jpg", px.image())
    # No official split: the reader draws 5,000 / 27,000 of the images for test and 10,000 / 27,000 for train.
    return Written(test=round(len(plan) * 5000 / 27000), train=round(len(plan) * 10000 / 27000))


@writes("resisc45")
def _resisc45(folder: Path, px: Pixels) -> Written:
    base, classes = folder / "NWPU-RESISC45", names("resisc45")
    plan = rows(len(classes))
    for name in classes:
        (base / name).mkdir(parents=True, exist_ok=True)
    files = {n: f"{classes[c]}_{n + 1:03d}.jpg" for _, c, n in plan}
    for _, c, n in plan:
        write_image(base / classes[c] / files[n], px.image())
    for part, keep in (("test", lambda s, n: s == "test"), ("train", lambda s, n: s == "train" and n % 2 == 0),
                       ("val", lambda s, n: s == "train" and n % 2 == 1)):  # TFDS's split lists
        write_lines(folder / f"resisc45-{part}.txt", [files[n] for s, _, n in plan if keep(s, n)])
    return count(plan)


@writes("gtsrb")
def _gtsrb(folder: Path, px: Pixels) -> Written:
    base, plan = folder / "gtsrb", rows(len(spec("gtsrb").classnames))
    write_lines(base / "GT-final_test.csv", ["Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId", *(
        f"{n:05d}.ppm;64;64;5;5;58;58;{c}" for s, c, n in plan if s == "test")])
    for s, c, n in plan:
        path = (base / "GTSRB" / "Final_Test" / "Images" / f"{n:05d}.ppm" if s == "test" else
                base / "GTSRB" / "Training" / f"{c:05d}" / f"00000_{n:05d}.ppm")
        write_image(path, px.image())
    return count(plan)


@writes("kitti_distance")
def _kitti_distance(folder: Path, px: Pixels) -> Written:
    base = folder / "Kitti" / "raw"
    # Two drives of three frames; the split is by drive (10% of the drives, at least one, are test): 3 and 3.
    mapping = [f"2011_09_26 2011_09_26_drive_{1 + k % 2:04d}_sync {k:010d}" for k in range(6)]
    order = [4, 1, 6, 2, 5, 3]  # train_rand.txt: image i is line order[i] of train_mapping.txt
    write_lines(base / "devkit_object" / "mapping" / "train_mapping.txt", mapping)
    write_lines(base / "devkit_object" / "mapping" / "train_rand.txt", [",".join(map(str, order))])
    depths = [[5.0], [15.0, 40.0], [30.0], [], [8.0], [25.0]]  # nearest vehicle: bins 0, 1, 2, 3 (none), 0, 2
    for i, zs in enumerate(depths):
        lines = [kitti_line("Car", z) for z in zs] + [kitti_line("Pedestrian", 3.0)]
        write_lines(base / "training" / "label_2" / f"{i:06d}.txt", lines)
        write_image(base / "training" / "image_2" / f"{i:06d}.png", px.image())
    return Written(test=3, train=3)


# Country211's folders: the ISO 3166 codes of the spec's countries, in its (sorted-code) order
COUNTRY211_CODES = (
    "AD AE AF AG AI AL AM AO AQ AR AT AU AW AX AZ BA BB BD BE BF BG BH BJ BM BN BO BQ BR BS BT BW BY BZ CA CD CF CH CI "
    "CK CL CM CN CO CR CU CV CW CY CZ DE DK DM DO DZ EC EE EG ES ET FI FJ FK FO FR GA GB GD GE GF GG GH GI GL GM GP GR "
    "GS GT GU GY HK HN HR HT HU ID IE IL IM IN IQ IR IS IT JE JM JO JP KE KG KH KN KP KR KW KY KZ LA LB LC LI LK LR LT "
    "LU LV LY MA MC MD ME MF MG MK ML MM MN MO MQ MR MT MU MV MW MX MY MZ NA NC NG NI NL NO NP NZ OM PA PE PF PG PH PK "
    "PL PR PS PT PW PY QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SS SV SX SY SZ TG TH TJ TL TM TN TO "
    "TR TT TW TZ UA UG US UY UZ VA VE VG VI VN VU WS XK YE ZA ZM ZW").split()


@writes("country211")
def _country211(folder: Path, px: Pixels) -> Written:
    base, plan = folder / "country211", rows(len(COUNTRY211_CODES))
    for part in ("test", "train", "valid"):
        for code in COUNTRY211_CODES:
            (base / part / code).mkdir(parents=True, exist_ok=True)
    for s, c, n in plan:
        part = "test" if s == "test" else ("train", "valid")[n % 2]
        write_image(base / part / COUNTRY211_CODES[c] / f"{n}.jpg", px.image())
    return count(plan)


@writes("pcam")
def _pcam(folder: Path, px: Pixels) -> Written:
    plan = rows(2)
    train = [r for r in plan if r[0] == "train"]
    for part, mine in (("test", [r for r in plan if r[0] == "test"]), ("train", train[::2]), ("valid", train[1::2])):
        name = f"camelyonpatch_level_2_split_{part}"
        write_h5(folder / "pcam" / f"{name}_x.h5", "x", px.arrays(len(mine), 96))
        labels = np.array([c for _, c, _ in mine], np.uint8).reshape(-1, 1, 1, 1)  # as the release's (N, 1, 1, 1)
        write_h5(folder / "pcam" / f"{name}_y.h5", "y", labels)
    return count(plan)


@writes("ucf101")
def _ucf101(folder: Path, px: Pixels) -> Written:
    classes = names("ucf101", joiner="")  # ApplyEyeMakeup, ...
    plan = rows(len(classes))
    lists = folder / "ucfTrainTestlist"
    write_lines(lists / "classInd.txt", [f"{i + 1} {name}" for i, name in enumerate(classes)])
    clips = {n: f"{classes[c]}/v_{classes[c]}_g{n + 1:02d}_c01.avi" for _, c, n in plan}
    write_lines(lists / "testlist01.txt", [clips[n] for s, _, n in plan if s == "test"])
    write_lines(lists / "trainlist01.txt", [f"{clips[n]} {c + 1}" for s, c, n in plan if s == "train"])
    for clip in clips.values():
        write_video(folder / "UCF-101" / clip, list(px.arrays(3, 64)))
    return count(plan)


@writes("kinetics700")
def _kinetics700(folder: Path, px: Pixels) -> Written:
    base, labels = folder / "k700-2020", list(spec("kinetics700").classnames)
    plan = rows(len(labels))
    # Every label is in each CSV (the reader's classes are the labels there); the clips of all but the chosen few
    # are not on disk, as clips since removed from YouTube are not (the reader warns and goes on).
    gone = [c for c in range(len(labels)) if c not in chosen(len(labels))]
    for split, name in (("test", "val"), ("train", "train")):
        clips = [(c, f"yt{n:09d}") for s, c, n in plan if s == split]
        text = io.StringIO()
        writer = csv.writer(text, lineterminator="\n")
        writer.writerow(["label", "youtube_id", "time_start", "time_end", "split"])
        writer.writerows([labels[c], youtube_id, 0, 10, name] for c, youtube_id in
                         [*clips, *((c, f"gone{c:07d}") for c in gone)])
        write_text(base / "annotations" / f"{name}.csv", text.getvalue())
        for c, youtube_id in clips:
            write_video(base / name / labels[c] / f"{youtube_id}_000000_000010.mp4", list(px.arrays(3, 64)))
    return count(plan)


@writes("clevr_counts")
def _clevr_counts(folder: Path, px: Pixels) -> Written:
    base, plan = folder / "CLEVR_v1.0", rows(len(spec("clevr_counts").classnames))
    for split, part in (("test", "val"), ("train", "train")):
        scenes = []
        for _, c, n in (r for r in plan if r[0] == split):
            name = f"CLEVR_{part}_{n:06d}.png"
            write_image(base / "images" / part / name, px.image())
            scenes.append({"image_index": n, "image_filename": name, "split": part,
                           "objects": [{"color": "gray", "shape": "cube", "size": "large", "material": "rubber"}]
                           * (c + 3)})  # label c is c + 3 objects
        write_text(base / "scenes" / f"CLEVR_{part}_scenes.json", json.dumps({"info": {"split": part},
                                                                                "scenes": scenes}))
    return count(plan)


@writes("hateful_memes")
def _hateful_memes(folder: Path, px: Pixels) -> Written:
    base, plan = folder / "hateful_memes", rows(2)
    for split, listing in (("test", "dev_seen.jsonl"), ("train", "train.jsonl")):
        entries = []
        for _, c, n in (r for r in plan if r[0] == split):
            sample = px.sample()
            write_image(base / "img" / f"{n:05d}.png", sample.image)
            entries.append(json.dumps({"id": n, "img": f"img/{n:05d}.png", "label": c, "text": sample.caption}))
        write_lines(base / listing, entries)
    return count(plan)


@writes("rendered_sst2")
def _rendered_sst2(folder: Path, px: Pixels) -> Written:
    plan = rows(2)
    for s, c, n in plan:
        part = "test" if s == "test" else ("train", "valid")[n % 2]
        write_image(folder / "rendered-sst2" / part / ("negative", "positive")[c] / f"{n}.png", px.image())
    return count(plan)


@writes("imagenet")
def _imagenet(folder: Path, px: Pixels) -> Written:
    wnids = data_file("imagenet")["wnids"]
    plan = rows(len(wnids))
    # The val set as released: flat files labelled by the devkit's ground truth (an ILSVRC2012_ID per file, in file
    # order) and meta.mat's synsets (ID -> wnid; the IDs are not in wnid order, and non-leaf synsets follow).
    ids = [7 * i % 1000 + 1 for i in range(1000)]  # the ID of the i-th wnid in sorted order
    leaves = [(ids[i], wnid, f"class {i}", 0) for i, wnid in enumerate(wnids)]
    synsets = mat_structs(("ILSVRC2012_ID", "WNID", "words", "num_children"),
                          [*leaves, (1001, "n00001740", "entity", 3)])
    devkit = folder / "ILSVRC2012_devkit_t12" / "data"
    write_mat(devkit / "meta.mat", synsets=synsets)
    test = [c for s, c, _ in plan if s == "test"]
    write_lines(devkit / "ILSVRC2012_validation_ground_truth.txt", [str(ids[c]) for c in test])
    for k in range(len(test)):
        write_image(folder / "val" / f"ILSVRC2012_val_{k + 1:08d}.JPEG", px.image())
    for wnid in wnids:  # the train set as class folders
        (folder / "train" / wnid).mkdir(parents=True, exist_ok=True)
    for _, c, n in (r for r in plan if r[0] == "train"):
        write_image(folder / "train" / wnids[c] / f"{wnids[c]}_{n}.JPEG", px.image())
    return count(plan)


@writes("imagenet_v2")
def _imagenet_v2(folder: Path, px: Pixels) -> Written:
    base, plan = folder / "imagenetv2-matched-frequency-format-val", rows(1000, n_train=0)
    for i in range(1000):
        (base / str(i)).mkdir(parents=True, exist_ok=True)
    for _, c, n in plan:
        write_image(base / str(c) / f"{hashlib.sha1(str(n).encode()).hexdigest()}.jpeg", px.image())
    return count(plan)


def _wnid_folders(base: Path, wnids: Sequence[str], px: Pixels, suffix: str) -> Written:
    plan = rows(len(wnids), n_train=0)
    for wnid in wnids:
        (base / wnid).mkdir(parents=True, exist_ok=True)
    for _, c, n in plan:
        write_image(base / wnids[c] / f"{n}{suffix}", px.image())
    return count(plan)


@writes("imagenet_sketch")
def _imagenet_sketch(folder: Path, px: Pixels) -> Written:
    return _wnid_folders(folder / "sketch", data_file("imagenet")["wnids"], px, ".JPEG")


@writes("imagenet_a")
def _imagenet_a(folder: Path, px: Pixels) -> Written:
    return _wnid_folders(folder / "imagenet-a", data_file("imagenet_a")["wnids"], px, ".jpg")


@writes("imagenet_r")
def _imagenet_r(folder: Path, px: Pixels) -> Written:
    return _wnid_folders(folder / "imagenet-r", data_file("imagenet_r")["wnids"], px, ".jpg")


@writes("objectnet")
def _objectnet(folder: Path, px: Pixels) -> Written:
    base, doc, wnids = folder / "objectnet-1.0", data_file("objectnet"), data_file("imagenet")["wnids"]
    folders, labels = doc["label_names"], doc["objectnet_names"]
    mappings = base / "mappings"
    # with one of the 200 ObjectNet classes that are not ImageNet's, which the reader leaves out
    write_text(mappings / "folder_to_objectnet_label.json",
               json.dumps({**dict(zip(folders, labels)), "air_freshener": "Air freshener"}))
    to_imagenet: dict[str, list[str]] = {}
    for imagenet_index, label in zip(doc["class_subset"], doc["class_labels"]):
        to_imagenet.setdefault(labels[label], []).append(wnids[imagenet_index])
    write_text(mappings / "objectnet_to_imagenet_1k.json",
               json.dumps({label: "; ".join(classes) for label, classes in to_imagenet.items()}))
    # ImageNet's classes by line (here their wnids, last first) and each class index's line
    write_lines(mappings / "imagenet_to_label_2012_v2", wnids[::-1])
    write_text(mappings / "pytorch_to_imagenet_2012_id.json", json.dumps({str(i): 999 - i for i in range(1000)}))
    plan = rows(len(folders), n_train=0)
    for _, c, n in plan:
        write_image(base / "images" / folders[c] / f"{n:08x}.png", px.image())
    write_image(base / "images" / "air_freshener" / "left_out.png", px.image())
    return count(plan)


@writes("flickr30k")
def _flickr30k(folder: Path, px: Pixels) -> Written:
    images = []
    for n, split in enumerate(["test"] * 4 + ["train"] * 3 + ["val"] * 2):
        sample, name = px.sample(), f"{1000092795 + n}.jpg"
        write_image(folder / "flickr30k-images" / name, sample.image)
        images.append({"filename": name, "imgid": n, "split": split, "sentences": sentences(*px.captions(sample))})
    write_text(folder / "dataset_flickr30k.json", karpathy_json(images))
    return Written(test=4, train=3)


@writes("mscoco")
def _mscoco(folder: Path, px: Pixels) -> Written:
    images = []
    for n, split in enumerate(["test"] * 4 + ["train"] * 3 + ["restval"] * 2 + ["val"]):
        sample, filepath = px.sample(), "train2014" if split == "train" else "val2014"
        name = f"COCO_{filepath}_{n + 1:012d}.jpg"
        write_image(folder / filepath / name, sample.image)
        captions = px.captions(sample, 6 if n == 0 else 5)  # a few COCO images have 6 or 7: the reader keeps 5
        images.append({"filepath": filepath, "filename": name, "imgid": n, "cocoid": n + 1, "split": split,
                       "sentences": sentences(*captions)})
    write_text(folder / "dataset_coco.json", karpathy_json(images))
    return Written(test=4, train=5)  # train + restval


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit("usage: python tests/benchmark_fixtures.py DIR   (writes DIR/<key>/ for the 35 datasets)")
    for key, written in write_all(Path(sys.argv[1])).items():
        print(f"{key}: {written.test} test, {written.train} train")
