"""`clipworks benchmark` end to end on a tiny synthetic copy of every dataset in its own on-disk layout
(benchmark_fixtures.py): every reader, spec and metric runs, each cell counts the images the fixture wrote and names
the metric the paper's Table 9 gives the dataset, and the merged table has a column for every dataset."""

import csv
import dataclasses
import json
from pathlib import Path

import pytest
from benchmark_fixtures import WRITERS, Written, write_all

from clipworks import cli
from clipworks.evaluation import benchmark
from clipworks.evaluation.specs import COLLECTIONS, SPECS

# Table 9's headline metric where it is not accuracy, and where each lands in a cell's metrics
METRICS = {"fgvc_aircraft": "mean_per_class_recall", "pets": "mean_per_class_recall",
           "caltech101": "mean_per_class_recall", "flowers102": "mean_per_class_recall", "voc2007": "map_11point",
           "hateful_memes": "roc_auc", "kinetics700": "mean_top1_top5", "flickr30k": "recall", "mscoco": "recall"}
HEADLINE = {"accuracy": "top1", "mean_per_class_recall": "mean_per_class_recall", "map_11point": "map_11point",
            "roc_auc": "roc_auc", "mean_top1_top5": "mean_top1_top5", "recall": "image_to_text_R@1"}


@pytest.fixture(scope="module")
def datasets(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Written]]:
    root = tmp_path_factory.mktemp("datasets")
    return root, write_all(root)


def test_there_is_a_fixture_for_every_dataset_of_every_collection() -> None:
    assert set(WRITERS) == set(SPECS) == {key for keys in COLLECTIONS.values() for key in keys}
    assert len(WRITERS) == 34  # paper27, the 5 ImageNet shifts, Flickr30k and MS-COCO (ImageNet is in two collections)


@pytest.mark.parametrize("templates", ["first", pytest.param("all", marks=pytest.mark.slow)])
def test_benchmark_runs_every_dataset_in_its_own_layout(tiny_run: Path, datasets: tuple[Path, dict[str, Written]],
                                                        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        templates: str) -> None:
    root, written = datasets
    if templates == "first":  # one prompt a class: ImageNet's 80 templates alone are 80,000 prompts to encode
        for key, spec in SPECS.items():
            monkeypatch.setitem(SPECS, key, dataclasses.replace(spec, templates=spec.templates[:1]))
    out = tmp_path / "bench"
    args = ["benchmark", "--checkpoint", str(tiny_run), "--root", str(root), "--out", str(out), "--precision", "fp32",
            "--batch-size", "16", "--quiet"]
    assert cli.main([*args, "--datasets", "paper27,imagenet-robustness"]) == 0  # exit 0: no cell missing
    assert cli.main([*args, "--datasets", "retrieval", "--task", "retrieval"]) == 0
    assert cli.main([*args, "--datasets", "cifar10,mnist", "--task", "linear-probe"]) == 0

    cells = out / "cells" / benchmark.model_label(tiny_run)
    for key in SPECS:
        metric = METRICS.get(key, "accuracy")
        cell = json.loads((cells / key / ("retrieval.json" if metric == "recall" else "zeroshot.json")).read_text())
        assert (cell["dataset"], cell["metric"], cell["n_images"], cell["n_skipped"]) == (key, metric,
                                                                                          written[key].test, 0)
        assert cell["metrics"]["score"] == cell["metrics"][HEADLINE[metric]] and 0 <= cell["metrics"]["score"] <= 1
        if metric == "recall":
            assert cell["n_captions"] == 5 * written[key].test  # 5 a image, a sixth of one COCO image left out
        if metric == "mean_top1_top5":
            assert cell["metrics"]["score"] == pytest.approx((cell["metrics"]["top1"] + cell["metrics"]["top5"]) / 2)
    for key in ("cifar10", "mnist"):
        probe = json.loads((cells / key / "linear-probe.json").read_text())
        assert (probe["n_images"], probe["n_train"], probe["n_skipped"]) == (written[key].test, written[key].train, 0)

    rows = list(csv.DictReader((out / "table.csv").open()))
    assert [(r["task"], r["source"]) for r in rows] == [("zeroshot", "clipworks"), ("linear-probe", "clipworks"),
                                                        ("retrieval", "clipworks")]
    zeroshot, probe, retrieval = rows
    assert all(zeroshot[key] for key in SPECS if key not in ("flickr30k", "mscoco"))
    assert probe["cifar10"] and probe["mnist"] and not probe["food101"]
    assert all(retrieval[f"{key} {direction} R@1"] for key in ("flickr30k", "mscoco")
               for direction in ("image->text", "text->image"))
    md = (out / "table.md").read_text()
    header = md.splitlines()[md.splitlines().index("## Zero-shot") + 2]
    # the paper's column order, although the last run (linear probes of cifar10, mnist) named other datasets first
    assert [column.strip() for column in header.strip("|").split("|")] == [
        "model", *(key for key in SPECS if key not in ("flickr30k", "mscoco"))]
    assert "## Linear probe" in md and "## Retrieval" in md and "Not evaluated" not in md
