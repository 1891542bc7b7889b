"""Tar shards: brace patterns, world samples round-tripped through shards, rank/worker splitting, resampling,
damaged shards skipped and counted, and `clipworks shards` then `clipworks train --data PATTERN` end to end."""

from __future__ import annotations

import io
import itertools
import json
import logging
import tarfile
from collections import Counter
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from torch.utils.data import DataLoader

from clipworks import cli
from clipworks.data import shards
from clipworks.data.shard_files import expand_urls, is_shard_spec, shard_pattern, write_shards
from clipworks.data.shards import ShardDataset, shard_batches
from clipworks.data.world import World, WorldConfig
from clipworks.distributed import Process
from clipworks.errors import DataError
from clipworks.models.transforms import image_transform

T = image_transform(32)
WORLD = World(WorldConfig())


@pytest.mark.parametrize("spec, expected", [
    ("d/{00000..00003}.tar", ["d/00000.tar", "d/00001.tar", "d/00002.tar", "d/00003.tar"]),
    ("{8..11}.tar", ["8.tar", "9.tar", "10.tar", "11.tar"]),
    ("{08..11}.tar", ["08.tar", "09.tar", "10.tar", "11.tar"]),
    ("{a,b}-{0..1}.tar", ["a-0.tar", "a-1.tar", "b-0.tar", "b-1.tar"]),
    ("x.tar::y/{0..1}.tar", ["x.tar", "y/0.tar", "y/1.tar"]),
    ("plain.tar", ["plain.tar"]),
])
def test_expand_urls(spec: str, expected: list[str]) -> None:
    assert expand_urls(spec) == expected


@pytest.mark.parametrize("spec", ["d/{00000}.tar", "d/{0..1.tar", "::"])
def test_expand_urls_rejects_malformed_patterns(spec: str) -> None:
    with pytest.raises(ValueError):
        expand_urls(spec)


def test_is_shard_spec() -> None:
    assert is_shard_spec("a.tar") and is_shard_spec("d/{0..3}.tar") and is_shard_spec("a.tar::b.tar")
    assert is_shard_spec("a.tar.gz") and is_shard_spec("d/{0..3}.tgz")
    assert not is_shard_spec("captions.csv") and not is_shard_spec("world")


def _world_shards(out: Path, n: int, per_shard: int) -> list[Path]:
    return write_shards(((s.image, s.caption, {"index": i}) for i in range(n) for s in [WORLD.sample("train", i)]),
                        out, samples_per_shard=per_shard)


def _captions(dataset: ShardDataset, workers: int = 0) -> list[str]:
    if workers == 0:
        return [caption for _, caption in dataset]
    loader = DataLoader(dataset, batch_size=None, num_workers=workers)
    return [caption for _, caption in loader]


def test_world_samples_round_trip_through_shards(tmp_path: Path) -> None:
    paths = _world_shards(tmp_path, 10, per_shard=4)
    assert [p.name for p in paths] == ["shard-00000.tar", "shard-00001.tar", "shard-00002.tar"]
    assert shard_pattern(paths) == f"{tmp_path}/shard-{{00000..00002}}.tar"
    assert sorted(p.name for p in tmp_path.iterdir()) == [p.name for p in paths]  # no temporary files left
    with tarfile.open(paths[0]) as tar:
        assert tar.getnames()[:3] == ["000000000.png", "000000000.txt", "000000000.json"]
        meta = json.loads(tar.extractfile("000000001.json").read())
    assert meta == {"key": "000000001", "caption": WORLD.sample("train", 1).caption, "index": 1}
    dataset = ShardDataset(shard_pattern(paths), transform=T, shuffle_shards=False, shuffle_buffer=0)
    items = list(dataset)
    assert len(items) == 10 and dataset.n_bad == 0
    for i, (image, caption) in enumerate(items):
        sample = WORLD.sample("train", i)
        assert caption == sample.caption
        assert torch.equal(image, T(sample.image))  # PNG is lossless: the same pixels as the rendered image


def test_shuffling_changes_order_per_epoch_but_not_the_set(tmp_path: Path) -> None:
    paths = _world_shards(tmp_path, 12, per_shard=2)
    dataset = ShardDataset([str(p) for p in paths], transform=T, seed=3, shuffle_buffer=4)
    first = _captions(dataset)
    dataset.set_epoch(1)
    second = _captions(dataset)
    assert Counter(first) == Counter(second) == Counter(WORLD.sample("train", i).caption for i in range(12))
    assert first != second
    dataset.set_epoch(0)
    assert _captions(dataset) == first  # an epoch's order is a function of (seed, epoch)


