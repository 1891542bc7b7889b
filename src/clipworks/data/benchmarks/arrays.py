"""Readers of the evaluation datasets that ship their images as arrays: CIFAR-10/100 (pickles), MNIST (idx),
STL-10 (raw binary), FER2013 (CSV of pixel values) and PatchCamelyon (HDF5). Each returns an `ArrayImages`.

Layouts are torchvision's (torchvision/datasets/{cifar,mnist,stl10,fer2013,pcam}.py) and the original releases'.
CIFAR's files are Python pickles, which can run code when loaded: they are read by an unpickler that builds only
numpy arrays and plain containers and refuses anything else (`load_array_pickle`).
"""

from __future__ import annotations

import bisect
import csv
import gzip
import os
import pickle
from pathlib import Path
from types import ModuleType

import numpy as np

from ...errors import DataError
from ..datasets import ArrayImages
from ..tables import nonblank_lines
from . import find, reader

try:
    from numpy._core.multiarray import _reconstruct
except ImportError:  # numpy < 1.26
    from numpy.core.multiarray import _reconstruct

# The only globals an array pickle may name: numpy's array reconstruction (under its numpy 1 and numpy 2 module
# names). Dicts, lists, tuples, strings and numbers need no global.
_PICKLE_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


class _Refused(Exception):
    pass


class _ArrayUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> object:
        try:
            return _PICKLE_GLOBALS[(module, name)]
        except KeyError:
            raise _Refused(f"{module}.{name}") from None


def load_array_pickle(path: Path) -> object:
    """The contents of a pickle of numpy arrays and plain containers (CIFAR's batches), read without running code:
    a pickle naming any other global (a function, a class) is refused with a DataError.
    """
    try:
        with open(path, "rb") as f:
            # latin1: the CIFAR pickles were written by Python 2; its str data decodes byte for byte.
            return _ArrayUnpickler(f, encoding="latin1").load()
    except _Refused as e:
        raise DataError(f"{path} is not a plain array pickle: it names {e}, which could run code; refused") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError) as e:
        raise DataError(f"{path} is not a readable pickle ({type(e).__name__}: {e})") from None


def _key(batch: object, key: str, path: Path) -> object:
    if not isinstance(batch, dict) or key not in batch:
        raise DataError(f"{path} has no {key!r} entry; expected a CIFAR python batch (a dict with {key!r})")
    return batch[key]


def _cifar(root: Path, split: str, *, folder: str, files: dict[str, list[str]], meta: str, names_key: str,
           labels_key: str) -> ArrayImages:
    base = find(root, f"{folder}/{meta}", meta).parent.resolve()
    classes = [str(c) for c in _key(load_array_pickle(find(base, meta)), names_key, base / meta)]
    images, labels, paths = [], [], []
    for name in files[split]:
        path = find(base, name)
        batch = load_array_pickle(path)
        data = np.asarray(_key(batch, "data", path), dtype=np.uint8)
        batch_labels = [int(x) for x in _key(batch, labels_key, path)]
        if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(data) != len(batch_labels):
            raise DataError(f"{path}: data has shape {data.shape} for {len(batch_labels)} labels; expected "
                            "(N, 3072): 32x32 images with the red, green and blue planes one after another")
        images.append(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))  # (N, 32, 32, 3)
        labels += batch_labels
        paths += ArrayImages.stand_ins(path, len(data))
    return ArrayImages(np.concatenate(images), labels, classes, paths=paths, transform=None, source=str(base))


@reader("cifar10")
def read_cifar10(root: Path, split: str) -> ArrayImages:
    """torchvision's `cifar-10-batches-py/` (test_batch; data_batch_1..5 for train). Labels in the order of
    batches.meta's `label_names`: airplane, automobile, bird, cat, deer, dog, frog, horse, ship, truck.
    """
    return _cifar(root, split, folder="cifar-10-batches-py", meta="batches.meta", names_key="label_names",
                  labels_key="labels", files={"test": ["test_batch"],
                                              "train": [f"data_batch_{i}" for i in range(1, 6)]})


@reader("cifar100")
def read_cifar100(root: Path, split: str) -> ArrayImages:
    """torchvision's `cifar-100-python/` (test; train), the 100 fine labels in the order of meta's
    `fine_label_names` (alphabetical: apple, aquarium_fish, baby, bear, ...).
    """
    return _cifar(root, split, folder="cifar-100-python", meta="meta", names_key="fine_label_names",
                  labels_key="fine_labels", files={"test": ["test"], "train": ["train"]})


