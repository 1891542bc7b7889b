"""Datasets on small files written here: CSV/TSV parsing, path resolution, bad images, folders, the world."""

from __future__ import annotations

import io
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from benchmark_formats import write_text
from PIL import Image
from torch.utils.data import DataLoader

from clipworks.data import shards
from clipworks.data.batches import loader_batches
from clipworks.data.datasets import (
    CsvDataset,
    ImageFolderDataset,
    LabelCsvDataset,
    LabelledImages,
    WorldDataset,
    collate_skip_bad,
)
from clipworks.data.shards import shard_batches
from clipworks.data.world import World, WorldConfig
from clipworks.distributed import Process, exit_with_parent
from clipworks.errors import DataError
from clipworks.evaluation.evaluators import evaluate_zeroshot
from clipworks.models.transforms import image_transform, to_tensor_batch

T = image_transform(32)


def _image(path: Path, colour=(200, 30, 30), mode: str = "RGB", size=(40, 36)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.new("RGB", size, colour)
    image = image.convert(mode) if mode != "RGB" else image
    image.save(path)
    return path


def _truncated_jpeg(path: Path) -> Path:
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noise).save(buffer, "JPEG")
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    return path


def _mixed_set(tmp_path: Path, n_good: int) -> Path:
    """A CSV of `n_good` readable images and three bad entries: truncated JPEG, text named .png, missing file."""
    rows = []
    for i in range(n_good):
        _image(tmp_path / "img" / f"good{i}.png", colour=(10 * i, 100, 50))
        rows.append(f"img/good{i}.png,good {i}")
    _truncated_jpeg(tmp_path / "img" / "truncated.jpg")
    write_text(tmp_path / "img" / "text.png", "this is not a png")
    rows += ["img/truncated.jpg,bad one", "img/text.png,bad two", "img/missing.png,bad three"]
    return write_text(tmp_path / "set.csv", "filepath,caption\n" + "\n".join(rows) + "\n")


def test_bad_images_are_skipped_and_counted(tmp_path: Path) -> None:
    ds = CsvDataset(_mixed_set(tmp_path, n_good=3), transform=T)
    batches = list(DataLoader(ds, batch_size=4, collate_fn=collate_skip_bad))
    assert batches[1] is None  # rows 4-5 are both bad: a loop skips such a batch
    batches = batches[:1]
    images = torch.cat([b[0] for b in batches])
    captions = [c for b in batches for c in b[1]]
    assert images.shape == (3, 3, 32, 32)
    assert captions == ["good 0", "good 1", "good 2"]
    assert ds.n_bad == 3
    assert {p.name for p, _ in ds.bad} == {"truncated.jpg", "text.png", "missing.png"}


def test_scan_reports_and_drops_bad_images(tmp_path: Path) -> None:
    ds = CsvDataset(_mixed_set(tmp_path, n_good=3), transform=T)
    bad = ds.scan()
    assert sorted(p.name for p in bad) == ["missing.png", "text.png", "truncated.jpg"]  # verify() alone misses one
    assert len(ds) == 3 and ds.captions == ["good 0", "good 1", "good 2"]
    assert all(ds[i] is not None for i in range(len(ds)))


def test_scan_decodes_in_threads_a_block_at_a_time_keeping_the_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                      capsys: pytest.CaptureFixture) -> None:
    """Several threads decode at once; the bad paths come back, and the good rows stay, in the dataset's order,
    across blocks; `progress` shows a bar naming the data."""
    from clipworks.data import datasets

    monkeypatch.setattr(datasets, "_SCAN_BLOCK", 2)
    ds = CsvDataset(_mixed_set(tmp_path, n_good=5), transform=T)
    problem, threads = ds._problem, set()

    def slow_problem(path: Path) -> str | None:
        threads.add(threading.get_ident())
        time.sleep(0.05)  # long enough that a block's images overlap in time
        return problem(path)

    monkeypatch.setattr(ds, "_problem", slow_problem)
    bad = ds.scan(threads=2, progress=True)
    assert [p.name for p in bad] == ["truncated.jpg", "text.png", "missing.png"]
    assert ds.captions == [f"good {i}" for i in range(5)] and len(threads) == 2
    assert f"checking {tmp_path / 'set.csv'}" in capsys.readouterr().err


def test_mostly_bad_stops_with_error_naming_files(tmp_path: Path) -> None:
    csv_path = _mixed_set(tmp_path, n_good=1)
    with pytest.raises(DataError, match=r"3 of 4 images .* could not be read.*truncated\.jpg.*text\.png.*missing"):
        CsvDataset(csv_path, transform=T).scan()
    with pytest.raises(DataError, match="Check that the paths are right"):
        list(DataLoader(CsvDataset(csv_path, transform=T), batch_size=2, collate_fn=collate_skip_bad))


def test_all_bad_batch_collates_to_none() -> None:
    assert collate_skip_bad([None, None]) is None


