"""Typed config files, the paper's recipes, and their precedence: defaults < recipe < config file < flags."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest

from clipworks import cli
from clipworks.errors import ConfigError
from clipworks.training.config import TrainConfig, load_config_file, resolve_train_config
from clipworks.training.recipes import paper_recipe, recipe


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_toml_and_json_files_are_typed(tmp_path: Path) -> None:
    toml = write(tmp_path / "run.toml", 'model = "RN-Tiny"\nlr = 1\nsteps = 7\nlock_image = true\n'
                                        'precision = "fp32"\ninit = "ckpt"\n')
    values = load_config_file(toml)
    assert values == {"model": "RN-Tiny", "lr": 1.0, "steps": 7, "lock_image": True, "precision": "fp32",
                      "init": "ckpt"}
    assert isinstance(values["lr"], float)  # an int where a float is expected is accepted as a float
    as_json = write(tmp_path / "run.json", json.dumps({"patch_dropout": 0.5, "val_data": None}))
    assert load_config_file(as_json) == {"patch_dropout": 0.5, "val_data": None}


def test_unknown_keys_are_named_with_the_valid_ones(tmp_path: Path) -> None:
    path = write(tmp_path / "run.toml", 'modle = "RN50"\nlearning_rate = 0.1\n')
    with pytest.raises(ValueError) as e:
        load_config_file(path)
    message = str(e.value)
    assert "unknown keys learning_rate, modle" in message
    assert "valid keys: model, init, lock_image" in message and "lr_image_scale" in message


@pytest.mark.parametrize("text, message", [
    ('steps = "ten"', "steps must be int, got 'ten' (str)"),
    ("steps = 2.5", "steps must be int, got 2.5 (float)"),
    ('lock_image = "yes"', "lock_image must be bool, got 'yes' (str)"),
    ("lr = true", "lr must be float, got True (bool)"),
    ('precision = "fp8"', "precision must be one of 'auto', 'fp32', 'bf16'"),
    ("init = 3", "init must be str, got 3 (int)"),
])
def test_wrong_types_are_clear_errors(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_config_file(write(tmp_path / "run.toml", text + "\n"))


def test_precedence_defaults_recipe_file_flags(tmp_path: Path) -> None:
    file = write(tmp_path / "run.toml", 'model = "ViT-B-32"\nwarmup_steps = 50\nlr = 1e-4\n')
    cfg = resolve_train_config({"lr": 3e-4}, config_file=file, recipe="paper")
    assert cfg.lr == 3e-4  # flag beats file beats recipe
    assert cfg.warmup_steps == 50  # file beats recipe
    assert cfg.batch_size == 32_768 and cfg.eps == 1e-6  # recipe beats default
    assert cfg.steps == TrainConfig.steps  # default where nothing else speaks
    # The recipe follows the model chosen by the flags, over the file's model.
    rn = resolve_train_config({"model": "RN50"}, config_file=file, recipe="paper")
    assert (rn.model, rn.beta2, rn.eps, rn.lr) == ("RN50", 0.999, 1e-8, 1e-4)


def test_paper_recipes_for_vit_b_32_and_rn50() -> None:
    assert paper_recipe("ViT-B-32") == {"batch_size": 32_768, "weight_decay": 0.2, "warmup_steps": 2_000,
                                        "beta1": 0.9, "beta2": 0.98, "eps": 1e-6, "lr": 5e-4}
    assert paper_recipe("RN50") == {"batch_size": 32_768, "weight_decay": 0.2, "warmup_steps": 2_000,
                                    "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "lr": 5e-4}
    assert paper_recipe("ViT-B/32") == paper_recipe("ViT-B-32")  # OpenAI's spelling
    assert paper_recipe("RN50x64")["lr"] == 3.6e-4 and paper_recipe("ViT-L/14")["lr"] == 4e-4
    with pytest.raises(ValueError, match="the paper trained no ViT-Tiny"):
        paper_recipe("ViT-Tiny")


def test_cli_flags_override_the_config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen = []

    class Result:
        checkpoint = "ckpt"
        data = None

    monkeypatch.setattr("clipworks.training.run.run_training", lambda cfg, progress: seen.append(cfg) or Result())
    file = write(tmp_path / "run.toml", 'model = "RN50"\nsteps = 9\nlock_image = true\n')
    assert cli.main(["train", "--config", str(file), "--recipe", "paper", "--steps", "3", "--no-lock-image"]) == 0
    cfg = seen[0]
    assert (cfg.model, cfg.steps, cfg.lock_image, cfg.lr, cfg.beta2) == ("RN50", 3, False, 5e-4, 0.999)


def test_cli_reports_a_bad_config_file_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    file = write(tmp_path / "run.toml", "bogus = 1\n")
    assert cli.main(["train", "--config", str(file)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("clipworks train: error:") and "unknown key bogus" in err and len(err.splitlines()) == 1
    assert cli.main(["train", "--recipe", "paper", "--model", "RN-Tiny"]) == 2
    assert "the paper trained no RN-Tiny" in capsys.readouterr().err


def train_help(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> dict[str, str]:
    """`clipworks train --help` as {first option of each entry: its help text with whitespace collapsed}."""
    monkeypatch.setenv("COLUMNS", "1000")  # one line per help text: no wrapping inside words like "ViT-Tiny"
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["train", "--help"])
    options = capsys.readouterr().out.split("options:\n", 1)[1]
    entries = re.split(r"\n(?=  -)", options.strip("\n"))  # an entry starts at a line "  --flag ..."
    found = {}
    for entry in entries:
        # Two or more spaces (or a line break, after a long flag list) part the flags from the help text.
        flags, text = re.split(r"\s{2,}", entry.strip(), maxsplit=1)
        found[flags.split(",")[0].split()[0]] = " ".join(text.split())
    return found


def test_every_train_flag_shows_its_field_documentation_and_default(monkeypatch: pytest.MonkeyPatch,
                                                                     capsys: pytest.CaptureFixture) -> None:
    found = train_help(monkeypatch, capsys)
    fields = dataclasses.fields(TrainConfig)
    assert set(found) == {"--" + f.name.replace("_", "-") for f in fields} | {"-h", "--config", "--recipe", "--quiet"}
    for f in fields:
        doc = f.metadata["help"]
        assert len(doc) > 5, f.name  # every field is documented
        assert f"{doc} (default: {f.default})" == found["--" + f.name.replace("_", "-")], f.name
    # Spelled out for a few, so the test does not only compare the reader with itself.
    assert found["--lock-image"] == ("LiT (Zhai et al. 2022): freeze the image tower (eval mode, not optimized) "
                                     "(default: False)")
    assert found["--model"].endswith("(default: ViT-Tiny)") and found["--lr"].endswith("(default: 0.0005)")
    assert found["--resume"].startswith("'latest' (this output dir's newest checkpoint; with none yet, the run starts "
                                      "at step 0")
    assert found["--resume"].endswith("(default: None)")


def test_flags_the_user_did_not_type_are_absent_from_the_namespace() -> None:
    given = vars(cli.build_parser().parse_args(["train", "--steps", "3", "--no-tensorboard", "--precision", "fp32"]))
    assert {k: v for k, v in given.items() if k not in ("func", "command", "config", "recipe", "quiet")} == {
        "steps": 3, "tensorboard": False, "precision": "fp32"}


# The type each key of a config file must have, written out rather than read from the annotations.
EXPECTED = {f.name: type(f.default).__name__ for f in dataclasses.fields(TrainConfig) if f.default is not None}
EXPECTED.update(init="str", val_data="str", samples_per_epoch="int", resume="str", zeroshot_data="str",
                zeroshot_root="str", precision="one of 'auto', 'fp32', 'bf16', 'fp16'")


@pytest.mark.parametrize("key", [f.name for f in dataclasses.fields(TrainConfig)])
def test_every_config_key_rejects_a_wrong_type_naming_the_key_and_the_type(tmp_path: Path, key: str) -> None:
    path = write(tmp_path / "run.json", json.dumps({key: [1]}))  # a list fits no setting
    with pytest.raises(ConfigError) as e:
        load_config_file(path)
    assert str(e.value) == f"{path}: {key} must be {EXPECTED[key]}, got [1] (list)"


def test_flags_are_typed_as_config_file_keys_are() -> None:
    parser = cli.build_parser()
    for flag, value in [("--steps", "2.5"), ("--lr", "fast"), ("--precision", "fp8"), ("--world-seed", "x")]:
        with pytest.raises(SystemExit):
            parser.parse_args(["train", flag, value])
    args = parser.parse_args(["train", "--lr", "1", "--samples-per-epoch", "100", "--init", "ckpt"])
    assert (args.lr, args.samples_per_epoch, args.init) == (1.0, 100, "ckpt")
    assert isinstance(args.lr, float)


@pytest.mark.parametrize("make", [
    lambda: TrainConfig(lr=0.0).validate(),
    lambda: TrainConfig(batch_size=6, micro_batches=4).validate(),
    lambda: TrainConfig(resampled=True).validate(),
    lambda: recipe("fast", "ViT-B-32"),
    lambda: paper_recipe("ViT-Tiny"),
])
def test_bad_settings_are_config_errors(make) -> None:
    with pytest.raises(ConfigError):
        make()
