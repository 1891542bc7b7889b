"""Embedding a collection at scale: images (and captions) of a folder, a CSV/TSV or webdataset tars, written as
clip-retrieval's layout (rom1504/clip-retrieval `clip inference`), which its tools and autofaiss read:

    DIR/img_emb/img_emb_NNNNN.npy     (rows, E) L2-normalised image embeddings, fp16 (default) or fp32
    DIR/text_emb/text_emb_NNNNN.npy   (rows, E) caption embeddings, with `text=True`
    DIR/metadata/metadata_NNNNN.parquet  one row per embedding row: image_path (or key), caption, width, height, row
    DIR/summary.json                  rows, shards, damaged images, images/s, model, precision

Row i of shard N's three files is the same image. The input is listed in a fixed order and cut into output shards
of `shard_size` rows (a tar is one output shard: its samples are only known by reading it); process r of W embeds
shards r, r+W, ... (torchrun or SLURM through `distributed.py`, as training). Every file is written atomically and
the metadata last, so a shard whose metadata exists is complete: a rerun skips it. A damaged image is left out of
the embeddings, and listed with its row and reason in the summary and in its shard's parquet key-value metadata
(`clipworks.damaged`); `row` (the input position; within the tar for tar sources) shows the gap.

Deliberate difference from clip-retrieval: no pyspark; the engine that trains (torchrun/SLURM) embeds.
"""

from __future__ import annotations

import datetime
import json
import sys
import tarfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .data.datasets import IMAGE_EXTENSIONS, resolve_path
from .data.images import UnreadableImage, open_image
from .data.shard_files import IMAGE_SUFFIXES, expand_urls, is_shard_spec, tar_samples
from .data.tables import read_table
from .distributed import exit_with_parent, gather_objects, init_process, shutdown
from .errors import ConfigError, DataError
from .hardware import resolve_precision
from .io.checkpoints import load_for_inference
from .io.files import nbytes, write_atomic, write_made_in_memory, write_text_atomic
from .models.clip import CLIP
from .models.configs import registry_name
from .models.encode import embed_images, encode_texts

EXTRA = "pip install 'clipworks[embed]'"
DTYPES = {"fp16": np.float16, "fp32": np.float32}
PLAN = "embed.json"
SUMMARY = "summary.json"


@dataclass(frozen=True)
class Row:
    """One input image: where its bytes are, what to call it, its caption and its place in the input."""

    name: str  # the image's path, or `tar#key` for a tar sample
    caption: str
    row: int  # position in the input (for a tar: in that tar)
    data: Path | bytes  # the file, or the encoded bytes read from a tar


@dataclass(frozen=True)
class Shard:
    """An output shard: consecutive rows of a listed source, or one whole tar."""

    number: int
    rows: list[Row] | None = None  # None: read from `tar` when embedded
    tar: str | None = None

    def read(self) -> tuple[list[Row], list[dict[str, Any]]]:
        """(rows, damage): a tar that breaks off keeps the samples before the break and lists the break."""
        if self.rows is not None:
            return self.rows, []
        rows: list[Row] = []
        try:
            for key, files in tar_samples(self.tar):
                image = next((files[s] for s in IMAGE_SUFFIXES if s in files), b"")  # none: listed as damaged
                caption = files.get("txt", b"").decode("utf-8", "replace").strip()
                rows.append(Row(f"{self.tar}#{key}", caption, len(rows), image))
        except (tarfile.TarError, EOFError, OSError) as e:
            return rows, [{"row": len(rows), "image": self.tar,
                           "reason": f"tar unreadable from here on ({type(e).__name__}: {e})"}]
        return rows, []

    @property
    def size(self) -> int | None:
        """Rows, if known before reading."""
        return None if self.rows is None else len(self.rows)


