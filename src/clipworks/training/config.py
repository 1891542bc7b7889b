"""A training run's configuration: `TrainConfig`, and its sources: defaults < recipe < config file < command-line flags.

Each field documents itself (`metadata["help"]`); `settings()` reads the dataclass once into what the command line
and config files need (flag, base type, choices, default, help), so `clipworks train --help`, the flags' types and
the config-file checker cannot drift from the fields. A config file is TOML or JSON whose keys are field names (a
run's own `config.json` is a valid config file: repeat a run with `--config runs/x/config.json`); unknown keys and
wrong types are errors that name the key and what was expected.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..errors import ConfigError
from ..hardware import PRECISIONS
from ..io.checkpoints import read_config
from ..models.configs import CLIPConfig, get_config, registry_name
from .recipes import recipe as recipe_overrides

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib


def _doc(default: Any, help: str) -> Any:
    """A field with its documentation, which `--help` shows; keeps TrainConfig readable as a table."""
    return field(default=default, metadata={"help": help})


@dataclass
class TrainConfig:
    """A training run's settings: each is a `clipworks train` flag, a config-file key and a keyword argument."""

    model: str = _doc("ViT-Tiny", "registry name (see `clipworks models`)")
    init: str | None = _doc(None, "start from this checkpoint (any supported format, or a pretrained name such as "
                                  "ViT-B-32) instead of random weights; its architecture replaces --model")
    lock_image: bool = _doc(False, "LiT (Zhai et al. 2022): freeze the image tower (eval mode, not optimized)")
    patch_dropout: float = _doc(0.0, "FLIP (Li et al. 2023): fraction of ViT patch tokens dropped while training")
    lr_image_scale: float = _doc(1.0, "the image tower's (visual.*) learning rate = schedule * this")
    lr_text_scale: float = _doc(1.0, "the text tower's learning rate = schedule * this (the temperature keeps 1)")
    data: str = _doc("world", "'world' (built-in generated data), a CSV/TSV of image path + caption, or tar shards "
                              "(data/{00..09}.tar)")
    val_data: str | None = _doc(None, "CSV/TSV for periodic retrieval evaluation (the world brings its own)")
    image_key: str = _doc("filepath", "CSV column of image paths")
    caption_key: str = _doc("caption", "CSV column of captions")
    world_seed: int = _doc(0, "the built-in world's seed")
    world_samples: int = _doc(20_000, "training pairs rendered from the world (cached on disk)")
    output_dir: str = _doc("runs/train", "where checkpoints, log.jsonl and config.json go")
    steps: int = _doc(1_000, "optimizer steps")
    batch_size: int = _doc(256, "global batch; contrastive learning wants it as large as fits (the paper: 32,768)")
    lr: float = _doc(5e-4, "peak learning rate (the paper: 5e-4 for RN50 ... 4e-4 for ViT-L/14)")
    min_lr: float = _doc(0.0, "cosine schedule floor")
    warmup_steps: int = _doc(100, "linear warm-up steps (the paper: 2,000 of ~400k)")
    weight_decay: float = _doc(0.2, "AdamW weight decay, on weight matrices only")
    beta1: float = _doc(0.9, "AdamW beta1")
    beta2: float = _doc(0.98, "AdamW beta2 (the paper: 0.98 for ViTs, 0.999 for ResNets)")
    eps: float = _doc(1e-6, "AdamW eps (the paper: 1e-6 for ViTs, 1e-8 for ResNets)")
    grad_clip: float = _doc(0.0, "max global gradient norm; 0 disables")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = _doc(
        "auto", "autocast dtype; weights and optimizer stay fp32. auto: bf16 where the device computes it natively "
                "(AVX512-BF16/AMX CPUs, CUDA), else fp32; fp16 adds a gradient scaler (meant for GPUs)")
    grad_checkpointing: bool = _doc(False, "recompute activations in backward to save memory")
    loss_tile: int = _doc(0, "rows per tile of the tiled contrastive loss (memory O(tile * batch)); 0: plain loss")
    micro_batches: int = _doc(1, "forward/backward passes per step (GradCache): less memory, the same update")
    eval_every: int = _doc(250, "steps between evaluations; 0 disables")
    zeroshot_data: str | None = _doc(None, "a labelled set to classify zero-shot while training, top-1/top-5 logged "
                                           "(a fine-tune that forgets shows it): a folder of class folders, a CSV of "
                                           "filepath,label, or a benchmark dataset key with --zeroshot-root")
    zeroshot_root: str | None = _doc(None, "the folder holding one folder per benchmark dataset (as `clipworks "
                                           "benchmark --root`), for a dataset key as --zeroshot-data")
    zeroshot_templates: str = _doc("default", "prompts for a folder or CSV --zeroshot-data: imagenet80, imagenet7, "
                                              "cifar, default or a file of templates (a benchmark dataset has its own)")
    zeroshot_every: int = _doc(0, "steps between zero-shot evaluations of --zeroshot-data; 0: at --eval-every's")
    save_every: int = _doc(500, "steps between checkpoints (the last step always saves)")
    keep: int = _doc(2, "checkpoints kept on disk")
    tensorboard: bool = _doc(True, "TensorBoard scalars in <output_dir>/tensorboard (rank 0 only)")
    workers: int = _doc(2, "DataLoader workers for CSV and shard data")
    resampled: bool = _doc(False, "shards: draw shards with replacement, endlessly (needs --samples-per-epoch)")
    samples_per_epoch: int | None = _doc(None, "shards: samples per epoch over the whole job (resampled mode)")
    seed: int = _doc(0, "seed of the model's initialisation and the data order")
    device: str = _doc("cpu", "cpu or cuda (under torchrun each process takes the GPU of its local rank)")
    resume: str | None = _doc(None, "'latest' (this output dir's newest checkpoint; with none yet, the run starts "
                                    "at step 0, so a restartable job can always pass it) or a checkpoint directory")

    def model_config(self) -> CLIPConfig:
        """The architecture trained: --init's when given (it overrides --model), else the registry's --model."""
        return read_config(self.init) if self.init else get_config(self.model)

    def validate(self) -> None:
        if not self.init:
            get_config(self.model)  # raises a clear error for an unknown name
        if not 0.0 <= self.patch_dropout < 1.0:
            raise ConfigError(f"--patch-dropout must be in [0, 1), got {self.patch_dropout}")
        if self.patch_dropout and not self.init and get_config(self.model).vision.kind != "vit":
            raise ConfigError(f"--patch-dropout needs a ViT image tower; {self.model} is a ResNet")
        for name in ("lr_image_scale", "lr_text_scale"):
            if getattr(self, name) < 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(self, name)}")
        for name in ("steps", "batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if self.batch_size < 2:
            raise ConfigError("--batch-size must be at least 2: a contrastive batch needs negatives")
        if not self.lr > 0:
            raise ConfigError(f"--lr must be positive, got {self.lr}")
        if self.micro_batches < 1 or self.batch_size % self.micro_batches:
            raise ConfigError(f"--micro-batches {self.micro_batches} must be >= 1 and divide --batch-size")
        if self.zeroshot_every < 0:
            raise ConfigError(f"--zeroshot-every must be >= 0, got {self.zeroshot_every}")
        if self.zeroshot_every and not self.zeroshot_data:
            raise ConfigError("--zeroshot-every needs --zeroshot-data: the labelled set to classify")
        if self.zeroshot_data and not self.zeroshot_root and not Path(self.zeroshot_data).exists():
            raise ConfigError(f"--zeroshot-data {self.zeroshot_data}: no such file or folder; for a benchmark dataset "
                              f"key, also give --zeroshot-root, the folder holding {self.zeroshot_data}/")
        if self.resampled and not self.samples_per_epoch:
            raise ConfigError("--resampled draws shards forever: also set --samples-per-epoch")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"--precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")


