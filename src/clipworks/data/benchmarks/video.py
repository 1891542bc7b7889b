"""Readers for the video benchmarks, UCF101 and Kinetics-700, as the paper evaluates them: one image per clip, the
clip's middle frame (Radford et al. 2021, Appendix A.1).

A clip on disk is either a folder of its frames (the middle one by file name is used, so the dataset is
plain image files) or a video file, whose middle frame PyAV decodes (the `benchmarks` extra installs it).
Label order:
- ucf101: `ucfTrainTestlist/classInd.txt` (1-based index, minus one); train is split 1's `trainlist01.txt` (the
  paper's 9,537 clips), test all of `testlist01.txt` (3,783 clips; the paper's Table 9 lists 1,794).
- kinetics700: the sorted distinct labels of the split's CSV: test reads `annotations/val.csv` (the labelled
  held-out split), train `train.csv`. A clip is `<youtube_id>_<start:06d>_<end:06d>` (the name the
  official downloaders give it), found anywhere under the split's folder. Clips missing on disk (videos since
  removed from YouTube) are left out with a warning.
"""

from __future__ import annotations

import csv
import importlib.util
import logging
import os
import re
from pathlib import Path

from PIL import Image

from ...errors import DataError
from ..datasets import _MIN_CHECKED, IMAGE_EXTENSIONS, LabelledImages
from ..images import UnreadableImage, check_image
from . import reader
from .annotated import check_split, first_existing, inside, need, read_lines

log = logging.getLogger(__name__)

VIDEO_EXTENSIONS = frozenset({".avi", ".mp4", ".mkv", ".webm", ".mov"})
NEEDS_PYAV = ("reading video files needs PyAV: pip install 'clipworks[benchmarks]' (or give each clip as a folder "
              "of its frames)")