def plan_shards(source: str | Path, *, shard_size: int, image_key: str = "filepath",
                caption_key: str = "caption") -> tuple[list[Shard], str]:
    """The output shards of `source` and how its rows are named ("image_path" for files, "key" for tar samples)."""
    if shard_size < 1:
        raise ConfigError(f"--shard-size must be at least 1, got {shard_size}")
    text = str(source)
    if is_shard_spec(text):
        for url in (urls := expand_urls(text)):
            if not Path(url).is_file():
                raise FileNotFoundError(f"shard {url} does not exist")
        return [Shard(n, tar=url) for n, url in enumerate(urls)], "key"
    path = Path(source).expanduser()
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()
                       and not any(part.startswith(".") for part in p.relative_to(path).parts))
        if not files:
            raise DataError(f"no images under {path}; image files end in {', '.join(sorted(IMAGE_EXTENSIONS))}")
        rows = [Row(str(p), "", i, p) for i, p in enumerate(files)]
    elif path.is_file():
        table = read_table(path, columns=(image_key, caption_key), flags="--image-key/--caption-key")
        rows = [Row(str(file), r[caption_key], i, file)
                for i, r in enumerate(table) for file in [resolve_path(r[image_key], path.parent)]]
        first = rows[:32]  # missing images are listed as damaged, but none of the first means wrong paths
        if not any(Path(r.data).is_file() for r in first):
            raise DataError(f"none of the first {len(first)} image paths in {path} exists (e.g. {first[0].name}); "
                            "relative paths are resolved against the CSV's folder")
    else:
        raise FileNotFoundError(f"{source} does not exist (expected an image folder, a CSV/TSV of {image_key},"
                                f"{caption_key}, or tar shards such as data/{{00000..00009}}.tar)")
    return [Shard(n, rows=rows[i:i + shard_size]) for n, i in enumerate(range(0, len(rows), shard_size))], \
        "image_path"


class _Decoded(torch.utils.data.Dataset):
    """(position, pixels, width, height) per row, or (position, reason) for a damaged image."""

    def __init__(self, rows: list[Row], transform: Callable) -> None:
        self.rows, self.transform = rows, transform

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> tuple:
        row = self.rows[i]
        try:
            image = open_image(row.data, name=row.name)
            return i, self.transform(image), image.width, image.height
        except UnreadableImage as e:
            return i, e.reason
        except Exception as e:  # a decoded image the transform cannot take
            return i, f"{type(e).__name__}: {e}"


def _keep_list(batch: list) -> list:
    return batch


@dataclass
class ShardResult:
    number: int
    rows: int  # embedded
    damaged: list[dict[str, Any]] = field(default_factory=list)  # {"row", "image", "reason"}


def embed_shard(model: CLIP, transform: Callable, shard: Shard, out: Path, *, key: str, text: bool, dtype: str,
                batch_size: int, workers: int, on_batch: Callable[[int, int], None] | None = None) -> ShardResult:
    """Embed one shard and write its files, the metadata last (what marks the shard done). `on_batch(rows,
    damaged)` is called after each batch with its counts (for progress)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows, damaged = shard.read()
    loader = torch.utils.data.DataLoader(_Decoded(rows, transform), batch_size=batch_size, num_workers=workers,
                                         collate_fn=_keep_list, worker_init_fn=exit_with_parent)

    def readable() -> Iterator[tuple[torch.Tensor, list[tuple[int, int, int]]] | None]:
        """(pixels, (position, width, height) of each) per batch; the pixels are not kept past their batch."""
        for batch in loader:
            bad = [{"row": rows[b[0]].row, "image": rows[b[0]].name, "reason": b[1]} for b in batch if len(b) == 2]
            damaged.extend(bad)
            good = [b for b in batch if len(b) == 4]
            if on_batch is not None:
                on_batch(len(good), len(bad))
            yield (torch.stack([b[1] for b in good]), [(b[0], b[2], b[3]) for b in good]) if good else None

    vectors, kept = [torch.zeros(0, model.config.embed_dim)], []
    for embedded, good in embed_images(model, readable()):
        vectors.append(embedded)
        kept.extend(good)
    images = torch.cat(vectors).numpy().astype(DTYPES[dtype])
    name = f"{shard.number:05d}"
    _save_npy(out / "img_emb" / f"img_emb_{name}.npy", images)
    if text:
        captions = encode_texts(model, [rows[b[0]].caption for b in kept]).numpy().astype(DTYPES[dtype])
        _save_npy(out / "text_emb" / f"text_emb_{name}.npy", captions)
    table = pa.table({key: [rows[b[0]].name for b in kept], "caption": [rows[b[0]].caption for b in kept],
                      "width": pa.array([b[1] for b in kept], pa.int32()),
                      "height": pa.array([b[2] for b in kept], pa.int32()),
                      "row": pa.array([rows[b[0]].row for b in kept], pa.int64())})
    table = table.replace_schema_metadata({"clipworks.damaged": json.dumps(damaged)})
    write_made_in_memory(out / "metadata" / f"metadata_{name}.parquet", lambda f: pq.write_table(table, f))
    return ShardResult(shard.number, len(kept), damaged)


def _save_npy(path: Path, array: np.ndarray) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:  # a file object: given a name, numpy would append ".npy" to the temporary's
            np.save(f, array)

    write_atomic(path, write, needed=nbytes(array))


def _files(out: Path, number: int) -> list[Path]:
    """Shard `number`'s files, the one that marks it done last."""
    name = f"{number:05d}"
    return [out / "img_emb" / f"img_emb_{name}.npy", out / "text_emb" / f"text_emb_{name}.npy",
            out / "metadata" / f"metadata_{name}.parquet"]


