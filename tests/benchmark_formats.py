"""The one writer of each file format the benchmark datasets' layouts use: images and text files, CIFAR's Python 2
pickles, idx (MNIST), STL-10's binary, FER2013's CSV, HDF5 (PatchCamelyon), MATLAB files (the devkits), VOC XML,
KITTI labels, Karpathy's JSON and videos (PyAV).

The reader tests (test_benchmark_readers*.py) write their hand-made sets with these, and benchmark_fixtures.py its
copy of every dataset: each format is written in one place.
"""

from __future__ import annotations

import io
import json
import pickle
import struct
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image


def write_image(path: Path, image: Image.Image | None = None) -> Path:
    """`image` (by default a 4x4 red square) at `path`, in the format its suffix names (.jpg, .png, .ppm, ...)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    (image or Image.new("RGB", (4, 4), (200, 30, 30))).save(path)
    return path


def write_bytes(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def write_text(path: Path, content: str) -> Path:
    return write_bytes(path, content.encode("utf-8"))


def write_lines(path: Path, lines: Sequence[str]) -> Path:
    return write_text(path, "".join(f"{line}\n" for line in lines))


class Py2Pickler(pickle._Pickler):
    """Writes str and bytes as Python 2 byte strings (BINSTRING), as the CIFAR release's pickles hold them."""

    dispatch = dict(pickle._Pickler.dispatch)

    def save_py2_str(self, obj: str | bytes) -> None:
        data = obj if isinstance(obj, bytes) else obj.encode("latin1")
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    dispatch[str] = save_py2_str
    dispatch[bytes] = save_py2_str


def py2_pickle(path: Path, obj: object) -> None:
    """`obj` pickled as Python 2 and numpy 1 wrote CIFAR's batches (numpy's reconstruct under its numpy 1 name)."""
    buffer = io.BytesIO()
    Py2Pickler(buffer, protocol=2).dump(obj)
    data = buffer.getvalue().replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n")
    assert b"_core" not in data and b"_codecs" not in data
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def cifar_rows(images: np.ndarray) -> np.ndarray:
    """(N, 32, 32, 3) -> CIFAR's rows of 3072: the red plane, then green, then blue."""
    return images.transpose(0, 3, 1, 2).reshape(len(images), 3072)


def idx_bytes(array: np.ndarray) -> bytes:
    """LeCun's idx format of a uint8 array: 00 00 08 ndim, big-endian int32 sizes, the data."""
    return bytes([0, 0, 8, array.ndim]) + struct.pack(f">{array.ndim}i", *array.shape) + array.tobytes()


def stl10_bytes(images: np.ndarray) -> bytes:
    """(N, 96, 96, 3) -> STL-10's *_X.bin: each image (3, 96, 96), column-major."""
    return images.transpose(0, 3, 2, 1).tobytes()


def fer2013_csv(faces: np.ndarray, emotions: Sequence[int], usages: Sequence[str] | None = None, *,
                columns: Sequence[str] = ("emotion", "pixels", "Usage")) -> str:
    """Kaggle's fer2013.csv: a row per 48x48 face, pixels as space-separated values, in the order of `columns` (which
    may carry spaces, as icml_face_data.csv's header does); without `usages`, torchvision's {train,test}.csv."""
    columns = [c for c in columns if usages is not None or c.strip() != "Usage"]
    rows = [{"emotion": str(e), "pixels": " ".join(map(str, face.ravel())), "Usage": usage}
            for e, face, usage in zip(emotions, faces, usages or [""] * len(faces))]
    lines = [list(columns), *([row[c.strip()] for c in columns] for row in rows)]
    return "".join(",".join(line) + "\n" for line in lines)


def write_h5(path: Path, key: str, array: np.ndarray) -> None:
    import h5py  # the benchmarks extra

    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        f[key] = array


def write_mat(path: Path, **variables: object) -> None:
    import scipy.io

    path.parent.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(path, variables)


def mat_structs(fields: Sequence[str], rows: Sequence[Sequence[object]]) -> np.ndarray:
    """A MATLAB struct array (what the devkits' annotations and synsets are), one struct per row."""
    return np.array([tuple(row) for row in rows], dtype=[(f, object) for f in fields])


def voc_xml(image_id: str, objects: Sequence[tuple[str, int]]) -> str:
    """A VOC annotation: one <object> per (class name, difficult 0/1)."""
    body = "".join(f"<object><name>{name}</name><pose>Left</pose><truncated>0</truncated><difficult>{difficult}"
                   "</difficult><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>9</xmax><ymax>9</ymax></bndbox></object>"
                   for name, difficult in objects)
    return f"<annotation><folder>VOC2007</folder><filename>{image_id}.jpg</filename>{body}</annotation>\n"


def kitti_line(kind: str, z: float) -> str:
    """One KITTI object label: type truncated occluded alpha bbox*4 dimensions*3 location*3 rotation_y."""
    return f"{kind} 0.00 0 -1.57 600.0 150.0 630.0 190.0 1.5 1.6 3.9 1.0 1.7 {z} 0.01"


def sentences(*raw: str) -> list[dict]:
    return [{"raw": r, "tokens": r.lower().strip(" .").split()} for r in raw]


def karpathy_json(images: Sequence[dict]) -> str:
    """Karpathy's dataset_*.json: images[] with filename, split, sentences[].raw (and COCO's filepath)."""
    return json.dumps({"dataset": "x", "images": list(images)})


def write_video(path: Path, frames: Sequence[np.ndarray], fps: int = 10) -> None:
    """An MPEG-4 video of `frames` ((H, W, 3) uint8, even sides) in the container `path`'s suffix names."""
    import av  # the benchmarks extra

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