def _read_idx(path: Path) -> np.ndarray:
    """An idx file (LeCun's MNIST format: 0, 0, type 0x08 = uint8, ndim; big-endian int32 sizes; the data)."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as e:
        raise DataError(f"{path} could not be read ({e})") from None
    if len(data) < 4 or data[:3] != b"\x00\x00\x08":
        raise DataError(f"{path} is not an idx file of unsigned bytes (it should start 00 00 08)")
    ndim = data[3]
    shape = tuple(int(x) for x in np.frombuffer(data, ">i4", count=ndim, offset=4))
    body = np.frombuffer(data, np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise DataError(f"{path} holds {body.size} values for a shape of {shape}: the file is truncated")
    return body.reshape(shape)


def _mnist_file(root: Path, name: str) -> Path:
    candidates = [f"{folder}{name}{gz}" for folder in ("MNIST/raw/", "raw/", "") for gz in ("", ".gz")]
    return find(root, *candidates)


@reader("mnist")
def read_mnist(root: Path, split: str) -> ArrayImages:
    """torchvision's `MNIST/raw/` (or the bare files): t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte for test,
    train-* for train, each plain or .gz. Labels are the digits: classes "0" ... "9".
    """
    prefix = "t10k" if split == "test" else "train"
    images_file = _mnist_file(root, f"{prefix}-images-idx3-ubyte")
    labels_file = _mnist_file(root, f"{prefix}-labels-idx1-ubyte")
    images, labels = _read_idx(images_file), _read_idx(labels_file)
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise DataError(f"{images_file} ({images.shape}) and {labels_file} ({labels.shape}) do not pair up as "
                        "(N, 28, 28) images and (N,) labels")
    return ArrayImages(images, labels.tolist(), [str(d) for d in range(10)],
                       paths=ArrayImages.stand_ins(images_file, len(images)), transform=None,
                       source=str(images_file.parent))


class _MappedSTL10:
    """An STL-10 `*_X.bin` file, memory-mapped on first use: image i is stored as (3, 96, 96) column-major."""

    SIDE = 96

    def __init__(self, file: Path) -> None:
        size = file.stat().st_size
        per_image = 3 * self.SIDE * self.SIDE
        if size % per_image:
            raise DataError(f"{file} has {size} bytes, not a whole number of 3x96x96 images: the file is truncated")
        self.file, self.n, self._map = file, size // per_image, None

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> np.ndarray:
        if self._map is None:
            self._map = np.memmap(self.file, np.uint8, "r", shape=(self.n, 3, self.SIDE, self.SIDE))
        return np.ascontiguousarray(self._map[index].transpose(2, 1, 0))  # (96, 96, 3)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_map": None}  # a worker maps the file itself


@reader("stl10")
def read_stl10(root: Path, split: str) -> ArrayImages:
    """The original `stl10_binary/` (test_X.bin, test_y.bin; train_X.bin, train_y.bin: the 5,000 labelled training
    images, not one of the 1,000-image folds). Labels 1..10 in the files become 0..9, in the order of
    class_names.txt: airplane, bird, car, cat, deer, dog, horse, monkey, ship, truck.
    """
    names_file = find(root, "stl10_binary/class_names.txt", "class_names.txt")
    base = names_file.parent
    classes = nonblank_lines(names_file)
    if not classes:
        raise DataError(f"{names_file} names no classes; expected one class name a line")
    images = _MappedSTL10(find(base, f"{split}_X.bin"))
    labels_file = find(base, f"{split}_y.bin")
    raw = np.fromfile(labels_file, np.uint8)  # one byte a label, 1..10
    if len(raw) != len(images):
        raise DataError(f"{labels_file} has {len(raw)} labels for the {len(images)} images in {images.file}; "
                        "expected one label byte per image")
    outside = np.flatnonzero((raw < 1) | (raw > len(classes)))
    if len(outside):
        first = int(outside[0])
        raise DataError(f"{labels_file} has the label {raw[first]} at byte {first}, outside 1..{len(classes)} (the "
                        f"{len(classes)} classes of {names_file.name})"
                        + (f"; {len(outside)} labels are outside" if len(outside) > 1 else ""))
    labels = raw.astype(np.int64) - 1
    return ArrayImages(images, labels.tolist(), classes, paths=ArrayImages.stand_ins(images.file, len(images)),
                       transform=None, source=str(base))


FER2013_CLASSES = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]  # emotion 0..6
_FER_USAGE = {"test": ("PrivateTest",), "train": ("Training", "PublicTest")}


@reader("fer2013")
def read_fer2013(root: Path, split: str) -> ArrayImages:
    """Kaggle's `fer2013.csv` (emotion,pixels,Usage; or its `icml_face_data.csv`, the same with spaces in the
    header): test = PrivateTest, train = Training + PublicTest (the paper's Table 9 counts ~32k train, ~3.6k test);
    or torchvision's `fer2013/{train,test}.csv` (emotion,pixels).
    48x48 grey images. Labels are the emotion codes 0..6: angry, disgust, fear, happy, sad, surprise, neutral.
    """
    path = find(root, "fer2013.csv", "fer2013/fer2013.csv", "icml_face_data.csv", "fer2013/icml_face_data.csv",
                f"{split}.csv", f"fer2013/{split}.csv")
    with open(path, newline="") as f:
        rows = csv.DictReader(f)
        fields = [name.strip() for name in rows.fieldnames or []]
        if "emotion" not in fields or "pixels" not in fields:
            raise DataError(f"{path} has columns {', '.join(fields)}; expected emotion,pixels[,Usage] (Kaggle's "
                            "competition test.csv has no labels: use fer2013.csv)")
        usage = _FER_USAGE[split] if "Usage" in fields else None
        images, labels = [], []
        for row in rows:
            row = {k.strip(): v for k, v in row.items()}
            if usage is not None and row["Usage"].strip() not in usage:
                continue
            pixels = np.fromstring(row["pixels"], dtype=np.int32, sep=" ")
            if pixels.size != 48 * 48 or pixels.min() < 0 or pixels.max() > 255:
                raise DataError(f"{path} line {rows.line_num}: {pixels.size} pixel values; expected 2304 (48x48) "
                                "values 0..255")
            images.append(pixels.astype(np.uint8).reshape(48, 48))
            labels.append(int(row["emotion"]))
    if not images:
        raise DataError(f"{path} has no rows for the {split} split"
                        + (f" (Usage {' or '.join(usage)})" if usage else ""))
    return ArrayImages(np.stack(images), labels, list(FER2013_CLASSES), paths=ArrayImages.stand_ins(path, len(labels)),
                       transform=None, source=str(path))


def _h5py() -> ModuleType:
    try:
        import h5py
    except ImportError:
        raise DataError("reading PatchCamelyon's .h5 files needs h5py: pip install 'clipworks[benchmarks]'") from None
    return h5py


class _H5Images:
    """The "x" datasets of one or more HDF5 files as one sequence, each file opened on first use in each process
    (h5py handles do not survive a fork into DataLoader workers).
    """

    def __init__(self, files: list[Path], key: str) -> None:
        h5py = _h5py()
        self.files, self.key, self.ends = files, key, []
        for file in files:
            with h5py.File(file, "r") as f:
                self.ends.append((self.ends[-1] if self.ends else 0) + len(f[key]))
        self._open: dict[Path, object] = {}
        self._pid = os.getpid()

    def __len__(self) -> int:
        return self.ends[-1]

    def __getitem__(self, index: int) -> np.ndarray:
        if self._pid != os.getpid():
            self._open, self._pid = {}, os.getpid()
        part = bisect.bisect_right(self.ends, index)
        file = self.files[part]
        if file not in self._open:
            self._open[file] = _h5py().File(file, "r")
        return self._open[file][self.key][index - (self.ends[part - 1] if part else 0)]

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_open": {}}


_PCAM_PARTS = {"test": ("test",), "train": ("train", "valid")}


@reader("pcam")
def read_pcam(root: Path, split: str) -> ArrayImages:
    """The PatchCamelyon release's `camelyonpatch_level_2_split_{test,train,valid}_{x,y}.h5` (decompressed):
    96x96 RGB patches. test = the test files; train = train + valid (294,912, as the paper's Table 9), valid only if
    present. Labels 0/1 from y: "no metastatic tissue", "metastatic tissue". Needs h5py (the `benchmarks` extra).
    """
    h5py = _h5py()
    image_files, labels = [], []
    for i, part in enumerate(_PCAM_PARTS[split]):
        names = [f"camelyonpatch_level_2_split_{part}_{xy}.h5" for xy in "xy"]
        if i > 0 and not (root / names[0]).exists() and not (root / "pcam" / names[0]).exists():
            continue
        for name in names:
            for folder in (root, root / "pcam"):
                if not (folder / name).exists() and (folder / f"{name}.gz").exists():
                    raise DataError(f"{folder / name} is still compressed: gunzip {folder / name}.gz first")
        x, y = (find(root, name, f"pcam/{name}") for name in names)
        with h5py.File(y, "r") as f:
            labels += np.asarray(f["y"]).reshape(-1).astype(int).tolist()
        image_files.append(x)
    images = _H5Images(image_files, "x")
    if len(images) != len(labels):
        raise DataError(f"{', '.join(map(str, image_files))}: {len(images)} images but {len(labels)} labels")
    starts = [0] + images.ends[:-1]
    paths = [p for file, start, end in zip(image_files, starts, images.ends)
             for p in ArrayImages.stand_ins(file, end - start)]
    return ArrayImages(images, labels, ["no metastatic tissue", "metastatic tissue"], paths=paths, transform=None,
                       source=str(image_files[0].parent))