def middle_frame_file(folder: Path) -> Path | None:
    """The middle of the image files in a clip's frame folder, by name with numbers compared as numbers (so that
    img_2 comes before img_10); None if there are none."""
    frames = sorted((p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS),
                    key=lambda p: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", p.name)])
    return frames[len(frames) // 2] if frames else None


def middle_frame(video: Path) -> Image.Image:
    """The frame showing at the middle of a video's duration, decoded with PyAV (frame len // 2 of a video whose
    frames all last as long, as for a frame folder)."""
    import av  # the benchmarks extra; checked when the dataset is read

    try:
        with av.open(str(video)) as container:
            stream = container.streams.video[0]
            if stream.duration:
                target = (stream.start_time or 0) + stream.duration // 2  # in stream.time_base units
                container.seek(target, stream=stream)  # to the key frame at or before the target
                frame = None
                for decoded in container.decode(stream):
                    if frame is not None and decoded.pts is not None and decoded.pts > target:
                        break
                    frame = decoded
            else:  # no duration in the header: decode all and take the middle one
                frames = list(container.decode(stream))
                frame = frames[len(frames) // 2] if frames else None
            if frame is None:
                raise ValueError("no video frames")
            return frame.to_image()
    except Exception as e:
        raise UnreadableImage(f"{video} has no readable middle frame ({type(e).__name__}: {e})",
                              f"{type(e).__name__}: {e}") from None


class VideoClips(LabelledImages):
    """Clips given as image files (a frame folder's middle frame) or video files (middle frame decoded)."""

    def _load(self, index: int) -> Image.Image | None:
        path = self.paths[index]
        if path.suffix.lower() not in VIDEO_EXTENSIONS:
            return super()._load(index)
        try:
            image, reason = middle_frame(path), None
        except UnreadableImage as e:
            image, reason = None, e.reason
        self._record(path, reason)
        if reason is not None and self.n_checked >= min(_MIN_CHECKED, len(self)):
            self._stop_if_mostly_bad(self.bad, self.n_checked)
        return image

    def _problem(self, path: Path) -> str | None:
        """A video is checked by decoding its middle frame; a frame image as any image."""
        return _video_problem(path) if path.suffix.lower() in VIDEO_EXTENSIONS else check_image(path)


def _video_problem(path: Path) -> str | None:
    try:
        middle_frame(path)
    except UnreadableImage as e:
        return e.reason
    return None


def clip_image(clip: Path | None) -> Path | None:
    """What stands for a clip: its frame folder's middle frame, or its video file; None when neither is there."""
    if clip is None:
        return None
    if clip.is_dir():
        return middle_frame_file(clip)
    return clip if clip.is_file() and clip.suffix.lower() in VIDEO_EXTENSIONS else None


def clips_dataset(dataset: str, found: list[tuple[Path | None, int]], expected: list[Path], classes: list[str],
                  source: Path) -> VideoClips:
    """The clips that are on disk, with a warning for those that are not and an error if none are."""
    if not found:
        raise DataError(f"{dataset}: {source} lists no clips")
    present = [(path, label) for path, label in found if path is not None]
    if not present:
        raise FileNotFoundError(f"{dataset}: none of the {len(found)} clips are on disk; expected e.g. "
                                f"{expected[0]} (a video, or a folder of its frames)")
    if len(present) < len(found):
        log.warning("%s: %d of %d clips are not on disk (e.g. %s); using the %d present", dataset,
                    len(found) - len(present), len(found), next(e for e, (p, _) in zip(expected, found) if p is None),
                    len(present))
    paths = [path for path, _ in present]
    if any(p.suffix.lower() in VIDEO_EXTENSIONS for p in paths) and importlib.util.find_spec("av") is None:
        raise DataError(f"{dataset}: {NEEDS_PYAV}")
    return VideoClips(paths, [label for _, label in present], classes, transform=None, source=str(source))


@reader("ucf101")
def read_ucf101(root: Path, split: str) -> VideoClips:
    check_split("ucf101", split)
    lists = first_existing([root / "ucfTrainTestlist", root / "UCF101TrainTestSplits-RecognitionTask" /
                            "ucfTrainTestlist"], "ucf101", "the split files")
    classes = []
    for line in read_lines(lists / "classInd.txt", "ucf101"):
        number, _, name = line.partition(" ")
        if not number.isdigit() or int(number) != len(classes) + 1:
            raise DataError(f"ucf101: {lists / 'classInd.txt'} should number its classes 1, 2, ... in order; "
                            f"found {line!r}")
        classes.append(name.strip())
    index = {name.lower(): i for i, name in enumerate(classes)}  # the lists' folder names differ in case at times
    listing = lists / ("trainlist01.txt" if split == "train" else "testlist01.txt")
    videos = inside(root, "UCF-101", "UCF101")
    found, expected = [], []
    for line in read_lines(listing, "ucf101"):
        rel = Path(line.split()[0])
        label = index.get(rel.parent.name.lower())
        if label is None:
            raise DataError(f"ucf101: {listing} names {rel}, whose class is not in classInd.txt")
        candidates = [videos / rel.with_suffix(""), videos / rel, videos / rel.stem]
        clip = next((c for c in candidates if c.exists()), None)
        expected.append(videos / rel)
        found.append((clip_image(clip), label))
    return clips_dataset("ucf101", found, expected, classes, listing)


def _index_clips(folder: Path) -> dict[str, Path]:
    """Clip name -> video file or frame folder, for everything under `folder`."""
    clips: dict[str, Path] = {}
    for parent, dirs, files in os.walk(folder):
        for name in dirs:
            clips.setdefault(name, Path(parent) / name)
        for name in files:
            path = Path(parent) / name
            if path.suffix.lower() in VIDEO_EXTENSIONS:
                clips[path.stem] = path
    return clips


@reader("kinetics700")
def read_kinetics700(root: Path, split: str) -> VideoClips:
    check_split("kinetics700", split)
    base = inside(root, "kinetics700", "k700-2020")
    name = "train" if split == "train" else "val"
    table = need(base / "annotations" / f"{name}.csv", "kinetics700")
    with open(table, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        numbered = [(reader.line_num, row) for row in reader]  # (line number, row)
    rows = [row for _, row in numbered]
    if not rows or not {"label", "youtube_id", "time_start", "time_end"} <= set(rows[0]):
        raise DataError(f"kinetics700: {table} should have the columns label,youtube_id,time_start,time_end,split")
    classes = sorted({r["label"] for r in rows})
    index = {c: i for i, c in enumerate(classes)}
    folder = need(base / name, "kinetics700", f"the {name} clips, as {base / name}/<label>/<clip>.mp4")
    clips = _index_clips(folder)
    found, expected = [], []
    for number, r in numbered:
        try:
            clip = f"{r['youtube_id']}_{int(float(r['time_start'])):06d}_{int(float(r['time_end'])):06d}"
        except (TypeError, ValueError, OverflowError):  # TypeError: None, a row that ends before its times
            raise DataError(f"kinetics700: {table} line {number} has time_start {r['time_start']!r} and time_end "
                            f"{r['time_end']!r}; expected seconds, as numbers") from None
        expected.append(folder / r["label"] / f"{clip}.mp4")
        found.append((clip_image(clips.get(clip)), index[r["label"]]))
    return clips_dataset("kinetics700", found, expected, classes, table)