@dataclass(frozen=True)
class Setting:
    """One TrainConfig field as the command line and config files see it."""

    name: str
    base: type  # bool, int, float or str: the annotation without `| None`
    choices: tuple[Any, ...] | None  # the values of a Literal annotation
    optional: bool  # annotated `X | None`: a config file may say null
    default: Any
    help: str

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def expected(self) -> str:
        """What a value must be, for error messages."""
        return "one of " + ", ".join(map(repr, self.choices)) if self.choices else self.base.__name__

    def check(self, value: Any, source: str) -> Any:
        """`value` if it fits this setting (an int where a float is expected becomes a float), else a ConfigError
        naming `source`, the key and the expected type."""
        if value is None and self.optional:
            return None
        if self.choices:
            ok = value in self.choices
        elif self.base is bool:
            ok = isinstance(value, bool)
        elif self.base is int:
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif self.base is float:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            value = float(value) if ok else value
        else:
            ok = isinstance(value, self.base)
        if not ok:
            raise ConfigError(f"{source}: {self.name} must be {self.expected}, got {value!r} ({type(value).__name__})")
        return value


def settings() -> list[Setting]:
    """TrainConfig's fields as settings, in field order: the one place their annotations are read."""
    hints = typing.get_type_hints(TrainConfig)
    described = []
    for f in dataclasses.fields(TrainConfig):
        hint = hints[f.name]
        optional = type(None) in typing.get_args(hint)  # `X | None`
        if optional:
            hint = next(a for a in typing.get_args(hint) if a is not type(None))
        choices = typing.get_args(hint) if typing.get_origin(hint) is Literal else None
        described.append(Setting(name=f.name, base=type(choices[0]) if choices else hint, choices=choices,
                                 optional=optional, default=f.default, help=f.metadata["help"]))
    return described


