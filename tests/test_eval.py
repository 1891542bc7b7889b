"""`clipworks eval`: linear probes on synthetic features, then every eval command end to end on generated files."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from clipworks import cli
from clipworks.data.world import World, WorldConfig
from clipworks.evaluation import linear_probe as lp


# ---------------------------------------------------------------- linear probe on synthetic features
def _clusters(n_per_class: int, seed: int, *, n_classes: int = 3, dim: int = 8, spread: float = 1.0
              ) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    means = np.eye(n_classes, dim) * 4.0
    x = np.concatenate([means[c] + spread * rng.normal(size=(n_per_class, dim)) for c in range(n_classes)])
    return x, np.repeat(np.arange(n_classes), n_per_class)


def test_probe_separates_gaussian_clusters() -> None:
    train_x, train_y = _clusters(40, seed=0)
    test_x, test_y = _clusters(40, seed=1)
    r = lp.probe(train_x, train_y, test_x, test_y)
    assert r.test_accuracy > 0.9  # chance is 1/3
    assert 1e-6 <= r.c <= 1e6 and r.sweep[r.c] == r.val_accuracy
    assert len(r.sweep) >= 7 + 4  # the 7 starting points and at least one refinement per halving


def test_probe_chooses_c_on_the_validation_split_never_the_test_set(monkeypatch: pytest.MonkeyPatch) -> None:
    train_x, train_y = _clusters(30, seed=2, spread=2.5)
    test_x, test_y = _clusters(30, seed=3, spread=2.5)
    scored = []
    real_accuracy = lp.accuracy
    monkeypatch.setattr(lp, "accuracy", lambda model, x, y: scored.append(x) or real_accuracy(model, x, y))
    r = lp.probe(train_x, train_y, test_x, test_y)
    assert sum(x is test_x for x in scored) == 1 and scored[-1] is test_x  # scored once, after the choice
    # With the test labels scrambled (so the test-optimal C changes), the chosen C does not move.
    scrambled = np.random.default_rng(0).permutation(test_y)
    assert lp.probe(train_x, train_y, test_x, scrambled).c == r.c


def test_select_c_returns_the_validation_argmax_preferring_stronger_regularisation() -> None:
    train_x, train_y = _clusters(20, seed=4, spread=3.0)
    c, sweep = lp.select_c(train_x, train_y, *_clusters(20, seed=5, spread=3.0))
    best = max(sweep.values())
    assert sweep[c] == best and c == min(k for k, v in sweep.items() if v == best)
    # The refinement ends at 8 steps per decade around the winner.
    neighbours = sorted(k for k in sweep if abs(np.log10(k) - np.log10(c)) < 0.2)
    assert any(abs(np.log10(k) - np.log10(c)) == pytest.approx(1 / 8) for k in neighbours)


def test_few_shot_draws_k_per_class_and_averages_seeds() -> None:
    labels = np.repeat(np.arange(4), 10)
    idx = lp.few_shot_indices(labels, 3, seed=0)
    assert np.bincount(labels[idx]).tolist() == [3, 3, 3, 3]
    assert not np.array_equal(idx, lp.few_shot_indices(labels, 3, seed=1))
    with pytest.raises(ValueError, match="fewer than --shots 11"):
        lp.few_shot_indices(labels, 11, seed=0)
    train_x, train_y = _clusters(30, seed=7)
    test_x, test_y = _clusters(30, seed=8)
    r = lp.few_shot_probe(train_x, train_y, test_x, test_y, k=2, seeds=3)
    assert len(r["accuracies"]) == 3 and r["mean"] == pytest.approx(np.mean(r["accuracies"])) and r["mean"] > 0.6


def test_shots_matching_interpolates_on_a_log_scale() -> None:
    curve = {1: 0.4, 2: 0.5, 4: 0.7, 8: 0.9}
    assert lp.shots_matching(0.6, curve) == pytest.approx(2 ** 1.5)  # halfway between 2 and 4 in log k
    assert lp.shots_matching(0.3, curve) == 1.0
    assert lp.shots_matching(0.95, curve) is None


# ---------------------------------------------------------------- end to end on generated files
@pytest.fixture
def checkpoint(tiny_run: Path) -> str:
    return str(tiny_run)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """World exports: shape folders for train/val, flat and outline styles of the same val scenes."""
    root = tmp_path_factory.mktemp("world")
    World().export("train", 90, root / "train", task="shape", class_folders=True)
    World().export("val", 48, root / "val", task="shape", class_folders=True)
    World(WorldConfig(style="outline")).export("val", 48, root / "outline", task="shape", class_folders=True)
    return root


def _eval(*args: str) -> int:
    return cli.main(["eval", *args, "--quiet"])


def test_eval_zeroshot_folder_and_csv_agree_and_features_are_cached(checkpoint: str, files: Path, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "zs"
    assert _eval("zeroshot", "--checkpoint", checkpoint, "--data", str(files / "val" / "shape"),
                 "--templates", "imagenet7", "--out", str(out)) == 0
    r = json.loads((out / "zeroshot.json").read_text())
    assert r["n_images"] == 48 and r["classes"] == sorted(r["classes"]) and len(r["classes"]) == 6
    assert set(r["prompts"]) == {"single prompt", "ensemble of 7"} and r["main"] == "ensemble of 7"
    for m in r["prompts"].values():
        cm = np.array(m["confusion_matrix"])
        assert cm.shape == (6, 6) and cm.sum() == 48
        assert m["top1"] == pytest.approx(np.trace(cm) / 48) and 0 <= m["top1"] <= m["top5"] <= 1
    md = (out / "zeroshot.md").read_text()
    assert "| single prompt |" in md and "Confusion matrix" in md
    from clipworks.evaluation.commands import _zeroshot_markdown
    for n, words in ((1, "1 unreadable image skipped."), (2, "2 unreadable images skipped.")):
        assert words in _zeroshot_markdown({**r, "n_skipped": n})
    assert len(list((out / "cache").glob("*.npz"))) == 1
    # A second evaluation of the same images reads the features from the cache.
    from clipworks.models.clip import CLIP
    with monkeypatch.context() as m:
        m.setattr(CLIP, "encode_image", lambda *a, **k: (_ for _ in ()).throw(AssertionError("not cached")))
        assert _eval("zeroshot", "--checkpoint", checkpoint, "--data", str(files / "val" / "shape"),
                     "--templates", "default", "--out", str(out)) == 0
    assert list(json.loads((out / "zeroshot.json").read_text())["prompts"]) == ["single prompt"]
    # The labels CSV lists the same files (in another order): the same images, the same accuracy.
    assert _eval("zeroshot", "--checkpoint", checkpoint, "--data", str(files / "val" / "labels.csv"),
                 "--templates", "imagenet7", "--out", str(tmp_path / "csv")) == 0
    again = json.loads((tmp_path / "csv" / "zeroshot.json").read_text())
    for name, m in r["prompts"].items():
        assert again["prompts"][name]["top1"] == pytest.approx(m["top1"], abs=1.5 / 48)


def test_eval_zeroshot_rejects_class_names_that_do_not_match_the_folders(checkpoint: str, files: Path,
                                                                         tmp_path: Path,
                                                                         capsys: pytest.CaptureFixture) -> None:
    names = tmp_path / "names.txt"
    names.write_text("circle\nsquare\nblob\n")
    assert _eval("zeroshot", "--checkpoint", checkpoint, "--data", str(files / "val" / "shape"), "--classes-file",
                 str(names), "--out", str(tmp_path)) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert len(errors) == 1 and errors[0].startswith("clipworks eval: error: the class names (3) do not match")
    assert "do not match the 6 class folders" in errors[0] and "folders without a name" in errors[0]
    assert _eval("zeroshot", "--checkpoint", checkpoint, "--data", str(tmp_path / "nowhere"),
                 "--out", str(tmp_path)) == 2
    assert "does not exist" in capsys.readouterr().err


def test_eval_linear_probe_and_few_shot(checkpoint: str, files: Path, tmp_path: Path,
                                        capsys: pytest.CaptureFixture) -> None:
    args = ["--checkpoint", checkpoint, "--train", str(files / "train" / "shape"), "--test",
            str(files / "val" / "shape"), "--out", str(tmp_path)]
    assert _eval("linear-probe", *args) == 0
    r = json.loads((tmp_path / "linear_probe.json").read_text())
    assert r["n_train"] == 90 and r["n_test"] == 48 and 0 <= r["top1"] <= 1 and f"{r['c']:.6g}" in r["sweep"]
    assert "linear probe: top-1" in capsys.readouterr().out
    assert _eval("linear-probe", *args, "--shots", "2", "--seeds", "2") == 0
    r = json.loads((tmp_path / "linear_probe.json").read_text())["few_shot"]
    assert r["k"] == 2 and len(r["accuracies"]) == 2 and r["std"] >= 0
    assert "2-shot linear probe (2 seeds)" in capsys.readouterr().out


def test_eval_retrieval_counts_several_captions_per_image(checkpoint: str, files: Path, tmp_path: Path) -> None:
    rows = list(csv.reader((files / "val" / "captions.csv").open()))[1:13]
    data = tmp_path / "captions.csv"
    with data.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["filepath", "caption"])
        for path, caption in rows:
            w.writerow([str(files / "val" / path), caption])
            w.writerow([str(files / "val" / path), "a photo of " + caption])
        (tmp_path / "broken.png").write_text("not an image")  # skipped, and its captions with it
        w.writerows([[str(tmp_path / "broken.png"), "a red star"], [str(tmp_path / "broken.png"), "a blue heart"]])
    assert _eval("retrieval", "--checkpoint", checkpoint, "--data", str(data), "--out", str(tmp_path / "r")) == 0
    r = json.loads((tmp_path / "r" / "retrieval.json").read_text())
    assert r["n_images"] == 12 and r["n_captions"] == 24 and r["n_skipped"] == 1
    for d in ("image_to_text", "text_to_image"):
        assert 0 <= r[f"{d}_R@1"] <= r[f"{d}_R@5"] <= r[f"{d}_R@10"] <= 1
    assert "| image -> text |" in (tmp_path / "r" / "retrieval.md").read_text()


def test_eval_robustness_table_across_styles(checkpoint: str, files: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture) -> None:
    assert _eval("robustness", "--checkpoint", checkpoint, "--data", f"flat={files / 'val' / 'shape'}",
                 "--data", f"outline={files / 'outline' / 'shape'}", "--probe-train",
                 str(files / "train" / "shape"), "--out", str(tmp_path)) == 0
    r = json.loads((tmp_path / "robustness.json").read_text())
    assert list(r["datasets"]) == ["flat", "outline"]
    assert all(0 <= d["zeroshot_top1"] <= 1 and 0 <= d["linear_probe_top1"] <= 1 for d in r["datasets"].values())
    assert "| outline | 48 |" in (tmp_path / "robustness.md").read_text()
    assert _eval("robustness", "--checkpoint", checkpoint, "--data", "flat", "--out", str(tmp_path)) == 2
    assert "expected NAME=DIR" in capsys.readouterr().err


def test_eval_report_on_the_world(checkpoint: str, tmp_path: Path) -> None:
    from clipworks.evaluation.report import run_report

    r = run_report(checkpoint, out=tmp_path, n_train=120, n_test=60, seeds=2, shots=(1, 2), progress=False)
    assert set(r["prompt_ensembling"]) == {"shape", "colour", "combination"}
    assert set(r["few_shot"]["shape"]["k_shot"]) == {"1", "2"}
    assert set(r["robustness"]) == {"flat", "outline", "texture", "noise", "unseen-background"}
    for name in ("report.md", "report.json", "fewshot.png", "robustness.png"):
        assert (tmp_path / name).stat().st_size > 0
    assert (tmp_path / "fewshot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (tmp_path / "report.md").read_text()
    assert "Prompt ensembling" in md and "| unseen-background |" in md


def test_class_names_label_folders_by_name_or_by_sorted_position(tmp_path: Path) -> None:
    from clipworks.data.datasets import open_labelled
    from clipworks.errors import DataError

    for folder in ("n02", "n01"):
        (tmp_path / folder).mkdir()
        World().sample("val", 0).image.save(tmp_path / folder / "a.png")
    transform = lambda image: image  # noqa: E731
    assert open_labelled(tmp_path, transform).classes == ["n01", "n02"]
    assert open_labelled(tmp_path, transform, ["n02", "n01"]).classes == ["n01", "n02"]  # same names: by name
    assert open_labelled(tmp_path, transform, ["tench", "goldfish"]).classes == ["tench", "goldfish"]  # by position
    with pytest.raises(DataError, match="do not match the 2 class folders"):
        open_labelled(tmp_path, transform, ["tench"])
    with pytest.raises(DataError, match="folders without a name: n02"):
        open_labelled(tmp_path, transform, ["n01", "goldfish"])


def test_eval_precision_is_part_of_the_feature_cache_key(checkpoint: str, files: Path, tmp_path: Path) -> None:
    results = {}
    for precision in ("fp32", "bf16"):
        assert _eval("zeroshot", "--checkpoint", checkpoint, "--data", str(files / "val" / "shape"), "--precision",
                     precision, "--out", str(tmp_path / precision), "--cache-dir", str(tmp_path / "cache")) == 0
        results[precision] = json.loads((tmp_path / precision / "zeroshot.json").read_text())
    assert len(list((tmp_path / "cache").glob("img-*.npz"))) == 2  # bf16 features never stand in for fp32 ones
    assert results["bf16"]["prompts"]["single prompt"]["top1"] == pytest.approx(
        results["fp32"]["prompts"]["single prompt"]["top1"], abs=2 / 48)