def test_ranks_and_workers_read_every_sample_exactly_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    paths = _world_shards(tmp_path, 16, per_shard=2)  # 8 shards: 2 processes x 2 workers x 2 shards
    expected = Counter(WORLD.sample("train", i).caption for i in range(16))
    seen = []
    for rank in range(2):
        dataset = ShardDataset(shard_pattern(paths), transform=T, seed=1, rank=rank, world_size=2)
        seen.append(_captions(dataset, workers=2))
    assert all(len(part) == 8 for part in seen)
    assert Counter(seen[0] + seen[1]) == expected
    # The same split when the rank comes from torchrun's environment variables.
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert Counter(_captions(ShardDataset(shard_pattern(paths), transform=T, seed=1))) == Counter(seen[1])


def test_resampled_draws_with_replacement_and_bounds_the_epoch(tmp_path: Path) -> None:
    paths = _world_shards(tmp_path, 6, per_shard=2)
    known = {WORLD.sample("train", i).caption for i in range(6)}
    parts = [_captions(ShardDataset(shard_pattern(paths), transform=T, resampled=True, samples_per_epoch=25,
                                    shuffle_buffer=4, rank=rank, world_size=2)) for rank in range(2)]
    assert [len(p) for p in parts] == [13, 12]  # 25 samples an epoch over the two processes
    drawn = parts[0] + parts[1]
    assert set(drawn) <= known and max(Counter(drawn).values()) > 1  # 25 draws from 6 samples repeat some
    again = ShardDataset(shard_pattern(paths), transform=T, resampled=True, samples_per_epoch=25, shuffle_buffer=4,
                         rank=0, world_size=2)
    assert _captions(again) == parts[0]  # seeded
    with pytest.raises(ValueError, match="samples_per_epoch"):
        ShardDataset(shard_pattern(paths), transform=T, resampled=True)


def test_write_shards_keeps_encoded_bytes_and_file_extensions(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (9, 9, 9)).save(buffer, "JPEG")
    jpeg = buffer.getvalue()
    webp = tmp_path / "photo.WEBP"
    Image.new("RGB", (8, 8), (1, 2, 3)).save(webp, "WEBP")
    paths = write_shards([(jpeg, "from bytes", {}), (webp, "from a file", {"source": "x"})], tmp_path / "s",
                         samples_per_shard=5, prefix="part")
    assert [p.name for p in paths] == ["part-00000.tar"] and shard_pattern(paths) == str(paths[0])
    with tarfile.open(paths[0]) as tar:
        assert tar.getnames() == ["000000000.jpg", "000000000.txt", "000000000.json", "000000001.webp",
                                  "000000001.txt", "000000001.json"]
        assert tar.extractfile("000000000.jpg").read() == jpeg
        assert tar.extractfile("000000001.webp").read() == webp.read_bytes()
    with pytest.raises(ValueError, match="samples_per_shard"):
        write_shards([], tmp_path, samples_per_shard=0)


def test_shard_batches_give_each_process_its_share(tmp_path: Path) -> None:
    pattern = shard_pattern(_world_shards(tmp_path, 16, per_shard=4))
    batches = shard_batches(pattern, transform=T, tokenize_fn=lambda caps: torch.zeros(len(caps), 5, dtype=torch.long),
                            batch_size=8, workers=0, seed=0)
    for rank in range(2):
        data = batches(0, Process(rank=rank, world_size=2))
        shapes = [tuple(t.shape) for t in next(data)]
        assert shapes == [(4, 3, 32, 32), (4, 5)]
        next(data), next(data)  # 8 samples a process: two batches an epoch, then the next epoch begins