def test_missing_column_lists_columns_and_flags(tmp_path: Path) -> None:
    path = write_text(tmp_path / "x.csv", "path,text\na.png,hello\n")
    message = r"no column 'filepath' \(columns found: path, text.*--image-key/--caption-key"
    with pytest.raises(ValueError, match=message):
        CsvDataset(path, transform=T)
    _image(tmp_path / "a.png")
    assert CsvDataset(path, transform=T, image_key="path", caption_key="text")[0][1] == "hello"


def test_missing_and_empty_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        CsvDataset(tmp_path / "nope.csv", transform=T)
    with pytest.raises(DataError, match="is empty"):
        CsvDataset(write_text(tmp_path / "empty.csv", "\n"), transform=T)
    with pytest.raises(DataError, match="no rows"):
        CsvDataset(write_text(tmp_path / "header.csv", "filepath,caption\n"), transform=T)


def test_paths_resolve_against_csv_folder_root_or_absolute(tmp_path: Path) -> None:
    red = _image(tmp_path / "data" / "pics" / "red.png", colour=(255, 0, 0))
    blue = _image(tmp_path / "elsewhere" / "pics" / "red.png", colour=(0, 0, 255))
    absolute = _image(tmp_path / "abs.png", colour=(0, 255, 0))
    path = write_text(tmp_path / "data" / "set.csv", f"filepath,caption\npics/red.png,a\n{absolute},b\n")
    ds = CsvDataset(path, transform=T)
    assert ds.paths == [red, absolute]
    assert CsvDataset(path, transform=T, root=tmp_path / "elsewhere").paths == [blue, absolute]
    assert torch.equal(ds[0][0], T(Image.open(red)))


def test_separator_from_suffix_or_sniffed_and_quoted_commas(tmp_path: Path) -> None:
    _image(tmp_path / "a.png")
    tsv = CsvDataset(write_text(tmp_path / "s.tsv", "filepath\tcaption\na.png\ta red, round thing\n"), transform=T)
    assert tsv.captions == ["a red, round thing"]
    sniffed = CsvDataset(write_text(tmp_path / "s.txt", "filepath\tcaption\na.png\tx, y\n"), transform=T)
    assert sniffed.captions == ["x, y"]
    quoted = CsvDataset(write_text(tmp_path / "q.csv", 'filepath,caption\na.png,"one, two"\n'), transform=T)
    assert quoted.captions == ["one, two"]


def test_dataset_keeps_openai_order_for_rgba(tmp_path: Path) -> None:
    rgba = Image.fromarray(np.random.default_rng(2).integers(0, 256, (50, 70, 4), dtype=np.uint8), "RGBA")
    rgba.save(tmp_path / "a.png")
    ds = CsvDataset(write_text(tmp_path / "s.csv", "filepath,caption\na.png,x\n"), transform=T)
    assert torch.equal(ds[0][0], T(Image.open(tmp_path / "a.png")))  # resized as RGBA, converted after the crop


def test_tokenize_fn_gives_stacked_ids(tmp_path: Path) -> None:
    _image(tmp_path / "a.png")
    _image(tmp_path / "b.png")

    def tokenize(texts: list[str]) -> torch.Tensor:
        return torch.tensor([[len(t), 0, 0] for t in texts])

    ds = CsvDataset(write_text(tmp_path / "s.csv", "filepath,caption\na.png,hi\nb.png,hello\n"), transform=T,
                    tokenize_fn=tokenize)
    images, ids = collate_skip_bad([ds[0], ds[1]])
    assert images.shape == (2, 3, 32, 32) and ids.tolist() == [[2, 0, 0], [5, 0, 0]]


def test_image_folder_sorts_classes_and_skips_other_files(tmp_path: Path) -> None:
    for name in ("dog", "cat", "bird"):
        _image(tmp_path / name / "1.png")
    _image(tmp_path / "cat" / "nested" / "2.jpg")
    write_text(tmp_path / "cat" / "notes.txt", "not an image")
    ds = ImageFolderDataset(tmp_path, T)
    assert ds.classes == ["bird", "cat", "dog"]
    assert [(p.relative_to(tmp_path).as_posix(), label) for p, label in zip(ds.paths, ds.labels)] == [
        ("bird/1.png", 0), ("cat/1.png", 1), ("cat/nested/2.jpg", 1), ("dog/1.png", 2)]
    assert ds.n_skipped == 1
    images, labels = collate_skip_bad([ds[i] for i in range(len(ds))])
    assert images.shape == (4, 3, 32, 32) and labels.tolist() == [0, 1, 1, 2]


def test_image_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        ImageFolderDataset(tmp_path / "missing", T)
    (tmp_path / "flat").mkdir()
    _image(tmp_path / "flat" / "1.png")
    with pytest.raises(DataError, match="one folder per class"):
        ImageFolderDataset(tmp_path / "flat", T)
    write_text(tmp_path / "only_text" / "cat" / "readme.md", "#")
    with pytest.raises(DataError, match=r"no images .*1 other files skipped"):
        ImageFolderDataset(tmp_path / "only_text", T)


