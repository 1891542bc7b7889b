"""`clipworks embed`: clip-retrieval's layout with every input row once, in order, vectors equal to encoding the
images directly; two processes under torchrun write what one does; a kill -9 and a rerun give every image exactly
once without redoing finished shards; damaged images are listed, not fatal; bad input is one line, exit code 2."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from clipworks import cli, embed
from clipworks.data.images import open_image
from clipworks.data.shard_files import shard_pattern, write_shards
from clipworks.data.world import World, WorldConfig
from clipworks.errors import ConfigError, DataError
from clipworks.io.checkpoints import load_for_inference
from clipworks.models.encode import embed_images, encode_texts

N = 64


@pytest.fixture(scope="module")
def world_images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """64 held-out world PNGs in images/ with captions.csv (filepath,caption)."""
    return World(WorldConfig(seed=0)).export("heldout", N, tmp_path_factory.mktemp("embed-world"))


def read_output(out: Path, *, text: bool = False) -> tuple[np.ndarray, np.ndarray | None, list[dict]]:
    """(image embeddings, text embeddings, metadata rows) of all shards, in shard order."""
    images = np.concatenate([np.load(f) for f in sorted((out / "img_emb").glob("*.npy"))])
    texts = np.concatenate([np.load(f) for f in sorted((out / "text_emb").glob("*.npy"))]) if text else None
    rows = [r for f in sorted((out / "metadata").glob("*.parquet")) for r in pq.read_table(f).to_pylist()]
    return images, texts, rows


def direct(checkpoint: Path, paths: list[Path]) -> torch.Tensor:
    """The same images encoded directly, without the embed job."""
    model, transform = load_for_inference(checkpoint, dtype="fp32")
    pixels = torch.stack([transform(open_image(p)) for p in paths])
    (vectors, _), = embed_images(model, [(pixels, None)])
    return vectors


def test_csv_rows_in_order_equal_direct_encoding_and_damage_listed(tiny_run: Path, world_images: Path,
                                                                   tmp_path: Path) -> None:
    lines = (world_images / "captions.csv").read_text().splitlines()
    paths = [world_images / line.split(",")[0] for line in lines[1:]]
    captions = [line.split(",", 1)[1] for line in lines[1:]]
    (tmp_path / "broken.png").write_bytes((world_images / "images" / "000000.png").read_bytes()[:100])
    csv = tmp_path / "data.csv"  # row 5 truncated, row 9 missing: listed, the rest embedded
    rows = [f"{p},{c}" for p, c in zip(paths, captions)]
    rows[5], rows[9] = f"{tmp_path / 'broken.png'},{captions[5]}", f"{tmp_path / 'gone.png'},{captions[9]}"
    csv.write_text("filepath,caption\n" + "\n".join(rows) + "\n")
    summary = embed(csv, checkpoint=tiny_run, out=tmp_path / "out", text=True, dtype="fp32", shard_size=24,
                    batch_size=16, precision="fp32", progress=False)
    images, texts, meta = read_output(tmp_path / "out", text=True)
    kept = [i for i in range(N) if i not in (5, 9)]
    assert [r["row"] for r in meta] == kept
    assert [r["image_path"] for r in meta] == [str(paths[i]) for i in kept]
    assert [r["caption"] for r in meta] == [captions[i] for i in kept]
    assert {(r["width"], r["height"]) for r in meta} == {(64, 64)}
    assert images.dtype == np.float32 and images.shape == (N - 2, 128)
    np.testing.assert_allclose(images, direct(tiny_run, [paths[i] for i in kept]).numpy(), atol=1e-6, rtol=0)
    model, _ = load_for_inference(tiny_run, dtype="fp32")
    np.testing.assert_allclose(texts, encode_texts(model, [captions[i] for i in kept]).numpy(), atol=1e-6, rtol=0)
    assert summary["rows"] == N - 2 and summary["shards"] == 3 and summary["precision"] == "fp32"
    assert [(d["row"], d["image"]) for d in summary["damaged"]] == [(5, str(tmp_path / "broken.png")),
                                                                   (9, str(tmp_path / "gone.png"))]
    first = pq.read_metadata(tmp_path / "out" / "metadata" / "metadata_00000.parquet").metadata
    assert [d["row"] for d in json.loads(first[b"clipworks.damaged"])] == [5, 9]
    assert json.loads((tmp_path / "out" / "summary.json").read_text()) == summary


def test_tar_shards_one_output_shard_each_fp16_by_default(tiny_run: Path, world_images: Path,
                                                         tmp_path: Path) -> None:
    paths = sorted((world_images / "images").glob("*.png"))[:12]
    tars = write_shards(((p, f"caption {i}", {}) for i, p in enumerate(paths)), tmp_path / "tars",
                        samples_per_shard=5)
    with tarfile.open(tars[2]) as tar:  # the last tar breaks off in its second sample's image
        cut = next(m.offset_data + m.size // 2 for m in tar.getmembers() if m.name == "000000011.png")
    tars[2].write_bytes(tars[2].read_bytes()[:cut])
    assert cli.main(["embed", shard_pattern(tars), "--checkpoint", str(tiny_run), "--out", str(tmp_path / "out"),
                     "--precision", "fp32", "--quiet"]) == 0
    images, _, meta = read_output(tmp_path / "out")
    assert images.dtype == np.float16 and len(list((tmp_path / "out" / "img_emb").iterdir())) == 3
    assert [r["key"] for r in meta] == [f"{tars[i // 5]}#{i:09d}" for i in range(11)]
    assert [r["row"] for r in meta] == [i % 5 for i in range(11)]  # within its tar
    assert [r["caption"] for r in meta] == [f"caption {i}" for i in range(11)]
    np.testing.assert_allclose(images.astype(np.float32), direct(tiny_run, paths[:11]).numpy(), atol=1e-3, rtol=0)
    damaged = json.loads((tmp_path / "out" / "summary.json").read_text())["damaged"]
    assert [(d["row"], d["image"]) for d in damaged] == [(1, str(tars[2]))]
    assert damaged[0]["reason"].startswith("tar unreadable from here on")


def run(command: list[str]) -> subprocess.CompletedProcess:
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def test_two_processes_write_what_one_process_writes(tiny_run: Path, world_images: Path, tmp_path: Path) -> None:
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    args = ["embed", str(world_images / "captions.csv"), "--checkpoint", str(tiny_run), "--text", "--dtype", "fp32",
            "--shard-size", "10", "--precision", "fp32", "--quiet"]
    assert cli.main([*args, "--out", str(tmp_path / "one")]) == 0
    run([torchrun, "--standalone", "--nproc-per-node", "2", "-m", "clipworks.cli", *args, "--out",
         str(tmp_path / "two")])
    one, two = read_output(tmp_path / "one", text=True), read_output(tmp_path / "two", text=True)
    assert two[2] == one[2] and len(one[2]) == N
    np.testing.assert_allclose(two[0], one[0], atol=1e-6, rtol=0)
    np.testing.assert_allclose(two[1], one[1], atol=1e-6, rtol=0)
    summary = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert summary["processes"] == 2 and summary["rows"] == N and summary["embedded_this_run"] == N


def test_kill_9_then_rerun_embeds_every_image_once(tiny_run: Path, world_images: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    command = [sys.executable, "-m", "clipworks.cli", "embed", str(world_images / "images"), "--checkpoint",
               str(tiny_run), "--out", str(out), "--shard-size", "2", "--batch-size", "2", "--precision", "fp32"]
    job = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    try:
        for line in job.stderr:
            if line.startswith("embed rank 0: 2/"):  # two shards written: freeze the job where it is, then kill it
                os.kill(job.pid, signal.SIGSTOP)
                break
        done = {f.name: (f.stat().st_ino, f.stat().st_mtime_ns) for f in (out / "metadata").glob("*.parquet")}
        os.kill(job.pid, signal.SIGKILL)
    finally:
        job.kill()
        job.wait()
    assert 2 <= len(done) < N // 2, "the kill should land mid-way"
    assert cli.main([*command[3:], "--quiet"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    _, _, meta = read_output(out)
    assert sorted(r["row"] for r in meta) == list(range(N)) and [r["row"] for r in meta] == list(range(N))
    assert summary["rows"] == N and summary["embedded_this_run"] == N - 2 * len(done)
    assert not [f for f in out.rglob(".*")], "temporaries of the shard being written at the kill are removed"
    for name, stamp in done.items():  # finished shards were not written again
        f = out / "metadata" / name
        assert (f.stat().st_ino, f.stat().st_mtime_ns) == stamp


def test_bad_input_is_one_line_and_exit_code_2(tiny_run: Path, world_images: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "empty").mkdir()
    base = ["--checkpoint", str(tiny_run), "--precision", "fp32", "--quiet"]
    assert cli.main(["embed", str(tmp_path / "empty"), *base, "--out", str(tmp_path / "o1")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("clipworks embed: error: no images under") and "Traceback" not in "".join(err)
    other = tmp_path / "other" / "img_emb"  # shards of a 512-dimensional model already there
    other.mkdir(parents=True)
    np.save(other / "img_emb_00000.npy", np.zeros((3, 512), np.float16))
    assert cli.main(["embed", str(world_images / "images"), *base, "--out", str(tmp_path / "other")]) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert "holds 512-dimensional embeddings (img_emb_00000.npy)" in line and "gives 128" in line
    # A rerun into a finished job's --out with other settings would mix two shardings: refused.
    assert cli.main(["embed", str(world_images / "images"), *base, "--out", str(tmp_path / "o2"),
                     "--shard-size", "32"]) == 0
    assert cli.main(["embed", str(world_images / "images"), *base, "--out", str(tmp_path / "o2"),
                     "--shard-size", "16"]) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert "holds another embedding job's shards (shards 2, shard_size 32 there, 4, 16 now)" in line


def test_without_pyarrow_one_line_names_the_extra(tiny_run: Path, world_images: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import pyarrow -> ImportError
    with pytest.raises(ConfigError, match=r"pip install 'clipworks\[embed\]'"):
        embed(world_images / "images", checkpoint=tiny_run, out=tmp_path / "out", progress=False)


def test_a_csv_whose_paths_are_all_wrong_is_refused_up_front(tiny_run: Path, tmp_path: Path) -> None:
    (tmp_path / "data.csv").write_text("filepath,caption\nimages/a.png,a\nimages/b.png,b\n")
    with pytest.raises(DataError, match=r"none of the first 2 image paths .* exists"):
        embed(tmp_path / "data.csv", checkpoint=tiny_run, out=tmp_path / "out", progress=False)