def _is_done(out: Path, number: int, *, text: bool) -> bool:
    return all(f.is_file() for f in _files(out, number) if text or f.parent.name != "text_emb")


def _remove_temporaries(out: Path, number: int) -> None:
    """What a process killed while writing shard `number` left (write_atomic's `.name.XXXX` siblings). Each process
    removes only its own shards' temporaries: another process may be writing its own right now."""
    for file in _files(out, number):
        for stale in file.parent.glob(f".{file.name}.*"):
            stale.unlink(missing_ok=True)


def _check_existing(out: Path, plan: dict[str, Any]) -> None:
    """Refuse an --out that holds another job's shards: other dimensions, or another source or sharding."""
    for folder in ("img_emb", "text_emb"):
        for file in sorted((out / folder).glob(f"{folder}_*.npy"))[:1]:
            dim = np.load(file, mmap_mode="r").shape[1]
            if dim != plan["embed_dim"]:
                raise ConfigError(f"{out} holds {dim}-dimensional embeddings ({file.name}) but {plan['checkpoint']} "
                                  f"gives {plan['embed_dim']}: shards of two models cannot be mixed; use another "
                                  "--out")
    previous = out / PLAN
    if previous.is_file():
        old = json.loads(previous.read_text())
        keys = ("source", "checkpoint", "shards", "shard_size", "text", "dtype", "embed_dim")
        changed = [k for k in keys if old.get(k) != plan[k]]
        if changed:
            there = ", ".join(f"{k} {old.get(k)!r}" for k in changed)
            raise ConfigError(f"{out} holds another embedding job's shards ({there} there, "
                              f"{', '.join(repr(plan[k]) for k in changed)} now); rerun with its settings to resume "
                              "it, or use another --out")


class Progress:
    """One line per process on stderr every `every` seconds and after each shard: shards, images, images/s, ETA
    (from rows when the shards' sizes are known, else from shards) and damaged images."""

    def __init__(self, rank: int, shards: list[Shard], *, enabled: bool, every: float = 10.0) -> None:
        self.rank, self.n_shards, self.enabled, self.every = rank, len(shards), enabled, every
        sizes = [s.size for s in shards]
        self.total_rows = None if None in sizes else sum(sizes)
        self.start = self.last = time.perf_counter()
        self.shards = self.rows = self.damaged = 0  # of finished shards
        self.current = [0, 0]  # rows and damaged images of the shard being embedded

    def batch(self, rows: int, damaged: int) -> None:
        self.current = [self.current[0] + rows, self.current[1] + damaged]
        if time.perf_counter() - self.last >= self.every:
            self.print()

    def shard(self, result: ShardResult) -> None:
        self.shards, self.rows, self.damaged = self.shards + 1, self.rows + result.rows, self.damaged + len(
            result.damaged)
        self.current = [0, 0]
        self.print()

    def print(self) -> None:
        self.last = time.perf_counter()
        seconds = self.last - self.start
        if not self.enabled:
            return
        rows, damaged = self.rows + self.current[0], self.damaged + self.current[1]
        seen = rows + damaged
        if self.total_rows is not None:
            eta = (self.total_rows - seen) * seconds / seen if seen else 0.0
        else:
            eta = (self.n_shards - self.shards) * seconds / self.shards if self.shards else 0.0
        print(f"embed rank {self.rank}: {self.shards}/{self.n_shards} shards, {rows} images, "
              f"{rows / seconds if seconds > 0 else 0.0:.1f} img/s, ETA {datetime.timedelta(seconds=round(eta))}, "
              f"{damaged} damaged", file=sys.stderr, flush=True)


