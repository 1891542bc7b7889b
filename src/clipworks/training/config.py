"""A training run's configuration from its sources: defaults < recipe < config file < command-line flags.

A config file is TOML or JSON whose keys are `TrainConfig` field names, type-checked against the field annotations
(a run's own `config.json` is a valid config file: repeat a run with `--config runs/x/config.json`). Unknown keys
and wrong types are errors that name the key and what was expected.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import typing
from pathlib import Path
from typing import Any

from ..io.checkpoints import read_checkpoint
from ..models.configs import registry_name
from .loop import TrainConfig
from .recipes import recipe as recipe_overrides

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

# Written into a run's config.json for the record (the resolved architecture); not a setting, so skipped on read.
_RECORD_ONLY = {"model_config", "precision_reason"}


def _type_name(hint: Any) -> str:
    if typing.get_origin(hint) is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(hint))
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    base = args[0] if args else hint
    return base.__name__ + (" or null" if type(None) in typing.get_args(hint) else "")


def _check(key: str, value: Any, hint: Any, source: str) -> Any:
    """`value` if it fits the annotation `hint` (an int where a float is expected becomes a float), else an error."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Literal:
        ok = value in args
    elif type(None) in args:  # `X | None`
        base = next(a for a in args if a is not type(None))
        return None if value is None else _check(key, value, base, source)
    elif hint is bool:
        ok = isinstance(value, bool)
    elif hint is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif hint is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    else:
        ok = isinstance(value, hint)
    if not ok:
        raise ValueError(f"{source}: {key} must be {_type_name(hint)}, got {value!r} ({type(value).__name__})")
    return value


def load_config_file(path: str | Path) -> dict[str, Any]:
    """TrainConfig values from a .toml or .json file, type-checked; unknown keys are an error listing valid ones."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} does not exist")
    if path.suffix == ".toml":
        with path.open("rb") as f:
            raw = tomllib.load(f)
    elif path.suffix == ".json":
        raw = json.loads(path.read_text())
        if not isinstance(raw, dict):
            raise ValueError(f"{path}: expected a JSON object of TrainConfig fields, got {type(raw).__name__}")
    else:
        raise ValueError(f"{path}: a config file is .toml or .json, got {path.suffix or 'no extension'}")
    hints = typing.get_type_hints(TrainConfig)
    unknown = sorted(k for k in raw if k not in hints and k not in _RECORD_ONLY)
    if unknown:
        raise ValueError(f"{path}: unknown key{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}; valid keys: "
                         f"{', '.join(hints)}")
    return {k: _check(k, v, hints[k], str(path)) for k, v in raw.items() if k in hints}


def resolve_train_config(flags: dict[str, Any] | None = None, *, config_file: str | Path | None = None,
                         recipe: str | None = None) -> TrainConfig:
    """The run's TrainConfig: dataclass defaults, then the recipe (for the model the run trains: --init's
    architecture when given, else --model from the flags, the file or the default), then the file, then `flags`
    (only the flags the user gave)."""
    flags = dict(flags or {})
    from_file = load_config_file(config_file) if config_file else {}
    chosen = {**from_file, **flags}
    overrides: dict[str, Any] = {}
    if recipe:
        if chosen.get("init"):
            model = registry_name(read_checkpoint(chosen["init"]).config)
            if model is None:
                raise ValueError(f"--recipe {recipe}: --init {chosen['init']} is a custom architecture, not one of "
                                 "the paper's models")
        else:
            model = chosen.get("model", TrainConfig.model)
        overrides = recipe_overrides(recipe, model)
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    return TrainConfig(**{k: v for k, v in {**overrides, **chosen}.items() if k in known})
