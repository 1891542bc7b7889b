"""The benchmark readers of data/benchmarks/arrays.py and folders.py, each on a tiny set written here in the
dataset's exact on-disk format (with the format writers of benchmark_formats.py): exact classes, labels and paths,
array pixels round-tripped exactly, one-line errors naming the missing or malformed file, CIFAR pickles read without
running code, and the feature cache key of array sets."""

import gzip
import json
import os
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest
from benchmark_formats import (
    cifar_rows,
    fer2013_csv,
    idx_bytes,
    py2_pickle,
    stl10_bytes,
    write_bytes,
    write_h5,
    write_image,
    write_lines,
    write_text,
)
from PIL import Image

from clipworks.data.benchmarks import READERS, open_benchmark
from clipworks.data.benchmarks.arrays import load_array_pickle
from clipworks.data.datasets import ArrayImages, CaptionedImages, MultiLabelImages
from clipworks.errors import ConfigError, DataError
from clipworks.evaluation.features import files_key

RNG = np.random.default_rng(0)


def pixels(n: int, *shape: int) -> np.ndarray:
    return RNG.integers(0, 256, size=(n, *shape), dtype=np.uint8)


def read_all(dataset: ArrayImages) -> np.ndarray:
    return np.stack([np.asarray(dataset._load(i)) for i in range(len(dataset))])


def one_line_error(kind: type[Exception], name: str, root: Path, file: Path, split: str = "test") -> str:
    """The message of the `kind` error that opening dataset `name` raises, checked to be one line naming `file`."""
    with pytest.raises(kind) as e:
        open_benchmark(name, root, split)
    message = str(e.value)
    assert "\n" not in message and str(file) in message
    return message


# --- CIFAR: Python 2 pickles ------------------------------------------------------------------------------------


