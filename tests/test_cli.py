"""End to end through the `clipworks` command line: train on the world, reload, zero-shot; bad input gives one line."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from clipworks import cli
from clipworks.data.world import World, WorldConfig
from clipworks.io.checkpoints import load, load_training_state


@pytest.fixture
def trained_run(tiny_run: Path) -> Path:
    return tiny_run


@pytest.mark.parametrize("n, samples, images", [(1, "sample or shard", "one"), (2, "samples or shards", "ones")])
def test_train_last_lines_count_skipped_images_in_words(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                        monkeypatch: pytest.MonkeyPatch, n: int, samples: str,
                                                        images: str) -> None:
    from clipworks.training import run
    from clipworks.training.loop import TrainResult

    data = {"streamed": True, "skipped": n, "val": {"samples": 5, "skipped": n}, "zeroshot": {"samples": 23,
                                                                                             "skipped": n}}
    monkeypatch.setattr(run, "run_training", lambda cfg, progress: TrainResult(
        model=None, checkpoint=tmp_path / "checkpoint", history=[], evals=[], data=data))
    assert cli.main(["train", "--output-dir", str(tmp_path / "r"), "--quiet"]) == 0
    listed = f"(listed in {tmp_path / 'r'}/log.jsonl)"
    assert capsys.readouterr().out.splitlines() == [
        f"trained on the shards; {n} unusable {samples} skipped {listed}",
        f"validated on 5 images; {n} unreadable {images} skipped {listed}",
        f"zero-shot evaluated on 23 images; {n} unreadable {images} skipped {listed}",
        f"checkpoint: {tmp_path / 'checkpoint'}"]


def test_train_lowers_the_loss_and_writes_checkpoints(trained_run: Path) -> None:
    records = [json.loads(line) for line in (trained_run / "log.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if "loss" in r]
    assert len(losses) == 40
    assert sum(losses[-5:]) / 5 < 0.5 * sum(losses[:5]) / 5  # 64 pairs, 2 batches: it must memorise them
    assert (trained_run / "checkpoints" / "latest").read_text() == "step_0000040"
    assert sorted(p.name for p in (trained_run / "checkpoints").glob("step_*")) == ["step_0000020", "step_0000040"]
    state = load_training_state(trained_run)
    assert state["step"] == 40 and "optimizer" in state
    config = json.loads((trained_run / "config.json").read_text())
    assert config["model"] == "RN-Tiny" and config["steps"] == 40


def test_checkpoint_reloads_to_identical_outputs(trained_run: Path) -> None:
    model, preprocess = load(trained_run)  # a run directory resolves to its latest checkpoint
    again, _ = load(trained_run / "checkpoints" / "step_0000040" / "model.safetensors")
    sample = World(WorldConfig(image_size=64)).sample("val", 0)
    image = preprocess(sample.image).unsqueeze(0)
    text = torch.tensor([[49406, 320, 736, 2972, 49407] + [0] * 27])
    with torch.no_grad():
        assert torch.equal(model.encode_image(image), again.encode_image(image))
        assert torch.equal(model.encode_text(text), again.encode_text(text))
    assert image.shape == (1, 3, 64, 64)


def test_zeroshot_labels_images_and_scores_a_labelled_folder(trained_run: Path, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture) -> None:
    out = World(WorldConfig()).export("val", 12, tmp_path / "world", task="colour", class_folders=True)
    classes = ",".join(sorted(p.name for p in (out / "colour").iterdir()))
    assert cli.main(["zeroshot", "--checkpoint", str(trained_run), "--data", str(out / "colour"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["n_images"] == 12 and 0.0 <= report["accuracy"]["top1"] <= report["accuracy"]["top5"] <= 1.0
    image = next((out / "colour").rglob("*.png"))
    assert cli.main(["zeroshot", "--checkpoint", str(trained_run), "--classes", classes, "--top", "2",
                     str(image)]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"{image}: ") and line.count(",") == 1  # two labels with probabilities


def test_both_zeroshot_commands_are_one_computation(trained_run: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture) -> None:
    out = World(WorldConfig()).export("val", 16, tmp_path / "world", task="shape", class_folders=True)
    templates = tmp_path / "templates.txt"
    templates.write_text("a photo of a {}.\na drawing of a {}.\n")
    assert cli.main(["zeroshot", "--checkpoint", str(trained_run), "--data", str(out / "shape"), "--json",
                     "--precision", "fp32", "--template", "a photo of a {}.", "--template", "a drawing of a {}."]) == 0
    quick = json.loads(capsys.readouterr().out)
    assert cli.main(["eval", "zeroshot", "--checkpoint", str(trained_run), "--data", str(out / "shape"), "--out",
                     str(tmp_path / "eval"), "--device", "cpu", "--precision", "fp32", "--templates", str(templates),
                     "--quiet"]) == 0
    full = json.loads((tmp_path / "eval" / "zeroshot.json").read_text())
    assert quick["main"] == full["main"] == "ensemble of 2"
    assert quick["prompts"] == full["prompts"]  # the same accuracies, recalls and confusion matrices
    assert quick["accuracy"] == {k: full["prompts"]["ensemble of 2"][k] for k in ("top1", "top5")}
    assert not (tmp_path / "world" / "cache").exists()  # the quick command writes nothing


def test_importing_clipworks_leaves_global_state_alone() -> None:
    code = ("import matplotlib; matplotlib.use('svg'); import clipworks, clipworks.cli, clipworks.demo, "
            "clipworks.evaluation.report; print(matplotlib.get_backend())")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "svg"


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "clipworks.cli", *args], capture_output=True, text=True)


@pytest.mark.parametrize("args, message", [
    (["train", "--model", "ViT-B-23"], "unknown model 'ViT-B-23'. Did you mean"),
    (["train", "--no-such-flag", "1"], "unrecognized arguments: --no-such-flag"),
    (["train", "--batch-size", "1"], "--batch-size must be at least 2"),
    (["train", "--data", "missing.csv"], "data file missing.csv does not exist"),
    (["zeroshot", "--checkpoint", "nowhere", "x.png", "--classes", "a,b"], "nowhere: no such file or directory"),
    (["train", "--steps", "0"], "--steps must be at least 1, got 0"),
    (["train", "--config", "run.yaml"], "run.yaml does not exist"),
    (["world", "--out", "w", "--n", "-5"], "--n must be at least 1, got -5"),
    (["eval", "report", "--checkpoint", "x", "--n-test", "0"], "--n-test must be at least 1, got 0"),
])
def test_bad_input_is_one_clear_line(args: list[str], message: str, capsys: pytest.CaptureFixture) -> None:
    code, err = run_in_process(args, capsys)  # an exception escaping main would fail the test with its traceback
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1


def test_a_real_process_prints_one_line_and_no_traceback() -> None:
    result = run_cli("train", "--model", "ViT-B-23")
    assert result.returncode == 2 and "unknown model 'ViT-B-23'. Did you mean" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def run_in_process(args: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str]:
    """`clipworks ARGS` in this process: (exit code, stderr). Argparse's own errors exit through SystemExit."""
    try:
        code = cli.main(args)
    except SystemExit as e:
        code = e.code
    return code, capsys.readouterr().err