def test_label_csv(tmp_path: Path) -> None:
    for name in ("x", "y", "z"):
        _image(tmp_path / f"{name}.png")
    path = write_text(tmp_path / "labels.csv", "filepath,label\nx.png,star\ny.png,circle\nz.png,star\n")
    ds = LabelCsvDataset(path, transform=T)
    assert ds.classes == ["circle", "star"] and ds.labels == [1, 0, 1]
    assert LabelCsvDataset(path, transform=T, classes=["star", "circle", "heart"]).labels == [0, 1, 0]
    with pytest.raises(DataError, match=rf"^{re.escape(str(path))}, line 3: label 'circle' is not among the given "
                                        r"classes \(1 rows have such labels: circle\); add them to the class names, "
                                        r"or correct the rows$"):
        LabelCsvDataset(path, transform=T, classes=["star"])
    with pytest.raises(DataError, match=r"labels.csv, line 2: label 'star' is not among the given classes \(3 rows "
                                        r"have such labels: circle, star\)"):
        LabelCsvDataset(path, transform=T, classes=["heart"])


def test_world_dataset_matches_batch_path() -> None:
    world = World()

    def tokenize(texts: list[str]) -> torch.Tensor:
        return torch.tensor([[len(t)] for t in texts])

    ds = WorldDataset.from_world(world, "val", 6, tokenize)
    images, _, _ = world.arrays("val", 6)
    batch_images, batch_tokens = ds.batch([4, 1])
    assert torch.equal(batch_images, to_tensor_batch(images[[4, 1]]))
    assert torch.equal(ds[4][0], batch_images[0]) and torch.equal(ds[1][1], batch_tokens[1])
    assert batch_tokens[:, 0].tolist() == [len(ds.captions[4]), len(ds.captions[1])]
    with pytest.raises(ValueError, match="pair up"):
        WorldDataset(images, torch.zeros(5, 3))


def test_dataloader_workers_end_with_a_killed_run(tmp_path: Path) -> None:
    # A run killed with -9 cannot stop its workers; the kernel does (PR_SET_PDEATHSIG), instead of the workers
    # noticing only at their next poll for the parent.
    out = World(WorldConfig()).export("train", 16, tmp_path / "set")
    script = (
        "import sys, time\n"
        "from clipworks.data.batches import loader_batches\n"
        "from clipworks.data.datasets import CsvDataset\n"
        "from clipworks.distributed import Process\n"
        "from clipworks.models.transforms import image_transform\n"
        f"data = CsvDataset({str(out / 'captions.csv')!r}, transform=image_transform(64))\n"
        "batches = loader_batches(data, 4, workers=2, seed=0)(0, Process())\n"
        "next(batches)\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n")
    main = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert main.stdout.readline().strip() == "ready"
        children = [int(p) for p in Path(f"/proc/{main.pid}/task/{main.pid}/children").read_text().split()]
        assert len(children) >= 2  # the two workers
        main.send_signal(signal.SIGKILL)
        main.wait()
        deadline = time.monotonic() + 2.0  # a bound against lingering, far below the workers' own poll interval
        while time.monotonic() < deadline and any(_running(c) for c in children):
            time.sleep(0.05)
        assert [c for c in children if _running(c)] == []
    finally:
        main.kill()


def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has ended
    except (FileNotFoundError, ProcessLookupError):
        return False


def test_every_dataloader_a_training_run_starts_ends_its_workers_with_it(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    # The test above kills a run holding a CSV loader's workers; every loader a training run starts must give its
    # workers the same end. Building each with workers shows how it would start them; nothing is read.
    built: list[dict[str, object]] = []

    class Built(Exception):
        pass

    def record(*args: object, **kwargs: object) -> None:
        built.append(kwargs)
        raise Built

    monkeypatch.setattr(torch.utils.data, "DataLoader", record)
    monkeypatch.setattr(shards, "DataLoader", record)
    csv = CsvDataset(write_text(tmp_path / "c.csv", "filepath,caption\na.png,x\nb.png,y\n"), transform=T)
    zeroshot = evaluate_zeroshot(LabelledImages([tmp_path / "a.png"], [0], ["a"], transform=T, source="x"), ["a"],
                                 ["a photo of a {}."], batch_size=2, workers=1)
    starts = {"zero-shot evaluation": lambda: zeroshot(None),
              "CSV batches": lambda: next(loader_batches(csv, 2, workers=1, seed=0)(0, Process())),
              "shard batches": lambda: shard_batches(str(tmp_path / "s.tar"), transform=T, tokenize_fn=lambda c: c,
                                                     batch_size=2, workers=1, seed=0)(0, Process())}
    for name, start in starts.items():
        with pytest.raises(Built):
            start()
        assert (built[-1]["num_workers"], built[-1].get("worker_init_fn")) == (1, exit_with_parent), name
