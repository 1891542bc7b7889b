"""`clipworks benchmark` (cells, resume, missing datasets, merged tables, the shared feature cache), zero-shot among a
superset of classes, zero-shot monitoring while training, and WiSE-FT interpolation.

The readers (data/benchmarks) and specs (evaluation/specs) are replaced by small fakes on the built-in world, so
these tests exercise the command itself, whatever datasets are registered.
"""

import csv
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from clipworks import cli
from clipworks.data.datasets import LabelledImages, open_labelled, resolve_path
from clipworks.data.world import World
from clipworks.errors import ConfigError, DataError
from clipworks.evaluation import benchmark
from clipworks.evaluation.prompts import CIFAR_TEMPLATES
from clipworks.evaluation.specs import BenchmarkSpec
from clipworks.evaluation.zeroshot import topk_accuracy

TEMPLATES = ("a photo of a {} shape.", "a {} thing.")


@pytest.fixture(scope="module")
def world_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ROOT/colours/{train,test}/colour/<colour>/*.png and ROOT/captions/ (captions.csv): two fake datasets."""
    root = tmp_path_factory.mktemp("bench")
    World().export("train", 48, root / "colours" / "train", task="colour", class_folders=True)
    World().export("val", 24, root / "colours" / "test", task="colour", class_folders=True)
    World().export("val", 20, root / "captions", task="colour")
    return root


class _Captioned(LabelledImages):
    """What R1's CaptionedImages is to the command: paths, captions per image, labels = range(N)."""

    def __init__(self, paths: list[Path], captions: list[list[str]]) -> None:
        super().__init__(paths, list(range(len(paths))), [], transform=None, source="fake")
        self.captions = captions


def _read_colours(root: Path, split: str) -> LabelledImages:
    """Labels in the spec's order of all colours, as a real reader gives them (a colour may have no image)."""
    return open_labelled(root / split / "colour", None, COLOURS)  # FileNotFoundError when absent


def _read_captions(root: Path, split: str) -> _Captioned:
    with open(root / "captions.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    by_image: dict[str, list[str]] = {}
    for row in rows:
        by_image.setdefault(row["filepath"], []).append(row["caption"])
    return _Captioned([resolve_path(p, root) for p in by_image], list(by_image.values()))


def _open(name: str, root: str | Path, split: str = "test"):
    readers = {"colours": _read_colours, "absent": _read_colours, "captions": _read_captions,
               "shifted": lambda root, split: _read_colours(root.parent / "colours", split)}
    if not Path(root).is_dir():
        raise FileNotFoundError(f"{name}: expected the folder {root}")
    return readers[name](Path(root), split)


def _metric(spec: BenchmarkSpec, logits: torch.Tensor, labels: torch.Tensor) -> dict:
    acc = topk_accuracy(logits, labels, ks=(1, 5))
    return {"score": acc["top1"], **acc}


COLOURS = tuple(sorted(World().colours))
SPECS = {
    "colours": BenchmarkSpec("colours", "classification", COLOURS, TEMPLATES, "accuracy", {"ViT-B-32": 91.3},
                             paper_probe={"ViT-B-32": 88.8}),
    "absent": BenchmarkSpec("absent", "classification", COLOURS, TEMPLATES, "accuracy", {}),
    "captions": BenchmarkSpec("captions", "retrieval", (), (), "recall", {}, paper_recalls={
        "ViT-B-32": {"image_to_text_R@1": 88.0, "text_to_image_R@1": 68.7, "text_to_image_R@5": 90.6}}),
    "shifted": BenchmarkSpec("shifted", "classification", COLOURS, TEMPLATES, "accuracy", {}, classes_from="colours"),
}


@pytest.fixture(autouse=True)
def fakes(monkeypatch: pytest.MonkeyPatch) -> None:
    from clipworks.data import benchmarks as readers
    from clipworks.evaluation import specs

    for module in (benchmark, readers):
        monkeypatch.setattr(module, "open_benchmark", _open)
    for module in (benchmark, specs):
        monkeypatch.setattr(module, "SPECS", SPECS)
        monkeypatch.setattr(module, "COLLECTIONS", {"fakes": ("colours", "absent", "captions")})
    monkeypatch.setattr(benchmark, "spec", SPECS.__getitem__)
    monkeypatch.setattr(specs, "spec", SPECS.__getitem__)
    monkeypatch.setattr(benchmark, "benchmark_metric", _metric)


def _bench(*args: str) -> int:
    return cli.main(["benchmark", *args, "--quiet", "--precision", "fp32", "--batch-size", "16"])


def test_benchmark_writes_cells_and_table_reports_missing_and_resumes(tiny_run: Path, world_root: Path,
                                                                      tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture) -> None:
    from clipworks.evaluation.commands import run_zeroshot

    out = tmp_path / "bench"
    assert _bench("--checkpoint", str(tiny_run), "--datasets", "fakes", "--root", str(world_root),
                  "--out", str(out)) == 2  # "absent" has no folder under the root
    captured = capsys.readouterr()
    errors = [line for line in captured.err.splitlines() if "error" in line]
    assert errors == [f"clipworks benchmark: error: 1 of 3 cells missing ({benchmark.model_label(tiny_run)} absent); "
                      f"the reasons are above and in {out}/table.md"]
    assert f"absent zeroshot: missing: absent: expected the folder {world_root / 'absent'}" in captured.out
    assert "captions zeroshot: not applicable: a retrieval dataset" in captured.out

    label = benchmark.model_label(tiny_run)
    cell = json.loads((out / "cells" / label / "colours" / "zeroshot.json").read_text())
    assert not (out / "cells" / label / "absent").exists() and not (out / "cells" / label / "captions").exists()
    # The same number as `clipworks eval zeroshot` on the same folder, names and templates.
    direct = run_zeroshot(str(tiny_run), str(world_root / "colours" / "test" / "colour"), classnames=list(COLOURS),
                          templates=list(TEMPLATES), precision="fp32", progress=False)
    assert cell["n_images"] == 24 and cell["metric"] == "accuracy" and cell["paper"] is None
    assert cell["metrics"]["top1"] == pytest.approx(direct["accuracy"]["top1"], abs=1e-9)
    assert cell["columns"] == {"colours": cell["metrics"]["score"]}

    md = (out / "table.md").read_text()
    assert f"| {label} | {100 * cell['metrics']['score']:.1f} |" in md
    assert "## Not evaluated in the last run" in md and "absent zeroshot: absent: expected the folder" in md
    rows = list(csv.DictReader((out / "table.csv").open()))
    assert rows == [{"task": "zeroshot", "model": label, "source": "clipworks",
                     "colours": str(round(100 * cell["metrics"]["score"], 4))}]

    # Resumed: the done cell is not recomputed (its file untouched), and says so.
    mtime = (out / "cells" / label / "colours" / "zeroshot.json").stat().st_mtime_ns
    assert _bench("--checkpoint", str(tiny_run), "--datasets", "colours", "--root", str(world_root),
                  "--out", str(out)) == 0
    assert "colours zeroshot: already done" in capsys.readouterr().out
    assert (out / "cells" / label / "colours" / "zeroshot.json").stat().st_mtime_ns == mtime


def test_each_dataset_read_shows_its_progress_bar_unless_quiet(tiny_run: Path, world_root: Path, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture) -> None:
    label = benchmark.model_label(tiny_run)
    mine = world_root / "colours" / "train" / "colour"
    args = ["benchmark", "--checkpoint", str(tiny_run), "--datasets", f"colours,captions,mine={mine}", "--root",
            str(world_root), "--precision", "fp32", "--batch-size", "16"]
    assert cli.main([*args, "--out", str(tmp_path / "shown")]) == 0
    err = capsys.readouterr().err
    # A bar per dataset whose images are read, named "<model> <dataset>", counting batches: 24 and 48 images by 16.
    assert re.search(rf"{re.escape(label)} colours: +0%\|[^|\n]*\| 0/2 \[", err), err
    assert re.search(rf"{re.escape(label)} mine: +0%\|[^|\n]*\| 0/3 \[", err), err
    assert f"{label} captions" not in err  # a retrieval set: zero-shot does not read it
    assert cli.main([*args, "--out", str(tmp_path / "quiet"), "--quiet"]) == 0  # a new cache: the images are read
    err = capsys.readouterr().err
    assert label not in err and "%|" not in err


def test_linear_probe_reuses_the_test_features_and_retrieval_scores_captions(tiny_run: Path, world_root: Path,
                                                                            tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from clipworks.evaluation.linear_probe import select_c

    out = tmp_path / "bench"
    cells = benchmark.run_benchmark([str(tiny_run)], ["colours"], root=world_root, out=out, precision="fp32",
                                    progress=False, report=lambda line: None)
    assert [c.status for c in cells] == ["done"]
    assert len(list((out / "cache").glob("img-*.npz"))) == 1
    cells = benchmark.run_benchmark([str(tiny_run)], ["colours"], root=world_root, out=out, task="linear-probe",
                                    precision="fp32", progress=False, report=lambda line: None)
    assert len(list((out / "cache").glob("img-*.npz"))) == 2  # train added; test features shared with zero-shot
    probe = cells[0].result
    assert cells[0].status == "done" and probe["n_train"] == 48 and probe["n_images"] == 24
    assert 0.0 <= probe["metrics"]["score"] <= 1.0 and probe["c"] > 0

    # A shift of "colours" is probed with the probe fitted on colours' train split: fitted once, the same score.
    fits = []
    monkeypatch.setattr(benchmark.lp, "select_c", lambda *a: fits.append(1) or select_c(*a))
    (world_root / "shifted").mkdir(exist_ok=True)
    cells = benchmark.run_benchmark([str(tiny_run)], ["colours", "shifted"], root=world_root, out=tmp_path / "two",
                                    task="linear-probe", precision="fp32", progress=False, report=lambda line: None)
    assert len(fits) == 1 and cells[1].result["split"] == "colours train -> test"
    assert cells[1].result["metrics"] == cells[0].result["metrics"] == probe["metrics"]

    cells = benchmark.run_benchmark([str(tiny_run)], ["captions"], root=world_root, out=out, task="retrieval",
                                    precision="fp32", progress=False, report=lambda line: None)
    r = cells[0].result
    assert r["n_images"] == 20 and r["n_captions"] == 20
    assert r["metrics"]["image_to_text_R@10"] >= r["metrics"]["image_to_text_R@1"]
    assert set(r["columns"]) == {"captions image->text R@1", "captions text->image R@1"}
    md = (out / "table.md").read_text()  # every task's cells merged
    assert "## Zero-shot" in md and "## Linear probe" in md and "## Retrieval" in md
    assert "Not evaluated" not in md


def test_datasets_sharing_classes_encode_their_prompts_once(tiny_run: Path, world_root: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from clipworks.evaluation.zeroshot import zero_shot_classifier
    from clipworks.io.checkpoints import load_model

    encoded = []
    encode = benchmark.encode_texts
    monkeypatch.setattr(benchmark, "encode_texts", lambda model, texts: encoded.append(len(texts)) or encode(model,
                                                                                                        texts))
    (world_root / "shifted").mkdir(exist_ok=True)
    cells = benchmark.run_benchmark([str(tiny_run)], ["colours", "shifted"], root=world_root, out=tmp_path,
                                    precision="fp32", progress=False, report=lambda line: None)
    assert encoded == [len(COLOURS) * len(TEMPLATES)]  # "shifted" has colours' names and templates: no second time
    assert cells[1].result["metrics"] == cells[0].result["metrics"]
    model = load_model(tiny_run)  # the columns are zero_shot_classifier's, whether encoded together or apart
    memo: dict = {}
    benchmark.classifier(model, SPECS["colours"], COLOURS[:3], TEMPLATES, memo=memo)
    torch.testing.assert_close(benchmark.classifier(model, SPECS["colours"], COLOURS, TEMPLATES, memo=memo),
                               zero_shot_classifier(model, COLOURS, TEMPLATES))


def test_a_labelled_set_of_ones_own_joins_the_table(tiny_run: Path, world_root: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from clipworks.evaluation.commands import run_zeroshot
    from clipworks.evaluation.metrics import benchmark_metric

    monkeypatch.setattr(benchmark, "benchmark_metric", benchmark_metric)  # the real one: it checks the class count
    data = world_root / "colours" / "test" / "colour"
    out = tmp_path / "bench"
    assert _bench("--checkpoint", str(tiny_run), "--datasets", f"mine={data}", "--out", str(out)) == 0  # no --root
    cell = json.loads((out / "cells" / benchmark.model_label(tiny_run) / "mine" / "zeroshot.json").read_text())
    direct = run_zeroshot(str(tiny_run), str(data), precision="fp32", progress=False)  # folder names, one prompt
    assert cell["n_classes"] == len(direct["classes"]) and cell["n_templates"] == 1
    assert cell["metrics"]["top1"] == pytest.approx(direct["accuracy"]["top1"], abs=1e-9)
    assert cell["metrics"]["score"] == cell["metrics"]["top1"] and "mean_per_class_recall" in cell["metrics"]
    assert f"| {benchmark.model_label(tiny_run)} | {100 * cell['metrics']['score']:.1f} |" in (
        out / "table.md").read_text()
    assert _bench("--checkpoint", str(tiny_run), "--datasets", f"mine={data}", "--task", "linear-probe",
                  "--out", str(out)) == 2
    assert "a set given as NAME=PATH is a test set only" in capsys.readouterr().out
    with pytest.raises(ConfigError, match="NAME=PATH"):
        benchmark.resolve_datasets(["colours=/tmp"])


def test_openai_models_get_the_papers_row(tiny_run: Path, world_root: Path, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    assert benchmark.model_label("ViT-B/32") == "ViT-B-32" and benchmark.paper_model("RN50") == "RN50"
    assert benchmark.paper_model("ViT-B-32:laion2b_s34b_b79k") is None and benchmark.paper_model(tiny_run) is None
    monkeypatch.setattr(benchmark, "paper_model", lambda checkpoint: "ViT-B-32")
    out = tmp_path / "bench"
    benchmark.run_benchmark([str(tiny_run)], ["colours"], root=world_root, out=out, precision="fp32",
                            progress=False, report=lambda line: None)
    label = benchmark.model_label(tiny_run)
    md = (out / "table.md").read_text()
    assert f"| {label} (paper) | 91.3 |" in md
    rows = list(csv.DictReader((out / "table.csv").open()))
    assert [(r["model"], r["source"]) for r in rows] == [(label, "clipworks"), (label, "paper")]
    assert rows[1]["colours"] == "91.3"

    # Linear probe (Table 10's figure) and retrieval (Table 13's R@1 both ways) get theirs beside their columns.
    for task, dataset in (("linear-probe", "colours"), ("retrieval", "captions")):
        benchmark.run_benchmark([str(tiny_run)], [dataset], root=world_root, out=out, task=task, precision="fp32",
                                progress=False, report=lambda line: None)
    cells = out / "cells" / label
    assert json.loads((cells / "colours" / "linear-probe.json").read_text())["paper"] == {"colours": 88.8}
    assert json.loads((cells / "captions" / "retrieval.json").read_text())["paper"] == {
        "captions image->text R@1": 88.0, "captions text->image R@1": 68.7}
    md = (out / "table.md").read_text()
    assert f"| {label} (paper) | 88.8 |" in md and f"| {label} (paper) | 88.0 | 68.7 |" in md
    rows = [r for r in csv.DictReader((out / "table.csv").open()) if r["source"] == "paper"]
    assert [(r["task"], r["colours"], r["captions image->text R@1"]) for r in rows] == [
        ("zeroshot", "91.3", ""), ("linear-probe", "88.8", ""), ("retrieval", "", "88.0")]

    # A cell written when the paper's figure was one number still gets its row.
    zeroshot = cells / "colours" / "zeroshot.json"
    zeroshot.write_text(json.dumps({**json.loads(zeroshot.read_text()), "paper": 91.3}))
    benchmark.write_tables(out)
    assert f"| {label} (paper) | 91.3 |" in (out / "table.md").read_text()


def test_several_checkpoints_give_a_cell_each_and_rows_in_their_order(tiny_run: Path, world_root: Path,
                                                                      tmp_path: Path) -> None:
    checkpoints = [tiny_run / "checkpoints" / "step_0000020", tiny_run]  # step 20, and the run's last: step 40
    labels = [benchmark.model_label(c) for c in checkpoints]
    assert labels != sorted(labels)  # so that the rows' order below is the given one, not the names'
    out = tmp_path / "bench"
    (world_root / "shifted").mkdir(exist_ok=True)
    assert _bench("--checkpoint", *map(str, checkpoints), "--datasets", "colours,shifted", "--root",
                  str(world_root), "--out", str(out)) == 0
    assert sorted(p.relative_to(out / "cells").as_posix() for p in (out / "cells").rglob("*.json")) == sorted(
        f"{label}/{name}/zeroshot.json" for label in labels for name in ("colours", "shifted"))
    cells = {(label, name): json.loads((out / "cells" / label / name / "zeroshot.json").read_text())
             for label in labels for name in ("colours", "shifted")}
    assert [cells[label, "colours"]["checkpoint"] for label in labels] == list(map(str, checkpoints))
    assert cells[labels[0], "colours"]["weights"] != cells[labels[1], "colours"]["weights"]
    score = {key: 100 * cell["metrics"]["score"] for key, cell in cells.items()}

    md = (out / "table.md").read_text().splitlines()
    rows = [line for line in md if line.startswith(tuple(f"| {label} " for label in labels))]
    assert rows == [f"| {label} | {score[label, 'colours']:.1f} | {score[label, 'shifted']:.1f} |" for label in labels]
    assert [(r["model"], r["source"], r["colours"], r["shifted"]) for r in csv.DictReader((out / "table.csv").open())
            ] == [(label, "clipworks", str(round(score[label, "colours"], 4)), str(round(score[label, "shifted"], 4)))
                  for label in labels]


def test_unknown_dataset_or_task_is_one_line(tiny_run: Path, world_root: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture) -> None:
    assert _bench("--checkpoint", str(tiny_run), "--datasets", "colours", "--root", str(tmp_path / "nowhere"),
                  "--out", str(tmp_path)) == 2
    assert "--root" in capsys.readouterr().err
    with pytest.raises(KeyError):  # the fake `spec`; the real one raises a ConfigError naming close keys
        benchmark.resolve_datasets(["colors"])
    assert benchmark.resolve_datasets(["colours", "fakes"]) == ["colours", "absent", "captions"]


def test_a_folder_of_some_classes_is_classified_among_all_names(tmp_path: Path) -> None:
    for folder in ("cat", "dog"):
        (tmp_path / folder).mkdir()
        World().sample("val", 0).image.save(tmp_path / folder / "a.png")
    dataset = open_labelled(tmp_path, None, ["ant", "dog", "bee", "cat"])
    assert dataset.classes == ["ant", "dog", "bee", "cat"]
    assert [(p.parent.name, y) for p, y in zip(dataset.paths, dataset.labels)] == [("cat", 3), ("dog", 1)]
    assert open_labelled(tmp_path, None, ["tabby", "puppy"]).labels == [0, 1]  # other names: by position


def test_zeroshot_eval_of_a_subset_folder_uses_every_name(tiny_run: Path, world_root: Path, tmp_path: Path) -> None:
    from clipworks.evaluation.commands import run_zeroshot

    names = [*COLOURS, "transparent", "golden"]
    r = run_zeroshot(str(tiny_run), str(world_root / "colours" / "test" / "colour"), classnames=names,
                     precision="fp32", progress=False)
    assert r["n_classes"] == len(names) and len(r["prompts"]["single prompt"]["confusion_matrix"]) == len(names)


def test_train_logs_zeroshot_accuracy_equal_to_a_separate_evaluation(tiny_run: Path, world_root: Path,
                                                                     tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture) -> None:
    from clipworks.evaluation.commands import run_zeroshot

    args = ["train", "--init", str(tiny_run), "--steps", "2", "--batch-size", "8", "--world-samples", "64",
            "--eval-every", "0", "--zeroshot-data", "colours", "--precision", "fp32", "--quiet"]
    assert cli.main([*args, "--output-dir", str(tmp_path / "a")]) == 2  # a dataset key needs its root
    assert "also give --zeroshot-root, the folder holding colours/" in capsys.readouterr().err
    out = tmp_path / "run"
    assert cli.main([*args, "--zeroshot-root", str(world_root), "--zeroshot-every", "1", "--output-dir",
                     str(out)]) == 0
    evals = [r["eval"] for r in map(json.loads, (out / "log.jsonl").read_text().splitlines()) if "eval" in r]
    assert [e["step"] for e in evals] == [1, 2] and set(evals[0]) == {"step", "zeroshot_top1", "zeroshot_top5"}
    # The spec's names and templates, the test split under ROOT/colours: `clipworks eval zeroshot` agrees.
    direct = run_zeroshot(str(out), str(world_root / "colours" / "test" / "colour"), classnames=list(COLOURS),
                          templates=list(TEMPLATES), precision="fp32", progress=False)
    assert evals[-1]["zeroshot_top1"] == pytest.approx(direct["accuracy"]["top1"], abs=1e-9)
    assert evals[-1]["zeroshot_top5"] == pytest.approx(direct["accuracy"]["top5"], abs=1e-9)
    board = list((out / "tensorboard").glob("events.*"))
    assert board and b"eval/zeroshot_top1" in board[0].read_bytes()


@pytest.mark.parametrize("given", ["folder", "key"])
def test_train_lists_the_zeroshot_sets_unreadable_images_in_its_log(tiny_run: Path, world_root: Path, tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture, given: str) -> None:
    root = tmp_path / "root"
    shutil.copytree(world_root / "colours", root / "colours")
    folder = root / "colours" / "test" / "colour"
    bad = sorted(folder.rglob("*.png"))[5]
    bad.write_text("not an image")
    out = tmp_path / "run"
    data = ["--zeroshot-data", str(folder)] if given == "folder" else ["--zeroshot-data", "colours",
                                                                       "--zeroshot-root", str(root)]
    assert cli.main(["train", "--init", str(tiny_run), "--steps", "1", "--batch-size", "8", "--world-samples", "64",
                     "--eval-every", "0", *data, "--zeroshot-every", "1", "--precision", "fp32", "--quiet",
                     "--output-dir", str(out)]) == 0
    source = str(folder) if given == "folder" else str(root / "colours")
    printed = capsys.readouterr().out
    assert f"skipped 1 unreadable image of 24 in {source} (first: {bad}; all listed in log.jsonl)" in printed
    assert f"zero-shot evaluated on 23 images; 1 unreadable one skipped (listed in {out}/log.jsonl)" in printed
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert records[0] == {"data": {"zeroshot": {"source": source, "samples": 23, "skipped": 1,
                                                "skipped_images": [str(bad)]}}}
    assert [set(r["eval"]) for r in records if "eval" in r] == [{"step", "zeroshot_top1", "zeroshot_top5"}]


def test_zeroshot_evaluator_of_a_folder_uses_its_names_and_the_templates(tiny_run: Path, world_root: Path) -> None:
    from clipworks.evaluation.commands import run_zeroshot
    from clipworks.io.checkpoints import load_model
    from clipworks.training.config import TrainConfig
    from clipworks.training.run import zeroshot_evaluator

    data = str(world_root / "colours" / "test" / "colour")
    model = load_model(tiny_run)
    evaluate, report = zeroshot_evaluator(TrainConfig(zeroshot_data=data, zeroshot_templates="cifar", batch_size=16),
                                          model.image_size)
    assert (report["source"], report["skipped"], report["skipped_images"]) == (data, 0, [])
    with torch.no_grad():
        metrics = evaluate(model)
    direct = run_zeroshot(str(tiny_run), data, templates=list(CIFAR_TEMPLATES), precision="fp32", progress=False)
    assert metrics == pytest.approx({f"zeroshot_{k}": v for k, v in direct["accuracy"].items()}, abs=1e-9)


def test_interpolate_gives_back_a_and_b_and_their_mean(tiny_run: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture) -> None:
    import clipworks
    from clipworks.io.checkpoints import load_model

    a, b = tiny_run / "checkpoints" / "step_0000020", tiny_run / "checkpoints" / "step_0000040"
    state_a, state_b = load_model(a).state_dict(), load_model(b).state_dict()
    for alpha, expected in ((0.0, state_a), (1.0, state_b)):
        assert cli.main(["interpolate", str(a), str(b), "--alpha", str(alpha), "--out", str(tmp_path / "c")]) == 0
        mixed = load_model(tmp_path / "c").state_dict()
        assert all(torch.equal(mixed[k], expected[k]) for k in expected)
    mean = clipworks.interpolate(str(a), str(b), 0.5).state_dict()
    for k in state_a:
        if state_a[k].is_floating_point():
            torch.testing.assert_close(mean[k], (state_a[k] + state_b[k]) / 2, rtol=0, atol=1e-7)
    config = json.loads((tmp_path / "c" / "config.json").read_text())
    assert config["interpolated"]["alpha"] == 1.0

    other = clipworks.create_model("ViT-Tiny", seed=0)
    with pytest.raises(ConfigError, match="is RN-Tiny but a model object is ViT-Tiny"):
        clipworks.interpolate(str(a), other)
    assert cli.main(["interpolate", str(a), str(b), "--alpha", "1.5", "--out", str(tmp_path / "d")]) == 2
    assert "--alpha must be in [0, 1]" in capsys.readouterr().err


def test_interpolate_command_refuses_two_architectures_in_one_line(tiny_run: Path, tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture) -> None:
    import clipworks

    a = tiny_run / "checkpoints" / "step_0000020"  # RN-Tiny
    b = clipworks.save_checkpoint(tmp_path / "vit", clipworks.create_model("ViT-Tiny", seed=0))
    out = tmp_path / "mixed"
    assert cli.main(["interpolate", str(a), str(b), "--out", str(out)]) == 2
    captured = capsys.readouterr()
    assert captured.err == (f"clipworks interpolate: error: {a} is RN-Tiny but {b} is ViT-Tiny; WiSE-FT interpolates "
                            "two models of the same architecture, e.g. a zero-shot model and its fine-tune\n")
    assert captured.out == "" and not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["vit"]


def test_feature_cache_key_of_a_foreign_weights_file(tiny_run: Path, tmp_path: Path) -> None:
    from clipworks.evaluation.features import checkpoint_key
    from clipworks.io.checkpoints import load_model

    weights = tmp_path / "openai.pt"
    torch.save(load_model(tiny_run).state_dict(), weights)  # OpenAI's layout, a plain state dict
    key = checkpoint_key(weights)
    assert key == checkpoint_key(weights) and key != checkpoint_key(tiny_run)
    np.testing.assert_equal(len(key), 20)


def test_multilabel_targets_synonyms_and_shared_labels_reach_the_metric(tiny_run: Path, world_root: Path,
                                                                        tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from clipworks.evaluation.zeroshot import zero_shot_classifier
    from clipworks.io.checkpoints import load_model
    from clipworks.models.encode import encode_texts

    seen = {}

    def metric(spec: BenchmarkSpec, logits: torch.Tensor, truth: torch.Tensor) -> dict:
        seen.update(logits=logits, truth=truth)
        return {"score": 0.5}

    def read_tagged(root: Path, split: str) -> LabelledImages:  # a multi-label set: targets (N, C), 1/0/-1
        dataset = open_labelled(root / split / "colour", None, COLOURS)
        dataset.targets = np.eye(len(COLOURS), dtype=np.int8)[dataset.labels]
        dataset.targets[0, -1] = -1
        return dataset

    monkeypatch.setitem(SPECS, "tagged", BenchmarkSpec("tagged", "multilabel", COLOURS, TEMPLATES, "map_11point"))
    monkeypatch.setattr(benchmark, "open_benchmark", lambda name, root, split="test": read_tagged(Path(root), split))
    monkeypatch.setattr(benchmark, "benchmark_metric", metric)
    (world_root / "tagged").mkdir(exist_ok=True)
    (world_root / "tagged" / "test").mkdir(exist_ok=True)
    link = world_root / "tagged" / "test" / "colour"
    if not link.exists():
        link.symlink_to(world_root / "colours" / "test" / "colour")
    cells = benchmark.run_benchmark([str(tiny_run)], ["tagged"], root=world_root, out=tmp_path, precision="fp32",
                                    progress=False, report=lambda line: None)
    assert cells[0].status == "done" and seen["truth"].shape == (24, len(COLOURS)) and seen["truth"][0, -1] == -1
    assert seen["logits"].shape == (24, len(COLOURS))

    # Several names for a class: every name x template embedding averaged into its weight.
    model = load_model(tiny_run)
    spec = BenchmarkSpec("syn", "classification", ("red", "blue"), ("a {}.", "the {}."), "accuracy")
    object.__setattr__(spec, "synonyms", (("red", "crimson"), ("blue",)))
    weights = benchmark.classifier(model, spec, ["red", "blue"], ["a {}.", "the {}."])
    red = torch.nn.functional.normalize(encode_texts(model, ["a red.", "the red.", "a crimson.", "the crimson."])
                                        .mean(dim=0), dim=0)
    torch.testing.assert_close(weights[:, 0], red)
    torch.testing.assert_close(weights[:, 1], zero_shot_classifier(model, ["blue"], ["a {}.", "the {}."])[:, 0])

    # Classes sharing a label (ObjectNet): the reader's classes are counted against the labels, not the names.
    object.__setattr__(spec, "class_labels", (0, 0))
    benchmark.check_classes(type("D", (), {"classes": ["colour"]})(), spec, ["red", "blue"], tmp_path)
    with pytest.raises(DataError, match="the reader found 2 classes but the dataset's spec has 1"):
        benchmark.check_classes(type("D", (), {"classes": ["a", "b"]})(), spec, ["red", "blue"], tmp_path)
    # ... and the reader's classes are its folders, which must come in the order of the spec's label_names.
    object.__setattr__(spec, "class_labels", (0, 1))
    object.__setattr__(spec, "label_names", ("bench", "full_sized_towel"))
    benchmark.check_classes(type("D", (), {"classes": ["bench", "full_sized_towel"]})(), spec, ["red", "blue"],
                            tmp_path)
    with pytest.raises(DataError, match=r"class 0 is 'full_sized_towel' but the spec's class 0 is 'bench'.*put the "
                                        r"label_names of benchmark_data/syn.json in the dataset's order"):
        benchmark.check_classes(type("D", (), {"classes": ["full_sized_towel", "bench"]})(), spec, ["red", "blue"],
                                tmp_path)

    # A dataset's own names (its metadata's spelling) must come in the spec's order; other names are not compared.
    birds = BenchmarkSpec("birds", "classification", ("Allens Hummingbird", "Black capped Chickadee"), ("{}",),
                          "accuracy")
    folders = type("D", (), {"classes": ["Allens_Hummingbird", "Black_capped_Chickadee"]})()
    benchmark.check_classes(folders, birds, birds.classnames, tmp_path)
    benchmark.check_classes(type("D", (), {"classes": ["001", "002"]})(), birds, birds.classnames, tmp_path)
    folders.classes.reverse()
    with pytest.raises(DataError, match=r"class 0 is 'Black_capped_Chickadee' but the spec's class 0 is 'Allens "
                                        r"Hummingbird'.*benchmark_data/birds.json in the dataset's order"):
        benchmark.check_classes(folders, birds, birds.classnames, tmp_path)
