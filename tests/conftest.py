"""Shared fixtures: tests/ on sys.path (for reference.py), a private world cache, one tiny trained checkpoint."""

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))


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
