"""Readers for the retrieval benchmarks, Flickr30k and MS-COCO, in Karpathy's split (Karpathy & Fei-Fei 2015), as the
paper's Table 13: the 1,000 Flickr30k and 5,000 COCO test images with 5 captions each.

Karpathy's `dataset_flickr30k.json` / `dataset_coco.json` list `images[]` with `split` (train, val, test, and
restval for COCO), `filename`, COCO's `filepath` (val2014, train2014) and `sentences[].raw`. An image is at
`<root>/<filepath>/<filename>` (COCO) or `<root>/flickr30k-images/<filename>` (or directly in `<root>`, Flickr30k).
An image's first 5 captions are kept (a few COCO images have 6 or 7), so every image has the same number. The
`train` split is train + restval.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ...errors import DataError
from ..datasets import CaptionedImages
from . import reader
from .annotated import check_split, first_existing, inside

CAPTIONS_PER_IMAGE = 5
SPLITS = {"test": ("test",), "train": ("train", "restval")}


def read_karpathy(root: Path, split: str, dataset: str, file: str) -> CaptionedImages:
    check_split(dataset, split)
    table = first_existing([root / file, root / "annotations" / file, root / "karpathy" / file], dataset,
                           "Karpathy's split file")
    try:
        images: list[dict[str, Any]] = json.loads(table.read_text(encoding="utf-8"))["images"]
        rows = [(im.get("filepath", ""), im["filename"], [s["raw"].strip() for s in im["sentences"]])
                for im in images if im["split"] in SPLITS[split]]
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise DataError(f"{dataset}: {table} is not Karpathy's split JSON (images[] with split, filename and "
                        f"sentences[].raw): {type(e).__name__}: {e}") from None
    if not rows:
        raise DataError(f"{dataset}: {table} has no images in the {split} split")
    short = next((name for _, name, captions in rows if len(captions) < CAPTIONS_PER_IMAGE), None)
    if short is not None:
        raise DataError(f"{dataset}: {short} has fewer than {CAPTIONS_PER_IMAGE} captions in {table}")
    folder = inside(root, "flickr30k-images") if dataset == "flickr30k" else root
    paths = [folder / filepath / filename for filepath, filename, _ in rows]
    if not paths[0].is_file():
        raise FileNotFoundError(f"{dataset}: expected the image {paths[0]} (named in {table.name})")
    captions = [captions[:CAPTIONS_PER_IMAGE] for _, _, captions in rows]
    return CaptionedImages(paths, captions, transform=None, source=str(table))


@reader("flickr30k")
def read_flickr30k(root: Path, split: str) -> CaptionedImages:
    return read_karpathy(root, split, "flickr30k", "dataset_flickr30k.json")


@reader("mscoco")
def read_mscoco(root: Path, split: str) -> CaptionedImages:
    return read_karpathy(root, split, "mscoco", "dataset_coco.json")
