"""OpenAI's own CLIP code (clip/model.py, clip/simple_tokenizer.py from the clip-anytorch==2.6.0 wheel), loaded by path.

Importing the package `clip` fails here (it needs pkg_resources and torchvision), so the two files are loaded on their
own. `make test` installs the wheel with --no-deps; without it these tests cannot run and say so.
"""

from __future__ import annotations

import importlib.util
import sysconfig
from functools import cache
from pathlib import Path
from types import ModuleType

import pytest

CLIP_DIR = Path(sysconfig.get_paths()["purelib"]) / "clip"


@cache
def _load(name: str) -> ModuleType:
    path = CLIP_DIR / f"{name}.py"
    if not path.exists():
        pytest.fail(f"{path} is missing: install the reference with `pip install --no-deps clip-anytorch==2.6.0`")
    spec = importlib.util.spec_from_file_location(f"openai_clip_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def openai_model() -> ModuleType:
    return _load("model")


def openai_simple_tokenizer() -> ModuleType:
    return _load("simple_tokenizer")