def embed(source: str | Path, *, checkpoint: str | Path, out: str | Path, text: bool = False, dtype: str = "fp16",
          shard_size: int = 10_000, batch_size: int = 64, workers: int = 0, precision: str = "auto",
          device: str = "cpu", image_key: str = "filepath", caption_key: str = "caption",
          progress: bool = True) -> dict[str, Any] | None:
    """Embed `source` (image folder, CSV/TSV of image paths and captions, or tars `data/{00000..00009}.tar`) with
    `checkpoint` into `out` in clip-retrieval's layout; returns the summary, also written to out/summary.json (on
    the main process; the others return None).

    Under torchrun or SLURM each process takes every W-th shard. Resumable: shards already written are skipped.
    """
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        raise ConfigError(f"clipworks embed writes parquet metadata with pyarrow, which is not installed: {EXTRA}"
                          ) from None
    if dtype not in DTYPES:
        raise ConfigError(f"--dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    out = Path(out)
    shards, key = plan_shards(source, shard_size=shard_size, image_key=image_key, caption_key=caption_key)
    chosen = resolve_precision(precision, device)
    process = init_process(device)
    if device.startswith("cuda"):
        device = f"cuda:{process.local_rank}"  # one device per process
    try:
        model, transform = load_for_inference(checkpoint, device=device, dtype=chosen.name)
        plan = {"source": _absolute(source), "checkpoint": _absolute(checkpoint), "shards": len(shards),
                "shard_size": shard_size, "text": text, "dtype": dtype, "embed_dim": model.config.embed_dim}
        _check_existing(out, plan)
        for folder in ("img_emb", "metadata") + (("text_emb",) if text else ()):
            (out / folder).mkdir(parents=True, exist_ok=True)
        if process.is_main:
            write_text_atomic(out / PLAN, json.dumps(plan, indent=2))
        mine = [s for s in shards[process.rank::process.world_size] if not _is_done(out, s.number, text=text)]
        progress_line = Progress(process.rank, mine, enabled=progress)
        for shard in mine:
            _remove_temporaries(out, shard.number)
            result = embed_shard(model, transform, shard, out, key=key, text=text, dtype=dtype,
                                 batch_size=batch_size, workers=workers, on_batch=progress_line.batch)
            progress_line.shard(result)
        embedded, seconds = progress_line.rows, time.perf_counter() - progress_line.start
        rates = gather_objects((embedded, seconds), process)  # also waits for every process to finish its shards
        if not process.is_main:
            return None
        summary = _summary(out, len(shards), plan, chosen.name, model, rates)
        write_text_atomic(out / SUMMARY, json.dumps(summary, indent=2))
        return summary
    finally:
        shutdown(process)


def _absolute(name: str | Path) -> str:
    """A path resolved (the same job from another working directory); a pretrained name or tar pattern as given."""
    return str(Path(name).resolve()) if Path(name).exists() else str(name)


def _summary(out: Path, n_shards: int, plan: dict[str, Any], precision: str, model: CLIP,
             rates: list[tuple[int, float]]) -> dict[str, Any]:
    """What is on disk (this run's shards and earlier runs'), with this run's speed."""
    import pyarrow.parquet as pq

    rows, damaged = 0, []
    for n in range(n_shards):
        meta = pq.read_metadata(out / "metadata" / f"metadata_{n:05d}.parquet")
        rows += meta.num_rows
        damaged += json.loads((meta.metadata or {}).get(b"clipworks.damaged", b"[]"))
    per_process = [n / s if s > 0 else 0.0 for n, s in rates]
    return {"rows": rows, "shards": n_shards, "damaged": damaged, "n_damaged": len(damaged),
            "images_per_s": sum(per_process), "images_per_s_per_process": per_process,
            "embedded_this_run": sum(n for n, _ in rates), "processes": len(rates),
            "model": registry_name(model.config) or "custom", "checkpoint": plan["checkpoint"],
            "embed_dim": plan["embed_dim"], "precision": precision, "dtype": plan["dtype"], "text": plan["text"]}
