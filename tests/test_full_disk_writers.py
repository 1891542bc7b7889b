"""Every writer (checkpoints, logs, exports, caches, shards, embeddings, the index, reports) on a full disk: one
`DiskFullError` naming the directory and the space, the earlier file kept, no temporary left (simulated: each
writer's own way of failing; tests/test_files.py has the real small-tmpfs cases)."""

from __future__ import annotations

import builtins
import dataclasses
import errno
import io
import json
import os
import re
import sqlite3
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from clipworks import create_model, save_checkpoint
from clipworks.errors import DiskFullError
from clipworks.io.files import write_npz_atomic


# ---- every writer on a full disk: the simulation, then one case per writer ------------------------------------------
class _NoSpace:
    """A file opened for writing on a full disk: opening works, every write fails with ENOSPC."""

    def __init__(self, file: Any) -> None:
        self._file = file

    def write(self, data: Any) -> int:
        if len(data):
            raise OSError(errno.ENOSPC, "No space left on device")
        return 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._file, name)

    def __enter__(self) -> _NoSpace:
        return self

    def __exit__(self, *exc: object) -> None:
        self._file.close()


def _fill_disk_for(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Files whose name contains `name` (the file, its `.name.*` temporaries, its copy in a temporary directory)
    meet a full disk, each writer as it would: Python's (and numpy's, PIL's, tarfile's, torch.onnx's) file writes
    fail with ENOSPC, SQLite with "database or disk is full" as the file would grow, faiss with its RuntimeError."""
    import faiss

    real_open, real_connect, real_write_index = io.open, sqlite3.connect, faiss.write_index

    def hit(file: Any) -> bool:
        return isinstance(file, (str, os.PathLike)) and name in Path(file).name

    def open_(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        f = real_open(file, mode, *args, **kwargs)
        return _NoSpace(f) if hit(file) and set(mode) & set("wax+") else f

    def connect(database: Any, *args: Any, **kwargs: Any) -> sqlite3.Connection:
        db = real_connect(database, *args, **kwargs)
        if hit(database):
            pages = db.execute("PRAGMA page_count").fetchone()[0]
            db.execute(f"PRAGMA max_page_count = {max(pages, 1)}")
        return db

    def write_index(index: Any, path: str) -> None:
        if hit(path):
            raise RuntimeError("Error in void faiss::write_index(const Index*, IOWriter*, int) at index_write.cpp:499: "
                               f"Error: 'ret == (size * 4)' failed: write error in {path}: 0 != 4096 (No space left "
                               "on device)")
        real_write_index(index, path)

    for module, attribute, fake in ((builtins, "open", open_), (io, "open", open_), (tarfile, "bltn_open", open_),
                                    (sqlite3, "connect", connect), (faiss, "write_index", write_index)):
        monkeypatch.setattr(module, attribute, fake)


@dataclasses.dataclass(frozen=True)
class _Writer:
    """One writer's call, the file it writes (whose earlier version must survive) and what its error names."""

    call: Callable[[], object]
    dest: Path
    directory: Path  # the directory the error names
    what: str  # what the error says was being written
    needed: bool = True  # whether the error can say the space needed


def _checkpoint(d: Path, request: pytest.FixtureRequest) -> _Writer:
    model = create_model("RN-Tiny", seed=0)
    return _Writer(lambda: save_checkpoint(d / "ckpt", model, training_state={"step": 1}), d / "ckpt" / "config.json",
                   d, "ckpt")


def _log(d: Path, request: pytest.FixtureRequest) -> _Writer:
    from tqdm import tqdm

    from clipworks.training.loop import _Logbook

    logbook = _Logbook(d / "log.jsonl", True, tqdm(disable=True), None)
    return _Writer(lambda: logbook.data({"skipped": 0}, write=True), d / "log.jsonl", d, "log.jsonl")


def _tensorboard(d: Path, request: pytest.FixtureRequest) -> _Writer:
    from clipworks.training.loop import _Board

    board = _Board(d / "tensorboard")  # its first record written
    return _Writer(lambda: board.add({"train/loss": 1.0}, 1), board.file, d / "tensorboard", board.file.name)


def _hf(d: Path, request: pytest.FixtureRequest) -> _Writer:
    from clipworks.io.export import save_hf

    model = create_model("ViT-Tiny", seed=0)
    return _Writer(lambda: save_hf(model, d / "hf"), d / "hf" / "config.json", d, "hf")


def _onnx(d: Path, request: pytest.FixtureRequest) -> _Writer:
    from clipworks.io.export import export_onnx

    model = create_model("RN-Tiny", seed=0)
    return _Writer(lambda: export_onnx(model, d / "onnx"), d / "onnx" / "image.onnx", d, "onnx")


def _world(d: Path, request: pytest.FixtureRequest) -> _Writer:
    from clipworks.data.world import World, WorldConfig

    world = World(WorldConfig(seed=0))
    return _Writer(lambda: world.export("val", 4, d / "world"), d / "world" / "captions.csv", d,
                   "4 images and their CSVs", needed=False)


def _world_cache(d: Path, request: pytest.FixtureRequest) -> _Writer:
    return _Writer(lambda: write_npz_atomic(d / "world-val-4.npz", compressed=True, images=np.zeros((4, 8, 8, 3))),
                   d / "world-val-4.npz", d, "world-val-4.npz")


def _features(d: Path, request: pytest.FixtureRequest) -> _Writer:
    from clipworks.evaluation.features import FeatureCache

    return _Writer(lambda: FeatureCache(d).put("val", x=np.zeros((4, 8), np.float32)), d / "val.npz", d, "val.npz")


def _shards(d: Path, request: pytest.FixtureRequest) -> _Writer:
    from PIL import Image

    from clipworks.data.shard_files import write_shards

    samples = [(Image.new("RGB", (8, 8)), "a caption", {})] * 3
    return _Writer(lambda: write_shards(samples, d / "shards"), d / "shards" / "shard-00000.tar", d / "shards",
                   "the shards shard-*.tar", needed=False)


def _images(d: Path) -> Path:
    from clipworks.data.world import World, WorldConfig

    return World(WorldConfig(seed=0)).export("val", 4, d / "world")


def _embed(output: str) -> Callable[[Path, pytest.FixtureRequest], _Writer]:
    def writer(d: Path, request: pytest.FixtureRequest) -> _Writer:
        from clipworks.embedding import embed

        run, source = request.getfixturevalue("tiny_run"), _images(d) / "captions.csv"
        dest = d / "emb" / output
        if output.endswith(".npy"):  # an earlier shard of the same model, so the job is resumed
            dim = json.loads((run / "config.json").read_text())["model_config"]["embed_dim"]
            dest.parent.mkdir(parents=True)
            np.save(dest, np.zeros((1, dim), np.float16))
        return _Writer(lambda: embed(source, checkpoint=run, out=d / "emb", precision="fp32", progress=False), dest,
                       dest.parent, dest.name)

    return writer


def _store(d: Path, request: pytest.FixtureRequest) -> _Writer:
    from clipworks.search.store import Record, Store

    def record(path: str) -> Record:
        return Record(path, "src", "a caption", 1, 0, 8, 8, np.zeros(16, np.float32), bytes(20_000))

    Store(d / "index").put([record("old.png")])
    return _Writer(lambda: Store(d / "index").put([record("new.png")]), d / "index" / "items.sqlite", d / "index",
                   "items.sqlite")


def _faiss(d: Path, request: pytest.FixtureRequest) -> _Writer:
    from clipworks.search.index import Index

    run, images = request.getfixturevalue("tiny_run"), _images(d) / "images"
    return _Writer(lambda: Index.build(images, checkpoint=run, out=d / "index", precision="fp32", progress=False),
                   d / "index" / "index.faiss", d / "index", "index.faiss")


def _catalog(d: Path, request: pytest.FixtureRequest) -> _Writer:
    from test_from_embeddings import clustered, write_embeddings

    from clipworks.search.from_embeddings import build_from_embeddings

    source = write_embeddings(d / "emb", clustered(200, 8, seed=0), shards=2)
    return _Writer(lambda: build_from_embeddings(source, out=d / "index", max_memory=10**8, queries=20,
                                                 progress=False),
                   d / "index" / "metadata.sqlite", d / "index", "metadata.sqlite", needed=False)


def _results(d: Path, request: pytest.FixtureRequest) -> _Writer:
    from clipworks.evaluation.results import write_results

    return _Writer(lambda: write_results(d, "zeroshot", {"top1": 0.5}, "| top1 |"), d / "zeroshot.json", d,
                   "zeroshot.json")


def _figure(d: Path, request: pytest.FixtureRequest) -> _Writer:
    from matplotlib.figure import Figure

    from clipworks.evaluation.report import _write_png

    return _Writer(lambda: _write_png(Figure(figsize=(2, 2)), d / "fewshot.png"), d / "fewshot.png", d,
                   "fewshot.png")


WRITERS = {"checkpoint": _checkpoint, "log.jsonl": _log, "tensorboard": _tensorboard, "hf export": _hf,
           "onnx export": _onnx, "world export": _world, "world cache": _world_cache, "feature cache": _features,
           "shards": _shards, "embed npy": _embed("img_emb/img_emb_00000.npy"),
           "embed parquet": _embed("metadata/metadata_00000.parquet"), "index store": _store, "index faiss": _faiss,
           "index catalog": _catalog, "eval results": _results, "report figure": _figure}


@pytest.mark.parametrize("name", WRITERS)
def test_every_writer_on_a_full_disk_is_one_error_leaving_no_temporary_and_the_earlier_file(
        name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> None:
    writer = WRITERS[name](tmp_path, request)
    if not writer.dest.exists():
        writer.dest.parent.mkdir(parents=True, exist_ok=True)
        writer.dest.write_bytes(b"earlier")
    before = writer.dest.read_bytes()
    with monkeypatch.context() as patch:
        _fill_disk_for(writer.dest.name, patch)
        with pytest.raises(DiskFullError) as error:
            writer.call()
    size = r"[\d,.]+ (MB|kB|bytes)"
    need = rf"about {size} needed for" if writer.needed else "not enough for"
    assert re.fullmatch(rf"no space left on the device of {re.escape(str(writer.directory))}: {size} free, {need} "
                        rf"{re.escape(writer.what)}; free some space or write somewhere else \(nothing was replaced\)",
                        str(error.value)), str(error.value)
    assert writer.dest.read_bytes() == before
    assert [p for p in tmp_path.rglob("*") if p.name.startswith(".") or p.name.endswith("-journal")] == []