def test_a_bug_keeps_its_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    # Only the project's own error types (and a missing file) are the user's input; anything else is a bug.
    def broken(args: object) -> None:
        raise TypeError("unsupported operand type(s)")

    monkeypatch.setattr("clipworks.cli.model._cmd_models", broken)
    with pytest.raises(TypeError, match="unsupported operand"):
        cli.main(["models"])


def test_convert_with_an_impossible_size_is_one_line(trained_run: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture) -> None:
    code, err = run_in_process(["convert", str(trained_run), str(tmp_path / "out"), "--to", "native",
                                "--image-size", "50"], capsys)
    assert code == 2 and "--image-size 50 does not fit" in err and "divisible by 32" in err
    code, err = run_in_process(["convert", str(trained_run), str(tmp_path / "out"), "--to", "native",
                                "--context-length", "1"], capsys)
    assert code == 2 and "a context length at least 2" in err
    assert not (tmp_path / "out").exists()


def test_zeroshot_on_a_non_image_file_is_one_line(trained_run: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture) -> None:
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    code, err = run_in_process(["zeroshot", "--checkpoint", str(trained_run), "--classes", "a,b", str(bad)], capsys)
    assert code == 2 and "is not a readable image" in err.strip().splitlines()[-1]


def test_models_lists_the_registry_with_parameter_counts(capsys: pytest.CaptureFixture) -> None:
    assert cli.main(["models"]) == 0
    out = capsys.readouterr().out
    assert "ViT-B-32" in out and "151,277,313" in out and "RN50x64" in out