def _tar(path: Path, members: list[tuple[str, bytes]]) -> Path:
    with tarfile.open(path, "w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def _png(colour: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (40, 40), colour).save(buffer, "PNG")
    return buffer.getvalue()


def test_corrupt_samples_and_a_truncated_shard_are_skipped_and_counted(tmp_path: Path,
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    good = _tar(tmp_path / "good.tar", [m for i in range(4) for m in ((f"g{i}.png", _png((i, 0, 0))),
                                                                      (f"g{i}.txt", b"good"))])
    damaged = _tar(tmp_path / "damaged.tar", [("a.png", _png((1, 2, 3))), ("a.txt", b"ok"),
                                              ("b.jpg", b"not a jpeg"), ("b.txt", b"corrupt image"),
                                              ("c.png", _png((4, 5, 6)))])  # c has no caption
    whole = _world_shards(tmp_path / "w", 4, per_shard=4)[0].read_bytes()
    truncated = tmp_path / "truncated.tar"
    truncated.write_bytes(whole[:len(whole) // 2])
    dataset = ShardDataset([str(good), str(damaged), str(truncated)], transform=T, shuffle_shards=False,
                           shuffle_buffer=0)
    with caplog.at_level(logging.WARNING, logger="clipworks.data.shards"):
        items = list(dataset)
    captions = [c for _, c in items]
    assert captions[:5] == ["good"] * 4 + ["ok"]
    assert set(captions[5:]) <= {WORLD.sample("train", i).caption for i in range(4)}  # before the damage
    assert sorted(reason.split(" ")[0] for _, reason in dataset.bad) == ["no", "undecodable"]
    assert [url for url, _ in dataset.bad_shards] == [str(truncated)]
    assert dataset.n_seen == 7 + len(captions[5:])  # a, b, c of the damaged shard count as seen
    assert f"shard {damaged}: skipped 1 problem(s): c: no .txt caption" in caplog.text
    assert f"shard {truncated}: skipped 1 problem(s): unreadable from there on" in caplog.text
    assert "skipped sample b: undecodable .jpg" in caplog.text


def _shard_with_captionless_first(path: Path, n_bad: int, n_good: int) -> Path:
    """World samples 0..n_bad+n_good-1 in one shard; the first `n_bad` have no caption."""
    members = []
    for index in range(n_bad + n_good):
        buffer = io.BytesIO()
        WORLD.sample("train", index).image.save(buffer, "PNG")
        members += [(f"{index:06d}.png", buffer.getvalue())]
        members += [] if index < n_bad else [(f"{index:06d}.txt", WORLD.sample("train", index).caption.encode())]
    return _tar(path, members)


def test_bad_samples_are_all_counted_but_only_the_first_max_listed_kept_by_name(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setattr(shards, "MAX_LISTED", 2)  # 1000 in use: a long run over broken shards keeps its memory
    bad = _shard_with_captionless_first(tmp_path / "bad.tar", 5, 8)
    whole = _world_shards(tmp_path / "w", 4, per_shard=4)[0].read_bytes()
    truncated = tmp_path / "truncated.tar"
    truncated.write_bytes(whole[:len(whole) // 2])
    dataset = ShardDataset([str(bad)] + [str(truncated)] * 3, transform=T, shuffle_shards=False, shuffle_buffer=0)
    for epoch in range(2):  # workers=0: one dataset reads every epoch, as in a run with --workers 0
        dataset.set_epoch(epoch)
        list(dataset)
    first_two = [(f"{bad}:000000", "no .txt caption"), (f"{bad}:000001", "no .txt caption")]
    assert (dataset.n_bad, dataset.bad) == (10, first_two)
    assert (dataset.n_bad_shards, [url for url, _ in dataset.bad_shards]) == (6, [str(truncated)] * 2)
    assert dataset.new_problems() == (16, first_two) and dataset.new_problems() == (0, [])
    # A stream counts every problem of the batches it gives and hands on the first MAX_LISTED names a step.
    stream = shard_batches(str(bad), transform=T, tokenize_fn=lambda caps: torch.zeros(len(caps), 5, dtype=torch.long),
                           batch_size=4, workers=0, seed=0)(0, Process())
    next(stream)
    assert stream.take_skipped() == (5, first_two) and stream.take_skipped() == (5, [])
    stream.close()
    run = tmp_path / "r"
    assert cli.main(["train", "--data", str(bad), "--steps", "2", "--batch-size", "4", "--model", "RN-Tiny",
                     "--eval-every", "0", "--workers", "0", "--output-dir", str(run), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert f"trained on the shards; 5 unusable samples or shards skipped (listed in {run}/log.jsonl)" in printed
    steps = [r for r in map(json.loads, (run / "log.jsonl").read_text().splitlines()) if "loss" in r]
    assert [(r["skipped"], r.get("skipped_samples")) for r in steps] == [(5, [list(p) for p in first_two]),
                                                                         (5, None)]


def test_mostly_bad_shards_stop_with_a_clear_error(tmp_path: Path) -> None:
    members = [m for i in range(40) for m in ((f"k{i:03d}.jpg", b"garbage" if i % 4 else _png((0, 0, 0))),
                                              (f"k{i:03d}.txt", b"caption"))]
    bad = _tar(tmp_path / "bad.tar", members)
    with pytest.raises(DataError, match=r"of 3\d samples in the shards could not be used, e\.g\. .*bad\.tar:k001 "
                                        r"\(undecodable \.jpg \(not an image\)"):
        list(ShardDataset([str(bad)], transform=T, shuffle_buffer=0))
    junk = [tmp_path / "x.tar", tmp_path / "y.tar"]
    for path in junk:
        path.write_bytes(b"this is not a tar archive" * 30)
    with pytest.raises(DataError, match=r"none of the 2 shards tried could be read, e\.g\. .*x\.tar"):
        list(ShardDataset([str(p) for p in junk], transform=T))
    with pytest.raises(DataError, match="2 shards cannot be split over 3 processes"):
        list(ShardDataset([str(p) for p in junk], transform=T, rank=0, world_size=3))


def test_cli_writes_shards_from_a_csv_skipping_unreadable_images(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture) -> None:
    out = WORLD.export("train", 5, tmp_path / "set")
    sorted((out / "images").glob("*.png"))[2].write_text("not an image")
    assert cli.main(["shards", "--from", str(out / "captions.csv"), "--out", str(tmp_path / "s"),
                     "--samples-per-shard", "2"]) == 0
    printed = capsys.readouterr().out
    assert "skipped 1 unreadable image (first: " in printed
    assert f"--data '{tmp_path / 's'}/shard-{{00000..00001}}.tar'" in printed
    captions = _captions(ShardDataset(f"{tmp_path / 's'}/shard-{{00000..00001}}.tar", transform=T,
                                      shuffle_shards=False, shuffle_buffer=0))
    assert captions == [WORLD.sample("train", i).caption for i in (0, 1, 3, 4)]


def test_cli_shards_from_the_world_then_train_on_them(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert cli.main(["shards", "--from", "world", "--out", str(tmp_path / "s"), "--n", "32",
                     "--samples-per-shard", "16"]) == 0
    pattern = f"{tmp_path / 's'}/shard-{{00000..00001}}.tar"
    assert f"--data '{pattern}'" in capsys.readouterr().out
    with tarfile.open(tmp_path / "s" / "shard-00001.tar") as tar:
        meta = json.loads(tar.extractfile("000000016.json").read())
    attributes = WORLD.sample("train", 16).attributes
    assert meta["split"] == "train" and meta["colour"] == attributes.colour and meta["count"] == attributes.count
    code = cli.main(["train", "--data", pattern, "--steps", "2", "--batch-size", "8", "--model", "RN-Tiny",
                     "--eval-every", "0", "--workers", "0", "--output-dir", str(tmp_path / "r"), "--quiet"])
    assert code == 0
    assert (tmp_path / "r" / "checkpoints" / "step_0000002" / "model.safetensors").is_file()
    records = [json.loads(line) for line in (tmp_path / "r" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "loss" in r] == [1, 2]
    # Resampled mode: 3 steps of 8 from epochs of 8 samples drawn with replacement.
    code = cli.main(["train", "--data", pattern, "--steps", "3", "--batch-size", "8", "--model", "RN-Tiny",
                     "--resampled", "--samples-per-epoch", "8", "--eval-every", "0", "--workers", "0",
                     "--output-dir", str(tmp_path / "resampled"), "--quiet"])
    assert code == 0 and (tmp_path / "resampled" / "checkpoints" / "latest").read_text() == "step_0000003"


def test_training_on_shards_logs_and_counts_skipped_samples(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    for shard in range(2):  # two workers: each reads one shard, and tells the training process what it skipped
        members = []
        for index in range(shard * 8, shard * 8 + 8):
            key, sample = f"{index:06d}", WORLD.sample("train", index)
            buffer = io.BytesIO()
            sample.image.save(buffer, "PNG")
            image = b"not a png" if index == 2 else buffer.getvalue()
            members += [(f"{key}.png", image)] + ([] if index == 13 else [(f"{key}.txt", sample.caption.encode())])
        _tar(tmp_path / f"s-{shard}.tar", members)
    val = WORLD.export("val", 6, tmp_path / "val")
    broken = sorted((val / "images").glob("*.png"))[0]
    broken.write_text("not an image")
    run = tmp_path / "r"
    # 3 steps of 4 take the epoch's 3 batches: two of s-0 (one without its undecodable image) and one of s-1's 7
    # samples with a caption (the last 3 are a partial batch, dropped).
    assert cli.main(["train", "--data", f"{tmp_path}/s-{{0..1}}.tar", "--val-data", str(val / "captions.csv"),
                     "--steps", "3", "--batch-size", "4", "--model", "RN-Tiny", "--eval-every", "0", "--workers", "2",
                     "--output-dir", str(run), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert f"skipped 1 unreadable image of 6 in {val / 'captions.csv'}" in printed
    assert f"trained on the shards; 2 unusable samples or shards skipped (listed in {run}/log.jsonl)" in printed
    assert f"validated on 5 images; 1 unreadable one skipped (listed in {run}/log.jsonl)" in printed
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    data = records[0]["data"]  # the first record: what was known before the first step
    assert (data["source"], data["streamed"]) == (f"{tmp_path}/s-{{0..1}}.tar", True)
    assert (data["val"]["samples"], data["val"]["skipped"], data["val"]["skipped_images"]) == (5, 1, [str(broken)])
    steps = [r for r in records if "loss" in r]
    listed = [problem for r in steps for problem in r.get("skipped_samples", [])]
    assert sorted(listed) == [[f"{tmp_path}/s-0.tar:000002", "undecodable .png (not an image)"],
                              [f"{tmp_path}/s-1.tar:000013", "no .txt caption"]]
    # Every step counts what was skipped so far: the new ones of each step added up.
    assert [r["skipped"] for r in steps] == list(itertools.accumulate(len(r.get("skipped_samples", [])) for r in steps))


def _uneven_shards(tmp_path: Path) -> str:
    """World samples in shards of 7, 5, 9, 3, 6 and 4 samples (so DataLoader workers run out at different times),
    with one undecodable image and one sample without a caption."""
    members, index = [], 0
    for shard, size in enumerate((7, 5, 9, 3, 6, 4)):
        samples = []
        for _ in range(size):
            key, sample = f"{index:06d}", WORLD.sample("train", index)
            buffer = io.BytesIO()
            sample.image.save(buffer, "PNG")
            image = b"not a png" if index == 10 else buffer.getvalue()
            samples += [(f"{key}.png", image)] + ([] if index == 20 else [(f"{key}.txt", sample.caption.encode())])
            index += 1
        members.append(_tar(tmp_path / f"u-{shard}.tar", samples))
    return f"{tmp_path}/u-{{0..5}}.tar"


@pytest.mark.parametrize("workers", [0, 2])
def test_a_stream_resumed_from_its_position_continues_with_exactly_the_same_batches(tmp_path: Path,
                                                                                     workers: int) -> None:
    pattern = _uneven_shards(tmp_path)
    batches = shard_batches(pattern, transform=image_transform(32, train=True),
                            tokenize_fn=lambda caps: torch.tensor([[len(c), sum(map(ord, c))] for c in caps]),
                            batch_size=4, workers=workers, seed=3)
    reference = batches(0, Process())
    expected = [next(reference) for _ in range(20)]  # 32 good samples: ~8 batches an epoch, so 2+ epochs
    assert reference.position["epoch"] == 2  # the resumes below start in epochs 0 and 1 and cross epoch ends
    assert [len(images) for images, _ in expected].count(3) == 3  # each epoch, one batch lost its bad sample
    reference.close()  # its workers stop now (left to the garbage collector, each takes ~5 s)
    for stop in (1, 5, 8, 13):
        first = batches(0, Process())
        for _ in range(stop):
            next(first)
        resumed = batches(stop, Process(), first.position)
        first.close()
        for step in range(stop, 20):
            images, tokens = next(resumed)
            assert torch.equal(images, expected[step][0]) and torch.equal(tokens, expected[step][1]), (stop, step)
        resumed.close()


def test_training_resumed_from_a_shard_checkpoint_is_bit_identical(tmp_path: Path) -> None:
    pattern = _uneven_shards(tmp_path)
    common = ["train", "--data", pattern, "--steps", "6", "--batch-size", "4", "--model", "RN-Tiny", "--lr", "1e-3",
              "--eval-every", "0", "--workers", "2", "--quiet"]
    assert cli.main([*common, "--save-every", "3", "--output-dir", str(tmp_path / "straight")]) == 0
    middle = tmp_path / "straight" / "checkpoints" / "step_0000003"
    assert cli.main([*common, "--resume", str(middle), "--output-dir", str(tmp_path / "resumed")]) == 0
    a = load_file(tmp_path / "straight" / "checkpoints" / "step_0000006" / "model.safetensors")
    b = load_file(tmp_path / "resumed" / "checkpoints" / "step_0000006" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # The skipped samples are counted on from the checkpoint, each listed at the same step as without the resume.
    straight, resumed = ([{k: r[k] for k in ("step", "skipped", "skipped_samples") if k in r}
                          for r in map(json.loads, (tmp_path / run / "log.jsonl").read_text().splitlines())
                          if "loss" in r] for run in ("straight", "resumed"))
    assert resumed == straight[3:] and straight[-1]["skipped"] == 2