def add_train_flags(parser: argparse.ArgumentParser) -> None:
    """One --flag per TrainConfig field, typed and documented from it, its default shown in the help line.

    Flags the user did not type are absent from the parsed namespace (instead of holding the field's default), so
    they can override a config file or recipe without resetting its values to defaults.
    """
    for s in settings():
        help_ = f"{s.help} (default: {s.default})".replace("%", "%%")  # argparse %-formats help strings
        if s.base is bool:
            parser.add_argument(s.flag, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS, help=help_)
        elif s.choices:
            parser.add_argument(s.flag, choices=s.choices, default=argparse.SUPPRESS, help=help_)
        else:
            parser.add_argument(s.flag, type=s.base, default=argparse.SUPPRESS, metavar=s.name.upper(), help=help_)


# Written into a run's config.json for the record (the resolved architecture); not a setting, so skipped on read.
_RECORD_ONLY = {"model_config", "precision_reason"}


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
            raise ConfigError(f"{path}: expected a JSON object of TrainConfig fields, got {type(raw).__name__}")
    else:
        raise ConfigError(f"{path}: a config file is .toml or .json, got {path.suffix or 'no extension'}")
    known = {s.name: s for s in settings()}
    unknown = sorted(k for k in raw if k not in known and k not in _RECORD_ONLY)
    if unknown:
        raise ConfigError(f"{path}: unknown key{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}; valid keys: "
                          f"{', '.join(known)}")
    return {k: known[k].check(v, str(path)) for k, v in raw.items() if k in known}


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
            model = registry_name(read_config(chosen["init"]))
            if model is None:
                raise ConfigError(f"--recipe {recipe}: --init {chosen['init']} is a custom architecture, not one of "
                                  "the paper's models")
        else:
            model = chosen.get("model", TrainConfig.model)
        overrides = recipe_overrides(recipe, model)
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    return TrainConfig(**{k: v for k, v in {**overrides, **chosen}.items() if k in known})
