"""Shared fixtures: tests/ on sys.path (for reference.py), a private world cache, one tiny trained checkpoint, a
search collection (a checkpoint that knows colours, world images, their index) and a server on it."""

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))


def _machine_line() -> str:
    """Which CPU class ran the suite, so a CI log says it: capability, native bf16, cores, model, fp32 matmul rate."""
    import os
    import time

    import torch

    from clipworks.hardware import cpu

    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), "unknown") if Path("/proc/cpuinfo").exists() else "unknown"
    a = torch.randn(512, 512)
    a @ a
    start, n = time.perf_counter(), 50
    for _ in range(n):
        a @ a
    rate = n * 2 * 512**3 / (time.perf_counter() - start) / 1e9
    return (f"clipworks: CPU class {cpu().label} ({model}), {os.cpu_count()} cores, {torch.get_num_threads()} torch "
            f"threads, fp32 512^2 matmul {rate:.0f} GFLOP/s, load average {os.getloadavg()[0]:.1f}")


def pytest_report_header() -> str:
    return _machine_line()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    terminalreporter.write_line(_machine_line())


@pytest.fixture(scope="session", autouse=True)
def world_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Rendered world data goes to the test session's temporary folder, never to ~/.cache."""
    path = tmp_path_factory.getbasetemp() / "cache"
    mp = pytest.MonkeyPatch()
    mp.setenv("CLIPWORKS_CACHE", str(path))
    yield path
    mp.undo()


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory, world_cache: Path) -> Path:
    """A training run of RN-Tiny on 64 world pairs: 40 steps, checkpoints at 20 and 40. Read-only for tests."""
    from clipworks import cli

    out = tmp_path_factory.mktemp("tiny_run")
    code = cli.main(["train", "--model", "RN-Tiny", "--steps", "40", "--batch-size", "32", "--world-samples", "64",
                     "--lr", "2e-3", "--warmup-steps", "5", "--eval-every", "0", "--save-every", "20",
                     "--output-dir", str(out), "--quiet"])
    assert code == 0
    return out


@dataclass(frozen=True)
class SearchCollection:
    """A world image folder whose only red image and only blue image are the targets of text queries."""

    checkpoint: Path  # RN-Tiny trained long enough to tell colours apart (~97% on val)
    images: Path  # 42 PNGs: 40 of the six other colours, one red, one blue
    captions: Path  # captions.csv (filepath,caption) for those images
    red: Path
    blue: Path
    red_query: str  # a caption-style query naming the red image's colour and shape
    blue_query: str
    index: Path  # a flat index of `images`, built once; read-only for tests


@pytest.fixture(scope="session")
def search_collection(tmp_path_factory: pytest.TempPathFactory, world_cache: Path) -> SearchCollection:
    import csv

    from clipworks import cli
    from clipworks.data.world import World, WorldConfig

    root = tmp_path_factory.mktemp("search")
    run = root / "run"
    # 100 steps of batch 64: colour is learnt first (cosine margin of the right image over the next >= 0.18 for
    # the queries below); shapes are not yet, so the targets are the only images of their colour.
    code = cli.main(["train", "--model", "RN-Tiny", "--steps", "100", "--batch-size", "64", "--world-samples", "2000",
                     "--lr", "3e-3", "--warmup-steps", "10", "--eval-every", "0", "--save-every", "100",
                     "--output-dir", str(run), "--quiet"])
    assert code == 0
    world = World(WorldConfig(seed=0))
    samples = [world.sample("val", i) for i in range(200)]
    others = [i for i, s in enumerate(samples) if s.attributes.colour not in ("red", "blue")][:40]
    red = next(i for i, s in enumerate(samples) if s.attributes.colour == "red")
    blue = next(i for i, s in enumerate(samples) if s.attributes.colour == "blue")
    images = root / "images"
    images.mkdir()
    with open(root / "captions.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["filepath", "caption"])
        for i in [*others, red, blue]:
            samples[i].image.save(images / f"{i:04d}.png")
            writer.writerow([f"images/{i:04d}.png", samples[i].caption])
    index = root / "index"
    assert cli.main(["index", "build", str(images), "--checkpoint", str(run), "--out", str(index), "--quiet",
                     "--precision", "fp32"]) == 0
    r, b = samples[red].attributes, samples[blue].attributes
    return SearchCollection(run, images, root / "captions.csv", images / f"{red:04d}.png",
                            images / f"{blue:04d}.png", f"a photo of a {r.colour} {r.shape}",
                            f"a photo of a {b.colour} {b.shape}", index)


@dataclass(frozen=True)
class Server:
    url: str  # http://127.0.0.1:PORT
    process: subprocess.Popen
    log: Path  # the server's stderr


MAX_UPLOAD_BYTES = 2**20  # the test server's limits, small so that tests can exceed them cheaply
MAX_PIXELS = 1_000_000
MAX_PROMPTS = 6000  # large, so that a classification at the limit keeps the model busy for a while


@pytest.fixture(scope="session")
def search_server(search_collection: SearchCollection, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """`clipworks serve` on the search collection, in its own process on a free loopback port."""
    import time
    import urllib.request

    log = tmp_path_factory.mktemp("server") / "stderr.log"
    with open(log, "w") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "clipworks.cli", "serve", str(search_collection.index), "--port", "0",
             "--max-upload-mb", str(MAX_UPLOAD_BYTES / 2**20), "--max-pixels", str(MAX_PIXELS),
             "--max-prompts", str(MAX_PROMPTS)],
            stdout=subprocess.PIPE, stderr=err, text=True)
    try:
        line = process.stdout.readline()  # "serving ... at http://127.0.0.1:PORT/ (Ctrl-C to stop)"
        assert " at http://127.0.0.1:" in line, f"server did not start: {line!r}; log: {log.read_text()}"
        url = line.split(" at ")[1].split("/ ")[0]
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(url + "/api/info", timeout=2).read()
                break
            except OSError:
                assert time.monotonic() < deadline, f"server at {url} never answered; log: {log.read_text()}"
                time.sleep(0.1)
        yield Server(url, process, log)
    finally:
        process.terminate()
        process.wait(timeout=30)