def test_train_on_a_csv_skips_and_counts_corrupt_images(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = World(WorldConfig()).export("train", 24, tmp_path / "set")
    images = sorted((out / "images").glob("*.png"))
    images[0].write_bytes(images[0].read_bytes()[:100])  # truncated PNG
    images[1].write_text("not an image")
    code = cli.main(["train", "--data", str(out / "captions.csv"), "--model", "RN-Tiny", "--steps", "2",
                     "--batch-size", "8", "--workers", "0", "--eval-every", "0", "--output-dir", str(tmp_path / "r"),
                     "--quiet"])
    assert code == 0
    out_text = capsys.readouterr().out
    assert "skipped 2 unreadable images of 24" in out_text
    assert f"trained on 22 images; 2 unreadable ones skipped (listed in {tmp_path / 'r'}/log.jsonl)" in out_text
    step = tmp_path / "r" / "checkpoints" / "step_0000002"
    assert (step / "model.safetensors").is_file()
    assert oct(step.stat().st_mode & 0o777) == "0o755" and oct((step / "config.json").stat().st_mode & 0o777) == "0o644"
    records = [json.loads(line) for line in (tmp_path / "r" / "log.jsonl").read_text().splitlines()]
    data = records[0]["data"]  # the first record: what the data source found
    assert (data["samples"], data["skipped"]) == (22, 2)
    assert sorted(Path(p).name for p in data["skipped_images"]) == sorted(p.name for p in images[:2])


def test_train_on_a_mostly_corrupt_csv_stops_with_a_clear_error(tmp_path: Path) -> None:
    out = World(WorldConfig()).export("train", 6, tmp_path / "set")
    for image in sorted((out / "images").glob("*.png"))[:4]:
        image.write_text("garbage")
    result = run_cli("train", "--data", str(out / "captions.csv"), "--steps", "2", "--batch-size", "2",
                     "--output-dir", str(tmp_path / "r"))
    assert result.returncode == 2
    assert "4 of 6 images from" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "r" / "checkpoints").exists()


def test_resume_on_the_world_continues_bit_identically(tmp_path: Path) -> None:
    common = ["train", "--model", "RN-Tiny", "--batch-size", "8", "--world-samples", "24", "--warmup-steps", "2",
              "--eval-every", "0", "--quiet"]
    assert cli.main([*common, "--steps", "6", "--output-dir", str(tmp_path / "straight")]) == 0
    # The interrupted run stops after 4 steps (3 batches an epoch: it crosses an epoch boundary), then resumes.
    assert cli.main([*common, "--steps", "6", "--save-every", "4", "--output-dir", str(tmp_path / "resumed")]) == 0
    checkpoints = tmp_path / "resumed" / "checkpoints"
    shutil.rmtree(checkpoints / "step_0000006")  # as if killed between the saves at steps 4 and 6
    (checkpoints / "latest").write_text("step_0000004")
    assert cli.main([*common, "--steps", "6", "--output-dir", str(tmp_path / "resumed"), "--resume", "latest"]) == 0
    a, _ = load(tmp_path / "straight")
    b, _ = load(tmp_path / "resumed")
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(x, y), name


def test_resume_latest_without_a_checkpoint_starts_from_step_0(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    # A restartable job passes --resume latest from its first start on.
    with pytest.raises(SystemExit):
        cli.main(["train", "--help"])
    assert "with none yet, the run starts at step 0" in " ".join(capsys.readouterr().out.split())
    run = tmp_path / "r"
    assert cli.main(["train", "--model", "RN-Tiny", "--steps", "1", "--batch-size", "4", "--world-samples", "8",
                     "--eval-every", "0", "--no-tensorboard", "--quiet", "--output-dir", str(run), "--resume",
                     "latest"]) == 0
    assert f"--resume: no checkpoint in {run / 'checkpoints'} yet; starting from step 0\n" in capsys.readouterr().out
    assert (run / "checkpoints" / "latest").read_text() == "step_0000001"


def test_a_fresh_run_refuses_to_overwrite_earlier_checkpoints(trained_run: Path) -> None:
    result = run_cli("train", "--model", "RN-Tiny", "--steps", "1", "--output-dir", str(trained_run))
    assert result.returncode == 2 and "already holds checkpoints" in result.stderr and "--resume" in result.stderr
    assert (trained_run / "checkpoints" / "latest").read_text() == "step_0000040"


@pytest.mark.parametrize("workers", ["0", "2"])
def test_resume_on_a_csv_continues_bit_identically(workers: str, tmp_path: Path) -> None:
    data = World(WorldConfig()).export("train", 24, tmp_path / "set") / "captions.csv"
    common = ["train", "--data", str(data), "--model", "RN-Tiny", "--batch-size", "8", "--warmup-steps", "2",
              "--workers", workers, "--eval-every", "0", "--quiet", "--steps", "5"]
    assert cli.main([*common, "--output-dir", str(tmp_path / "straight")]) == 0
    # Interrupted after step 4 (an epoch is 3 batches, so the resumed run starts inside the second epoch).
    assert cli.main([*common, "--save-every", "4", "--output-dir", str(tmp_path / "resumed")]) == 0
    checkpoints = tmp_path / "resumed" / "checkpoints"
    shutil.rmtree(checkpoints / "step_0000005")
    (checkpoints / "latest").write_text("step_0000004")
    assert cli.main([*common, "--output-dir", str(tmp_path / "resumed"), "--resume", "latest"]) == 0
    a, _ = load(tmp_path / "straight")
    b, _ = load(tmp_path / "resumed")
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(x, y), name