def test_cifar10_py2_pickles(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    py2_pickle(folder / "batches.meta", {"label_names": names, "num_cases_per_batch": 10000})
    test = pixels(3, 32, 32, 3)
    py2_pickle(folder / "test_batch", {"batch_label": "testing batch 1 of 1", "labels": [3, 0, 9],
                                       "data": cifar_rows(test), "filenames": ["a.png", "b.png", "c.png"]})
    train = pixels(10, 32, 32, 3)
    for i in range(5):
        py2_pickle(folder / f"data_batch_{i + 1}", {"labels": [i, i + 1], "data": cifar_rows(train[2 * i:2 * i + 2])})

    for root in (tmp_path, folder):  # torchvision's root, or the batches folder itself
        dataset = open_benchmark("cifar10", root)
        assert isinstance(dataset, ArrayImages) and dataset.transform is None
        assert dataset.classes == names and dataset.labels == [3, 0, 9]
        assert dataset.paths == [Path(f"{(folder / 'test_batch').resolve()}#{i}") for i in range(3)]
        np.testing.assert_array_equal(read_all(dataset), test)
    dataset = open_benchmark("cifar10", tmp_path, "train")
    assert dataset.labels == [0, 1, 1, 2, 2, 3, 3, 4, 4, 5]
    assert dataset.paths[2] == Path(f"{(folder / 'data_batch_2').resolve()}#0")
    np.testing.assert_array_equal(read_all(dataset), train)


def test_cifar100_numpy2_pickles(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    fine = ["apple", "aquarium_fish", "baby"]
    (folder / "meta").write_bytes(pickle.dumps({"fine_label_names": fine, "coarse_label_names": ["x"]}, protocol=4))
    images = pixels(4, 32, 32, 3)
    (folder / "test").write_bytes(pickle.dumps({"fine_labels": [2, 1, 0, 2], "coarse_labels": [0] * 4,
                                                "data": cifar_rows(images)}, protocol=4))
    dataset = open_benchmark("cifar100", tmp_path)
    assert dataset.classes == fine and dataset.labels == [2, 1, 0, 2]
    np.testing.assert_array_equal(read_all(dataset), images)
    with pytest.raises(FileNotFoundError, match=r"cifar-100-python/train"):
        open_benchmark("cifar100", tmp_path, "train")


class Payload:
    """Unpickling this would create `marker`: the restricted unpickler must refuse before calling anything."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return os.mkdir, (str(self.marker),)


def test_malicious_pickle_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    py2_pickle(folder / "batches.meta", {"label_names": ["a", "b"]})
    marker = tmp_path / "pwned"
    (folder / "test_batch").write_bytes(pickle.dumps({"data": Payload(marker), "labels": [0]}, protocol=2))
    with pytest.raises(DataError, match=r"test_batch is not a plain array pickle: it names posix\.mkdir") as e:
        open_benchmark("cifar10", tmp_path)
    assert "\n" not in str(e.value) and not marker.exists()
    # also a global that numpy offers but that is no array reconstruction
    (folder / "x").write_bytes(b"\x80\x02cnumpy\nload\nq\x00.")
    with pytest.raises(DataError, match=r"numpy\.load"):
        load_array_pickle(folder / "x")
    (folder / "y").write_bytes(b"not a pickle")
    with pytest.raises(DataError, match="not a readable pickle"):
        load_array_pickle(folder / "y")


# --- MNIST, STL-10, FER2013, PCam --------------------------------------------------------------------------------


def test_mnist_plain_and_gz(tmp_path: Path) -> None:
    images, labels = pixels(5, 28, 28), np.array([7, 2, 1, 0, 4], np.uint8)
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    (raw / "t10k-images-idx3-ubyte").write_bytes(idx_bytes(images))
    (raw / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(labels))
    dataset = open_benchmark("mnist", tmp_path)
    assert dataset.classes == [str(d) for d in range(10)] and dataset.labels == [7, 2, 1, 0, 4]
    assert dataset.paths[4] == Path(f"{(raw / 't10k-images-idx3-ubyte').resolve()}#4")
    np.testing.assert_array_equal(read_all(dataset), images)
    assert dataset._load(0).mode == "L"

    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(idx_bytes(images[:2])))
    (bare / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(labels[:2])))
    dataset = open_benchmark("mnist", bare, "train")
    assert dataset.labels == [7, 2]
    np.testing.assert_array_equal(read_all(dataset), images[:2])

    (raw / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(labels)[:-1])
    with pytest.raises(DataError, match="truncated"):
        open_benchmark("mnist", tmp_path)


def test_stl10_column_major_binary(tmp_path: Path) -> None:
    folder = tmp_path / "stl10_binary"
    folder.mkdir()
    names = ["airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck"]
    (folder / "class_names.txt").write_text("\n".join(names) + "\n")
    images = pixels(3, 96, 96, 3)
    (folder / "test_X.bin").write_bytes(stl10_bytes(images))
    (folder / "test_y.bin").write_bytes(bytes([1, 10, 4]))
    dataset = open_benchmark("stl10", tmp_path)
    assert dataset.classes == names and dataset.labels == [0, 9, 3]
    np.testing.assert_array_equal(read_all(dataset), images)
    copy = pickle.loads(pickle.dumps(dataset))  # as a spawned DataLoader worker receives it: maps the file itself
    np.testing.assert_array_equal(np.asarray(copy._load(2)), images[2])
    with pytest.raises(FileNotFoundError, match=r"stl10_binary/train_X\.bin"):
        open_benchmark("stl10", tmp_path, "train")


STL10_IMAGE = 3 * 96 * 96  # bytes


@pytest.mark.parametrize("n_bytes, labels, broken, message", [
    (2 * STL10_IMAGE - 1, [1, 2], "test_X.bin",
     "{X} has 55295 bytes, not a whole number of 3x96x96 images: the file is truncated"),
    (2 * STL10_IMAGE, [1, 2, 3], "test_y.bin",
     "{y} has 3 labels for the 2 images in {X}; expected one label byte per image"),
    (2 * STL10_IMAGE, [1, 11], "test_y.bin",
     "{y} has the label 11 at byte 1, outside 1..10 (the 10 classes of class_names.txt)"),
    (2 * STL10_IMAGE, [0, 255], "test_y.bin",
     "{y} has the label 0 at byte 0, outside 1..10 (the 10 classes of class_names.txt); 2 labels are outside"),
], ids=["truncated-images", "more-labels", "label-11", "labels-0-and-255"])
def test_stl10_malformed_binary(tmp_path: Path, n_bytes: int, labels: list[int], broken: str, message: str) -> None:
    folder = tmp_path / "stl10_binary"
    write_lines(folder / "class_names.txt", ["airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey",
                                             "ship", "truck"])
    x = write_bytes(folder / "test_X.bin", stl10_bytes(pixels(2, 96, 96, 3))[:n_bytes])
    y = write_bytes(folder / "test_y.bin", bytes(labels))
    assert one_line_error(DataError, "stl10", tmp_path, folder / broken) == message.format(X=x, y=y)


def test_stl10_class_names_file_without_a_name(tmp_path: Path) -> None:
    names = write_text(tmp_path / "stl10_binary" / "class_names.txt", "\n \n")
    message = one_line_error(DataError, "stl10", tmp_path, names)
    assert message == f"{names} names no classes; expected one class name a line"


def test_fer2013_kaggle_csv_and_torchvision_files(tmp_path: Path) -> None:
    faces = pixels(4, 48, 48)
    emotions, usage = [0, 3, 6, 2], ["Training", "PublicTest", "PrivateTest", "PrivateTest"]
    (tmp_path / "fer2013.csv").write_text(fer2013_csv(faces, emotions, usage))
    test = open_benchmark("fer2013", tmp_path)
    assert test.classes == ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
    assert test.labels == [6, 2]
    np.testing.assert_array_equal(read_all(test), faces[2:])
    train = open_benchmark("fer2013", tmp_path, "train")
    assert train.labels == [0, 3]
    np.testing.assert_array_equal(read_all(train), faces[:2])

    icml = tmp_path / "icml"
    icml.mkdir()
    (icml / "icml_face_data.csv").write_text(fer2013_csv(faces, emotions, usage, columns=("emotion", " Usage",
                                                                                         " pixels")))
    assert open_benchmark("fer2013", icml).labels == [6, 2]

    tv = tmp_path / "tv" / "fer2013"
    tv.mkdir(parents=True)
    (tv / "train.csv").write_text(fer2013_csv(faces, emotions))
    assert open_benchmark("fer2013", tv.parent, "train").labels == [0, 3, 6, 2]
    (tv / "test.csv").write_text("pixels\n" + " ".join(["0"] * 2304) + "\n")
    with pytest.raises(DataError, match="no labels: use fer2013.csv"):
        open_benchmark("fer2013", tv.parent)
    (tmp_path / "fer2013.csv").write_text("emotion,pixels,Usage\n0,1 2 3,PrivateTest\n")
    with pytest.raises(DataError, match="line 2: 3 pixel values"):
        open_benchmark("fer2013", tmp_path)


def test_pcam_h5(tmp_path: Path) -> None:
    pytest.importorskip("h5py")
    parts = {"test": pixels(3, 96, 96, 3), "train": pixels(2, 96, 96, 3), "valid": pixels(2, 96, 96, 3)}
    labels = {"test": [1, 0, 1], "train": [0, 0], "valid": [1, 0]}
    folder = tmp_path / "pcam"
    folder.mkdir()
    for part, images in parts.items():
        write_h5(folder / f"camelyonpatch_level_2_split_{part}_x.h5", "x", images)
        write_h5(folder / f"camelyonpatch_level_2_split_{part}_y.h5", "y",
                 np.array(labels[part], np.uint8).reshape(-1, 1, 1, 1))
    test = open_benchmark("pcam", tmp_path)
    assert test.labels == [1, 0, 1] and test.classes == ["no metastatic tissue", "metastatic tissue"]
    np.testing.assert_array_equal(read_all(test), parts["test"])
    train = open_benchmark("pcam", folder, "train")
    assert train.labels == [0, 0, 1, 0]
    assert train.paths[2] == Path(f"{(folder / 'camelyonpatch_level_2_split_valid_x.h5').resolve()}#0")
    np.testing.assert_array_equal(read_all(train), np.concatenate([parts["train"], parts["valid"]]))
    np.testing.assert_array_equal(np.asarray(pickle.loads(pickle.dumps(train))._load(3)), parts["valid"][1])

    x = folder / "camelyonpatch_level_2_split_test_x.h5"
    x.rename(x.with_name(x.name + ".gz"))
    with pytest.raises(DataError, match="still compressed: gunzip"):
        open_benchmark("pcam", folder)


def test_pcam_without_h5py_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "h5py", None)
    with pytest.raises(DataError, match=r"needs h5py: pip install 'clipworks\[benchmarks\]'"):
        open_benchmark("pcam", tmp_path)


def test_array_cache_key_follows_the_source_file(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    images, labels = pixels(3, 28, 28), np.array([1, 2, 3], np.uint8)
    (raw / "t10k-images-idx3-ubyte").write_bytes(idx_bytes(images))
    (raw / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(labels))
    key = files_key(open_benchmark("mnist", tmp_path).paths)
    assert files_key(open_benchmark("mnist", tmp_path).paths) == key
    images[0, 0, 0] ^= 1
    (raw / "t10k-images-idx3-ubyte").write_bytes(idx_bytes(images))  # same size: the mtime tells
    os.utime(raw / "t10k-images-idx3-ubyte", ns=(1, 1))
    changed = files_key(open_benchmark("mnist", tmp_path).paths)
    assert changed != key
    dataset = open_benchmark("mnist", tmp_path)
    dataset._keep([0, 2])  # a subset is another key; its images are still drawn from the right rows
    assert files_key(dataset.paths) != changed and dataset.labels == [1, 3]
    np.testing.assert_array_equal(np.asarray(dataset._load(1)), images[2])
    assert files_key([tmp_path / "a.png"]) == files_key([tmp_path / "a.png"])  # file paths keyed as before


# --- file-backed datasets ----------------------------------------------------------------------------------------


def test_gtsrb(tmp_path: Path) -> None:
    base = tmp_path / "gtsrb"
    test_images = base / "GTSRB" / "Final_Test" / "Images"
    for name in ("00000.ppm", "00001.ppm", "00002.ppm"):
        write_image(test_images / name)
    (base / "GT-final_test.csv").write_text("Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId\n"
                                            "00000.ppm;4;4;0;0;3;3;16\n00001.ppm;4;4;0;0;3;3;1\n"
                                            "00002.ppm;4;4;0;0;3;3;42\n")
    dataset = open_benchmark("gtsrb", tmp_path)
    assert dataset.labels == [16, 1, 42] and dataset.classes == [f"{i:05d}" for i in range(43)]
    assert dataset.paths == [test_images / n for n in ("00000.ppm", "00001.ppm", "00002.ppm")]
    assert dataset.transform is None and dataset._load(2).size == (4, 4)  # the caller sets the transform
    training = base / "GTSRB" / "Training"
    write_image(training / "00000" / "00000_00000.ppm")
    write_image(training / "00042" / "00000_00001.ppm")
    (training / "00042" / "GT-00042.csv").write_text("x")
    dataset = open_benchmark("gtsrb", base, "train")
    assert dataset.labels == [0, 42] and dataset.paths[1] == training / "00042" / "00000_00001.ppm"


@pytest.mark.parametrize("table, message", [
    ("Filename,Width,Height,ClassId\n00000.ppm,4,4,16\n",  # commas: resaved by a spreadsheet
     "{table} has columns Filename,Width,Height,ClassId; expected Filename;...;ClassId separated by ;"),
    ("Filename;ClassId\n00000.ppm;16\n00001.ppm;43\n", "{table} has ClassIds outside 0..42"),
    ("Filename;ClassId\n00000.ppm;-1\n", "{table} has ClassIds outside 0..42"),
    ("Filename,ClassId\n00000.ppm;16\n",  # only the header resaved: its first row has more fields than it
     "{table} has columns Filename,ClassId; expected Filename;...;ClassId separated by ;"),
    ("Filename;ClassId\n00000.ppm;16\n\n00001.ppm;x\n",  # the file's line number, blank lines counted
     "{table} line 4 has ClassId 'x'; expected a whole number 0..42"),
    ("Filename;ClassId\n00000.ppm\n", "{table} line 2 has no ClassId; expected a whole number 0..42"),
], ids=["commas", "class-43", "class-minus-1", "commas-in-header", "class-x", "no-class"])
def test_gtsrb_malformed_test_table(tmp_path: Path, table: str, message: str) -> None:
    (tmp_path / "GTSRB" / "Final_Test" / "Images").mkdir(parents=True)
    csv_file = write_text(tmp_path / "GT-final_test.csv", table)
    assert one_line_error(DataError, "gtsrb", tmp_path, csv_file) == message.format(table=csv_file)


def test_eurosat_hash_split(tmp_path: Path) -> None:
    classes = ["AnnualCrop", "Forest", "SeaLake"]
    for c in classes:
        for i in range(18):
            write_image(tmp_path / "2750" / c / f"{c}_{i}.jpg")
    test, train = open_benchmark("eurosat", tmp_path), open_benchmark("eurosat", tmp_path / "2750", "train")
    assert test.classes == classes == train.classes
    assert (len(test), len(train)) == (round(54 * 5 / 27), round(54 * 10 / 27))
    assert not set(test.paths) & set(train.paths)
    for dataset in (test, train):
        assert all(p.parent.name == classes[label] for p, label in zip(dataset.paths, dataset.labels))
    assert open_benchmark("eurosat", tmp_path).paths == test.paths  # fixed, not drawn anew


def test_resisc45_split_lists_and_hash_split(tmp_path: Path) -> None:
    base = tmp_path / "NWPU-RESISC45"
    for c in ("airplane", "baseball_diamond"):
        for i in range(1, 6):
            write_image(base / c / f"{c}_{i:03d}.jpg")
    no_lists = open_benchmark("resisc45", tmp_path)
    assert no_lists.classes == ["airplane", "baseball_diamond"] and len(no_lists) == 8
    assert len(open_benchmark("resisc45", tmp_path, "train")) == 1
    (tmp_path / "resisc45-test.txt").write_text("baseball_diamond_002.jpg\nairplane_005.jpg\n")
    (tmp_path / "resisc45-train.txt").write_text("airplane_001.jpg\n")
    (tmp_path / "resisc45-val.txt").write_text("baseball_diamond_003.jpg\n")
    test = open_benchmark("resisc45", base)
    assert test.labels == [1, 0] and test.paths == [base / "baseball_diamond" / "baseball_diamond_002.jpg",
                                                    base / "airplane" / "airplane_005.jpg"]
    assert open_benchmark("resisc45", tmp_path, "train").labels == [0, 1]


def test_resisc45_split_list_naming_a_class_without_a_folder(tmp_path: Path) -> None:
    base = tmp_path / "NWPU-RESISC45"
    write_image(base / "airplane" / "airplane_001.jpg")
    listing = write_lines(tmp_path / "resisc45-test.txt", ["airplane_001.jpg", "runway_007.jpg"])
    assert one_line_error(DataError, "resisc45", tmp_path, listing) == (
        f"{listing}: runway_007.jpg names class 'runway', which has no folder in {base}")


def test_dtd(tmp_path: Path) -> None:
    base = tmp_path / "dtd"
    for c in ("banded", "zigzagged"):
        for i in (1, 2, 3):
            write_image(base / "images" / c / f"{c}_000{i}.jpg")
    (base / "labels").mkdir()
    (base / "labels" / "test1.txt").write_text("zigzagged/zigzagged_0001.jpg\nbanded/banded_0002.jpg\n")
    (base / "labels" / "train1.txt").write_text("banded/banded_0001.jpg\n")
    (base / "labels" / "val1.txt").write_text("zigzagged/zigzagged_0003.jpg\n")
    test = open_benchmark("dtd", tmp_path)
    assert test.classes == ["banded", "zigzagged"] and test.labels == [1, 0]
    assert test.paths == [base / "images" / "zigzagged" / "zigzagged_0001.jpg", base / "images/banded/banded_0002.jpg"]
    assert open_benchmark("dtd", base, "train").labels == [0, 1]


def test_dtd_split_list_line_outside_the_class_folders(tmp_path: Path) -> None:
    base = tmp_path / "dtd"
    write_image(base / "images" / "banded" / "banded_0001.jpg")
    listing = write_lines(base / "labels" / "test1.txt", ["banded/banded_0001.jpg", "striped/striped_0001.jpg"])
    assert one_line_error(DataError, "dtd", tmp_path, listing) == (
        f"{listing}: striped/striped_0001.jpg is not in a class folder of {base / 'images'}")


def test_food101(tmp_path: Path) -> None:
    base = tmp_path / "food-101"
    for line in ("apple_pie/101", "apple_pie/102", "waffles/201", "baby_back_ribs/301"):
        write_image(base / "images" / f"{line}.jpg")
    (base / "meta").mkdir()
    (base / "meta" / "classes.txt").write_text("apple_pie\nbaby_back_ribs\nwaffles\n")
    (base / "meta" / "test.txt").write_text("waffles/201\napple_pie/102\n")
    (base / "meta" / "train.txt").write_text("apple_pie/101\nbaby_back_ribs/301\n")
    test = open_benchmark("food101", tmp_path)
    assert test.classes == ["apple_pie", "baby_back_ribs", "waffles"] and test.labels == [2, 0]
    assert test.paths == [base / "images" / "waffles" / "201.jpg", base / "images" / "apple_pie" / "102.jpg"]
    assert open_benchmark("food101", base, "train").labels == [0, 1]


def test_food101_split_list_line_of_an_unknown_class(tmp_path: Path) -> None:
    meta = tmp_path / "food-101" / "meta"
    write_lines(meta / "classes.txt", ["apple_pie", "waffles"])
    listing = write_lines(meta / "test.txt", ["waffles/201", "sushi/9"])
    assert one_line_error(DataError, "food101", tmp_path, listing) == (
        f"{listing}: sushi/9 is of a class not in {meta / 'classes.txt'}")


def test_sun397(tmp_path: Path) -> None:
    base = tmp_path / "SUN397"
    files = ["a/abbey/sun_aa.jpg", "a/apartment_building/outdoor/sun_bb.jpg", "b/bakery/shop/sun_cc.jpg"]
    for f in files:
        write_image(base / f)
    (base / "ClassName.txt").write_text("/a/abbey\n/a/apartment_building/outdoor\n/b/bakery/shop\n")
    (tmp_path / "Partitions").mkdir()
    (tmp_path / "Partitions" / "Testing_01.txt").write_text("/b/bakery/shop/sun_cc.jpg\n/a/abbey/sun_aa.jpg\n")
    (tmp_path / "Partitions" / "Training_01.txt").write_text("/a/apartment_building/outdoor/sun_bb.jpg\n")
    test = open_benchmark("sun397", tmp_path)
    assert test.classes == ["abbey", "apartment_building/outdoor", "bakery/shop"]
    assert test.labels == [2, 0] and test.paths == [base / files[2], base / files[0]]
    assert open_benchmark("sun397", base, "train").labels == [1]  # Partitions/ beside SUN397/


@pytest.mark.parametrize("class_names, broken, message", [
    (["/a/abbey", "/b/bakery/shop"], "Partitions/Testing_01.txt",
     "{listing}: /b/bakery/sun_cc.jpg is in no class of {names}"),
    (["/a/abbey", "bakery"], "ClassName.txt",
     "{names} has the line 'bakery'; expected /<letter>/<class> lines, e.g. /a/abbey"),
], ids=["line-in-no-class", "class-without-letter"])
def test_sun397_malformed_class_names_or_partition(tmp_path: Path, class_names: list[str], broken: str,
                                                   message: str) -> None:
    base = tmp_path / "SUN397"
    names = write_lines(base / "ClassName.txt", class_names)
    listing = write_lines(base / "Partitions" / "Testing_01.txt", ["/a/abbey/sun_aa.jpg", "/b/bakery/sun_cc.jpg"])
    expected = message.format(listing=listing, names=names)
    assert one_line_error(DataError, "sun397", tmp_path, base / broken) == expected


def test_country211_and_rendered_sst2_train_includes_valid(tmp_path: Path) -> None:
    base = tmp_path / "country211"
    for part in ("test", "train", "valid"):
        for code in ("AD", "ZW"):
            write_image(base / part / code / f"{part}_{code}.jpg")
    test = open_benchmark("country211", tmp_path)
    assert test.classes == ["AD", "ZW"] and test.labels == [0, 1]
    assert test.paths == [base / "test" / "AD" / "test_AD.jpg", base / "test" / "ZW" / "test_ZW.jpg"]
    assert [p.parent.parent.name for p in open_benchmark("country211", base, "train").paths] == ["train"] * 2 + [
        "valid"] * 2

    sst = tmp_path / "rendered-sst2"
    for part, n in (("test", 2), ("train", 1), ("valid", 1)):
        for c in ("negative", "positive"):
            for i in range(n):
                write_image(sst / part / c / f"{i}.png")
    test = open_benchmark("rendered_sst2", tmp_path)
    assert test.classes == ["negative", "positive"] and test.labels == [0, 0, 1, 1]
    assert len(open_benchmark("rendered_sst2", sst, "train")) == 4


def test_hateful_memes(tmp_path: Path) -> None:
    base = tmp_path / "hateful_memes"
    for i in (42953, 23058, 13894):
        write_image(base / "img" / f"{i}.png")
    entries = [{"id": 42953, "img": "img/42953.png", "label": 0, "text": "its their character not their color"},
               {"id": 23058, "img": "img/23058.png", "label": 1, "text": "don't be afraid"}]
    (base / "dev_seen.jsonl").write_text("".join(json.dumps(e) + "\n" for e in entries))
    (base / "train.jsonl").write_text(json.dumps({"id": 13894, "img": "img/13894.png", "label": 1, "text": "x"}))
    test = open_benchmark("hateful_memes", tmp_path)
    assert test.classes == ["not hateful", "hateful"] and test.labels == [0, 1]
    assert test.paths == [base / "img" / "42953.png", base / "img" / "23058.png"]
    assert open_benchmark("hateful_memes", base, "train").labels == [1]
    (base / "dev_seen.jsonl").write_text('{"id": 1, "img": "img/1.png", "text": "no label"}\n')
    with pytest.raises(DataError, match="dev_seen.jsonl line 1: expected a JSON object with img and label"):
        open_benchmark("hateful_memes", tmp_path)


def test_clevr_counts(tmp_path: Path) -> None:
    base = tmp_path / "CLEVR_v1.0"
    names = ["CLEVR_val_000001.png", "CLEVR_val_000000.png"]
    for name in names:
        write_image(base / "images" / "val" / name)
    scenes = {"scenes": [{"image_filename": names[0], "objects": [{}] * 10},
                         {"image_filename": names[1], "objects": [{}] * 3}]}
    (base / "scenes").mkdir()
    (base / "scenes" / "CLEVR_val_scenes.json").write_text(json.dumps(scenes))
    test = open_benchmark("clevr_counts", tmp_path)
    assert test.classes == [str(n) for n in range(3, 11)] and test.labels == [0, 7]
    assert test.paths == [base / "images" / "val" / names[1], base / "images" / "val" / names[0]]
    with pytest.raises(FileNotFoundError, match=r"CLEVR_v1.0/scenes/CLEVR_train_scenes\.json"):
        open_benchmark("clevr_counts", tmp_path, "train")


@pytest.mark.parametrize("scenes, message", [
    ('{"scenes": [{"image_filename": "CLEVR_val_000000.png", "obj',  # an interrupted download
     "{file} is not a CLEVR scenes file (JSONDecodeError: Unterminated string starting at: line 1 column 56 "
     "(char 55))"),
    ('{"info": {"split": "val"}}', "{file} is not a CLEVR scenes file (KeyError: 'scenes')"),
    ('{"scenes": [{"image_filename": "CLEVR_val_000000.png"}]}',
     "{file} is not a CLEVR scenes file (KeyError: 'objects')"),
    ('{"scenes": [{"image_filename": "CLEVR_val_000000.png", "objects": [{}, {}, {}]}, '
     '{"image_filename": "CLEVR_val_000001.png", "objects": [' + ", ".join(["{}"] * 11) + "]}]}",
     "{file}: CLEVR_val_000001.png has 11 objects; CLEVR counts are 3 to 10"),
    ('{"scenes": [{"image_filename": "CLEVR_val_000000.png", "objects": [{}, {}]}]}',
     "{file}: CLEVR_val_000000.png has 2 objects; CLEVR counts are 3 to 10"),
], ids=["truncated", "no-scenes", "no-objects", "11-objects", "2-objects"])
def test_clevr_counts_malformed_scenes_file(tmp_path: Path, scenes: str, message: str) -> None:
    file = write_text(tmp_path / "CLEVR_v1.0" / "scenes" / "CLEVR_val_scenes.json", scenes)
    assert one_line_error(DataError, "clevr_counts", tmp_path, file) == message.format(file=file)


# --- the registry and errors -------------------------------------------------------------------------------------

EXPECTED_FILE = {
    "cifar10": "cifar-10-batches-py/batches.meta", "cifar100": "cifar-100-python/meta",
    "mnist": "MNIST/raw/t10k-images-idx3-ubyte", "stl10": "stl10_binary/class_names.txt", "fer2013": "fer2013.csv",
    "pcam": "camelyonpatch_level_2_split_test_x.h5", "gtsrb": "GT-final_test.csv", "eurosat": "2750/AnnualCrop",
    "resisc45": "NWPU-RESISC45/airplane", "dtd": "dtd/labels/test1.txt", "food101": "food-101/meta/classes.txt",
    "sun397": "SUN397/ClassName.txt", "country211": "country211/test", "rendered_sst2": "rendered-sst2/test",
    "hateful_memes": "hateful_memes/img", "clevr_counts": "CLEVR_v1.0/scenes/CLEVR_val_scenes.json",
}


@pytest.mark.parametrize("name", sorted(EXPECTED_FILE))
def test_missing_dataset_names_the_expected_file(tmp_path: Path, name: str) -> None:
    assert name in READERS
    with pytest.raises(FileNotFoundError) as e:
        open_benchmark(name, tmp_path)
    assert f"expected {tmp_path / EXPECTED_FILE[name]}" in str(e.value) and "\n" not in str(e.value)


def test_open_benchmark_rejects_unknown_names_splits_and_roots(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="did you mean cifar10"):
        open_benchmark("cifar-10", tmp_path)
    with pytest.raises(ConfigError, match="split 'val' of mnist: expected one of test, train"):
        open_benchmark("mnist", tmp_path, "val")
    with pytest.raises(FileNotFoundError, match="dataset folder .*nowhere does not exist"):
        open_benchmark("mnist", tmp_path / "nowhere")


def test_multilabel_and_captioned_datasets_keep_their_rows_together(tmp_path: Path) -> None:
    paths = [write_image(tmp_path / f"{i}.png", Image.new("RGB", (4, 4), (10 * i, 0, 0))) for i in range(3)]
    targets = np.array([[0, 1, -1], [-1, 0, 1], [0, 0, 0]])
    multi = MultiLabelImages(paths, targets, ["cat", "dog", "car"], transform=None, source="voc")
    assert multi.labels == [1, 2, 0] and multi.targets.dtype == np.int8
    multi._keep([2, 0])
    np.testing.assert_array_equal(multi.targets, targets[[2, 0]])
    assert multi.labels == [0, 1] and multi.paths == [paths[2], paths[0]]
    with pytest.raises(ValueError, match="expected \\(3, 2\\)"):
        MultiLabelImages(paths, targets, ["cat", "dog"], transform=None, source="voc")

    captioned = CaptionedImages(paths, [["a"], ["b", "c"], ["d"]], transform=lambda image: image.size,
                                source="coco")
    assert captioned.labels == [0, 1, 2] and captioned.classes == []
    assert captioned[1] == ((4, 4), 1)
    captioned._keep([0, 2])
    assert captioned.captions == [["a"], ["d"]] and captioned.labels == [0, 1] and captioned[1] == ((4, 4), 1)


def test_array_images_load_through_the_model_transform_and_a_loader(tmp_path: Path) -> None:
    import torch

    from clipworks.data.datasets import collate_skip_bad
    from clipworks.models.transforms import image_transform

    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "t10k-images-idx3-ubyte").write_bytes(idx_bytes(pixels(3, 28, 28)))
    (raw / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(np.array([5, 6, 7], np.uint8)))
    dataset = open_benchmark("mnist", tmp_path)
    dataset.transform = image_transform(16)  # grey images come out as 3 channels, as the model expects
    images, labels = next(iter(torch.utils.data.DataLoader(dataset, batch_size=4, collate_fn=collate_skip_bad)))
    assert images.shape == (3, 3, 16, 16) and labels.tolist() == [5, 6, 7]
    assert dataset.n_checked == 3 and dataset.n_bad == 0 and dataset.scan() == [] and len(dataset) == 3
