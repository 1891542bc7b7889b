"""Typed config files, the paper's recipes, and their precedence: defaults < recipe < config file < flags."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clipworks import cli
from clipworks.training.config import load_config_file, resolve_train_config
from clipworks.training.loop import TrainConfig
from clipworks.training.recipes import paper_recipe


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
