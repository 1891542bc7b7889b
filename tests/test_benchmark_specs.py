"""Benchmark specs (names, templates, label orders, metrics of Table 9) and the benchmark metrics, on hand-worked
cases: VOC 11-point AP with difficult items, ROC AUC against scikit-learn, Kinetics' mean of top-1 and top-5."""

from __future__ import annotations

import fnmatch
import importlib.resources
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from clipworks.errors import ConfigError
from clipworks.evaluation import prompts
from clipworks.evaluation.metrics import (
    average_precision_11point,
    benchmark_metric,
    map_11point,
    mean_top1_top5,
    pool_by_label,
    roc_auc,
)
from clipworks.evaluation.specs import COLLECTIONS, SPECS, BenchmarkSpec, spec

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

# Number of classes per dataset, Table 9 of the paper.
TABLE9_CLASSES = {
    "food101": 101, "cifar10": 10, "cifar100": 100, "birdsnap": 500, "sun397": 397, "cars": 196,
    "fgvc_aircraft": 100, "voc2007": 20, "dtd": 47, "pets": 37, "caltech101": 102, "flowers102": 102, "mnist": 10,
    "fer2013": 7, "stl10": 10, "eurosat": 10, "resisc45": 45, "gtsrb": 43, "kitti_distance": 4, "country211": 211,
    "pcam": 2, "ucf101": 101, "kinetics700": 700, "clevr_counts": 8, "hateful_memes": 2, "rendered_sst2": 2,
    "imagenet": 1000,
}
DATA = importlib.resources.files("clipworks.evaluation") / "benchmark_data"


# ---- specs ------------------------------------------------------------------------------------------------------

def test_collections_name_every_dataset_of_the_contract() -> None:
    assert COLLECTIONS["paper27"] == tuple(TABLE9_CLASSES)
    assert COLLECTIONS["imagenet-robustness"] == (
        "imagenet", "imagenet_v2", "imagenet_sketch", "imagenet_a", "imagenet_r", "objectnet")
    assert COLLECTIONS["retrieval"] == ("flickr30k", "mscoco")
    assert set(SPECS) == {name for names in COLLECTIONS.values() for name in names}


@pytest.mark.parametrize("name", list(TABLE9_CLASSES))
def test_paper27_class_counts_and_templates(name: str) -> None:
    s = spec(name)
    assert s.name == name and len(s.classnames) == TABLE9_CLASSES[name]
    assert s.templates and all(t.count("{}") == 1 for t in s.templates)
    assert all(c.strip() == c and c for c in s.classnames)
    assert s.label_order and s.source
    if name != "imagenet":  # ImageNet's published names repeat "missile" and "sunglasses" (see prompts.py)
        assert len(set(s.classnames)) == len(s.classnames)


def test_metrics_follow_table9() -> None:
    special = {"fgvc_aircraft": "mean_per_class_recall", "pets": "mean_per_class_recall",
               "caltech101": "mean_per_class_recall", "flowers102": "mean_per_class_recall",
               "voc2007": "map_11point", "hateful_memes": "roc_auc", "kinetics700": "mean_top1_top5",
               "flickr30k": "recall", "mscoco": "recall"}
    for name, s in SPECS.items():
        assert s.metric == special.get(name, "accuracy"), name
    assert spec("voc2007").task == "multilabel"
    assert spec("mscoco").task == spec("flickr30k").task == "retrieval"
    assert spec("mscoco").classnames == spec("mscoco").templates == ()


def test_names_and_templates_are_prompts_md_in_the_readers_label_order() -> None:
    # ImageNet and CIFAR are prompts.py's tuples, not copies.
    assert spec("imagenet").classnames is prompts.IMAGENET_CLASSNAMES
    assert spec("imagenet").templates is prompts.IMAGENET_TEMPLATES
    assert spec("cifar100").classnames is prompts.CIFAR100_CLASSNAMES
    assert spec("cifar10").templates is prompts.CIFAR_TEMPLATES
    # Orders that differ from prompts.md's listing (same names): Pets breed ids sort ignoring case; VOC's devkit
    # order; EuroSAT's sorted folders; CLEVR counts 3..10; UCF101's classInd.txt; SUN397's ClassName.txt (paths
    # sorted, '/' before '_').
    pets = spec("pets").classnames
    assert pets[:3] == ("Abyssinian", "american bulldog", "american pit bull terrier") and pets[5] == "Bengal"
    assert spec("voc2007").classnames[10:12] == ("diningtable", "dog")
    assert spec("eurosat").classnames[:3] == ("annual crop land", "forest", "brushland or shrubland")
    assert spec("clevr_counts").classnames == ("3", "4", "5", "6", "7", "8", "9", "10")
    ucf = spec("ucf101").classnames
    assert ucf[34:36] == ("Hammering", "Hammer Throw") and ucf[46:48] == ("Jumping Jack", "Jump Rope")
    sun = spec("sun397").classnames
    assert sun.index("jail indoor") + 1 == sun.index("jail cell")
    # Orders as prompts.md lists them.
    assert spec("caltech101").classnames[:5] == ("background", "off-center face", "centered face", "leopard",
                                                 "motorbike")
    assert spec("kitti_distance").classnames[3] == "a photo i took with no car."
    assert spec("hateful_memes").classnames == ("meme", "hatespeech meme")
    assert spec("pcam").classnames[1] == "lymph node containing metastatic tumor tissue"
    assert spec("country211").classnames[:2] == ("Andorra", "United Arab Emirates")
    assert spec("kinetics700").classnames == tuple(sorted(spec("kinetics700").classnames))


def test_cars_fgvc_and_birdsnap_orders() -> None:
    # Cars: tensorflow/datasets' cars196 _NAMES, indexed by the annotations' 1-based class (devkit order), has
    # these names in this order; e.g. its class 6 is the Integra, out of alphabetical order.
    cars = spec("cars").classnames
    assert cars[0] == "AM General Hummer SUV 2000" and cars[5] == "Acura Integra Type R 2001"
    assert cars[195] == "smart fortwo Convertible 2012"
    # FGVC: prompts.md's order, which is code-point order ("BAE 146-200" before "BAE-125", "CRJ-900" before "Cessna").
    fgvc = spec("fgvc_aircraft").classnames
    assert fgvc == tuple(sorted(fgvc)) and fgvc[37:40] == ("BAE 146-200", "BAE 146-300", "BAE-125")
    # Birdsnap: the reader sorts the species folders (names with underscores); that order is these names' order.
    birds = spec("birdsnap").classnames
    assert birds == tuple(sorted(birds)) == tuple(b.replace("_", " ") for b in sorted(n.replace(" ", "_")
                                                                                      for n in birds))


def test_fer2013_keeps_every_name_of_a_class() -> None:
    s = spec("fer2013")
    assert s.synonyms[5] == ("surprised", "shocked", "spooked")
    assert s.classnames == tuple(names[0] for names in s.synonyms)


def test_imagenet_subsets_index_imagenets_sorted_wordnet_ids() -> None:
    wnids = json.loads((DATA / "imagenet.json").read_text())["wnids"]
    assert len(wnids) == len(set(wnids)) == 1000 and wnids == sorted(wnids)
    for name in ("imagenet_a", "imagenet_r"):
        s = spec(name)
        doc = json.loads((DATA / f"{name}.json").read_text())
        assert s.classes_from == "imagenet" and len(s.class_subset) == 200
        assert doc["wnids"] == sorted(doc["wnids"])
        assert list(s.class_subset) == [wnids.index(w) for w in doc["wnids"]]
        assert s.classnames == tuple(prompts.IMAGENET_CLASSNAMES[i] for i in s.class_subset)
        assert s.templates is prompts.IMAGENET_TEMPLATES
    assert spec("imagenet_a").class_subset[:3] == (6, 11, 13)  # stingray, goldfinch, junco
    for name in ("imagenet_v2", "imagenet_sketch"):
        assert spec(name).classnames is prompts.IMAGENET_CLASSNAMES and spec(name).class_subset == ()


def test_objectnet_maps_125_imagenet_classes_onto_its_113() -> None:
    s = spec("objectnet")
    assert len(s.label_names) == 113 and list(s.label_names) == sorted(s.label_names)
    assert len(s.class_subset) == len(s.class_labels) == len(s.classnames) == 125
    assert sorted(set(s.class_labels)) == list(range(113))
    assert s.classnames == tuple(prompts.IMAGENET_CLASSNAMES[i] for i in s.class_subset)
    # "Alarm clock" is ImageNet's analog clock (409) or digital clock (530).
    alarm = s.label_names.index("alarm_clock")
    assert [i for i, label in zip(s.class_subset, s.class_labels) if label == alarm] == [409, 530]
    # An alarm clock image whose best ImageNet class is "digital clock" is right, over 1000 or over 125 columns.
    logits = torch.zeros(1, 1000)
    logits[0, 530] = 1.0
    for columns in (logits, logits[:, list(s.class_subset)]):
        assert benchmark_metric(s, columns, torch.tensor([alarm]))["score"] == 1.0


OPENAI_MODELS = ("RN50", "RN101", "RN50x4", "RN50x16", "RN50x64", "ViT-B-32", "ViT-B-16", "ViT-L-14", "ViT-L-14-336")


def test_paper_figures_are_table11s_nine_models_and_table16s_one_row() -> None:
    from clipworks.evaluation.benchmark import paper_model

    assert all(paper_model(name) == name for name in OPENAI_MODELS)  # the keys the table looks figures up by
    for name in TABLE9_CLASSES:
        s = spec(name)
        assert tuple(s.paper) == OPENAI_MODELS and all(0 < v <= 100 for v in s.paper.values()), name
        assert "Table 11" in s.paper_source and "Table11.png" in s.paper_source, name
    # Cells as the table prints them: its first and last rows, and RN50's CIFAR10 and MNIST (as openai/CLIP#164
    # quotes them).
    assert [spec(n).paper["RN50"] for n in ("food101", "cifar10", "mnist", "imagenet")] == [81.1, 75.6, 66.6, 59.6]
    assert [spec(n).paper["ViT-L-14-336"] for n in ("food101", "kitti_distance", "imagenet")] == [93.8, 21.9, 76.2]
    # Table 16's one zero-shot row: its ImageNet figure is ViT-L/14@336px's in Table 11, the model it is filed under.
    shifts = {n: spec(n).paper for n in ("imagenet_v2", "imagenet_sketch", "imagenet_a", "imagenet_r", "objectnet")}
    assert shifts == {"imagenet_v2": {"ViT-L-14-336": 70.1}, "imagenet_sketch": {"ViT-L-14-336": 60.2},
                      "imagenet_a": {"ViT-L-14-336": 77.2}, "imagenet_r": {"ViT-L-14-336": 88.9},
                      "objectnet": {"ViT-L-14-336": 72.3}}
    assert all("Table 16" in spec(n).paper_source and "(76.2)" in spec(n).paper_source for n in shifts)
    assert spec("mscoco").paper == {} and spec("mscoco").paper_probe == {}


def test_paper_figures_of_linear_probes_are_table10s_and_of_retrieval_table13s() -> None:
    for name in TABLE9_CLASSES:
        s = spec(name)
        assert tuple(s.paper_probe) == OPENAI_MODELS and all(0 < v <= 100 for v in s.paper_probe.values()), name
        assert "Table 10" in s.paper_source and "Table 10.png" in s.paper_source, name
    # Table 10's CLIP rows: RN50's first cells and ImageNet column, ViT-L/14-336px's last cells.
    assert [spec(n).paper_probe["RN50"] for n in ("food101", "cifar10", "cifar100", "imagenet")] == [
        86.4, 88.7, 70.3, 73.3]
    assert [spec(n).paper_probe["ViT-L-14-336"] for n in ("clevr_counts", "hateful_memes", "rendered_sst2",
                                                          "imagenet")] == [60.3, 77.3, 80.5, 85.4]
    assert spec("stl10").paper_probe["RN50x64"] == 99.1 and spec("kitti_distance").paper_probe["RN101"] == 73.6
    # Table 16's linear-probe row: ImageNet 85.4 is ViT-L/14-336px's in Table 10.
    shifts = {n: spec(n).paper_probe for n in ("imagenet_v2", "imagenet_sketch", "imagenet_a", "imagenet_r",
                                               "objectnet")}
    assert shifts == {"imagenet_v2": {"ViT-L-14-336": 75.9}, "imagenet_sketch": {"ViT-L-14-336": 57.4},
                      "imagenet_a": {"ViT-L-14-336": 75.3}, "imagenet_r": {"ViT-L-14-336": 84.2},
                      "objectnet": {"ViT-L-14-336": 66.2}}
    assert all('"Linear Probe CLIP"' in spec(n).paper_source for n in shifts)
    # Table 13's zero-shot CLIP row, image query ("Text Retrieval") then caption query ("Image Retrieval").
    assert spec("flickr30k").paper_recalls == {"ViT-L-14-336": {
        "image_to_text_R@1": 88.0, "image_to_text_R@5": 98.7, "image_to_text_R@10": 99.4,
        "text_to_image_R@1": 68.7, "text_to_image_R@5": 90.6, "text_to_image_R@10": 95.2}}
    assert spec("mscoco").paper_recalls == {"ViT-L-14-336": {
        "image_to_text_R@1": 58.4, "image_to_text_R@5": 81.5, "image_to_text_R@10": 88.1,
        "text_to_image_R@1": 37.8, "text_to_image_R@5": 62.4, "text_to_image_R@10": 72.2}}
    assert all("Table 13.png" in spec(n).paper_source for n in ("flickr30k", "mscoco"))


def test_every_data_file_is_used_and_shipped_as_package_data() -> None:
    files = {p.name for p in DATA.iterdir() if p.name.endswith(".json")}
    assert files == {f"{name}.json" for name in SPECS}
    pyproject = Path(__file__).parents[1] / "pyproject.toml"
    patterns = tomllib.loads(pyproject.read_text())["tool"]["setuptools"]["package-data"]["clipworks"]
    assert all(any(fnmatch.fnmatch(f"evaluation/benchmark_data/{f}", p) for p in patterns) for f in files)


def test_unknown_name_suggests_the_closest() -> None:
    with pytest.raises(ConfigError, match=r"'imagenet-r'.*did you mean imagenet_r"):
        spec("imagenet-r")
    with pytest.raises(ConfigError, match="did you mean cifar10"):
        spec("cifar-10")


# ---- metrics ----------------------------------------------------------------------------------------------------

def test_11point_ap_by_hand_ignores_difficult_items() -> None:
    # Kept items by score: + (0.9), - (0.8), + (0.7); the difficult one at 0.95 is left out entirely.
    # Precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1. Levels 0..0.5 (six) reach precision 1; levels 0.6..1 (five)
    # only the last item: 2/3. AP = (6 * 1 + 5 * 2/3) / 11 = 28/33.
    scores = torch.tensor([0.95, 0.9, 0.8, 0.7])
    targets = torch.tensor([-1, 1, 0, 1])
    assert average_precision_11point(scores, targets) == pytest.approx(28 / 33)
    # Were the difficult item a negative, precision would fall to 1/2, 1/3, 1/2: AP = (6/2 + 5/2) / 11 = 1/2.
    assert average_precision_11point(scores, targets.abs() * (targets > 0)) == pytest.approx(0.5)
    # Two classes, the second's one positive ranked second of four: precision 1/2 at every level.
    scores2 = torch.stack([scores, torch.tensor([0.9, 0.8, 0.7, 0.6])], dim=1)
    targets2 = torch.stack([targets, torch.tensor([0, 1, 0, 0])], dim=1)
    assert map_11point(scores2, targets2) == pytest.approx((28 / 33 + 0.5) / 2)
    # A class with no positive item is left out of the mean.
    scores3 = torch.cat([scores2, torch.rand(4, 1)], dim=1)
    targets3 = torch.cat([targets2, torch.tensor([[0], [-1], [0], [0]])], dim=1)
    assert map_11point(scores3, targets3) == pytest.approx((28 / 33 + 0.5) / 2)
    assert map_11point(torch.tensor([[0.2], [0.1]]), torch.tensor([[1], [1]])) == 1.0
    with pytest.raises(ValueError, match="must both be"):
        map_11point(scores2, targets2[:, :1])


def test_roc_auc_by_hand_and_against_sklearn() -> None:
    from sklearn.metrics import roc_auc_score

    # scikit-learn's own doc example: 3 of the 4 positive-negative pairs are ordered right.
    assert roc_auc(torch.tensor([0.1, 0.4, 0.35, 0.8]), torch.tensor([0, 0, 1, 1])) == pytest.approx(0.75)
    assert roc_auc(torch.tensor([0.5, 0.5]), torch.tensor([0, 1])) == pytest.approx(0.5)  # a tie counts half
    rng = np.random.default_rng(0)
    for n, decimals in [(50, 6), (500, 1), (1000, 2)]:  # coarse rounding makes many ties
        labels = rng.integers(0, 2, n)
        scores = np.round(rng.normal(size=n) + 0.7 * labels, decimals)
        assert roc_auc(torch.from_numpy(scores), torch.from_numpy(labels)) == pytest.approx(
            roc_auc_score(labels, scores), abs=1e-12)
    with pytest.raises(ValueError, match="both a positive and a negative"):
        roc_auc(torch.tensor([0.1, 0.2]), torch.tensor([1, 1]))
    with pytest.raises(ValueError, match="labels 0 and 1 only"):
        roc_auc(torch.tensor([0.1, 0.2]), torch.tensor([0, 2]))


def test_mean_of_top1_and_top5() -> None:
    logits = torch.tensor([
        [6.0, 5, 4, 3, 2, 1],  # label 0: top-1 hit
        [6.0, 5, 4, 3, 2, 1],  # label 4: top-5 hit only
        [6.0, 5, 4, 3, 2, 1],  # label 5: neither
    ])
    assert mean_top1_top5(logits, torch.tensor([0, 4, 5])) == pytest.approx((1 / 3 + 2 / 3) / 2)


def toy(metric: str, classnames: tuple[str, ...], **kwargs) -> BenchmarkSpec:
    return BenchmarkSpec(name="toy", task=kwargs.pop("task", "classification"), classnames=classnames,
                         templates=("{}",), metric=metric, **kwargs)


def test_benchmark_metric_headline_per_metric() -> None:
    # 6 items of 3 classes: class 0 has 4 items (3 right), class 1 one (right), class 2 one (wrong).
    labels = torch.tensor([0, 0, 0, 0, 1, 2])
    logits = torch.nn.functional.one_hot(torch.tensor([0, 0, 0, 1, 1, 0]), 3).float()
    accuracy = benchmark_metric(toy("accuracy", ("a", "b", "c")), logits, labels)
    assert accuracy["score"] == accuracy["top1"] == pytest.approx(4 / 6) and "top5" not in accuracy
    per_class = benchmark_metric(toy("mean_per_class_recall", ("a", "b", "c")), logits, labels)
    assert per_class["score"] == pytest.approx((3 / 4 + 1 + 0) / 3)
    # A subset spec takes its columns out of the parent's logits: classes 1 and 3 of 4.
    parent = torch.tensor([[0.0, 2, 3, 1], [0.0, 1, 3, 2]])
    subset = toy("accuracy", ("b", "d"), classes_from="parent", class_subset=(1, 3))
    assert benchmark_metric(subset, parent, torch.tensor([0, 1]))["score"] == 1.0
    assert benchmark_metric(subset, parent[:, [1, 3]], torch.tensor([0, 1]))["score"] == 1.0
    with pytest.raises(ValueError, match="3 logit columns"):
        benchmark_metric(toy("accuracy", ("a", "b")), logits, labels)


def test_pool_by_label_takes_each_labels_best_class() -> None:
    logits = torch.tensor([[0.1, 0.9, 0.3, 0.2], [0.5, 0.1, 0.2, 0.7]])
    pooled = pool_by_label(logits, (1, 0, 1, 2))  # classes 0, 2 -> label 1; class 1 -> 0; class 3 -> 2
    assert torch.equal(pooled, torch.tensor([[0.9, 0.3, 0.2], [0.1, 0.5, 0.7]]))


def test_benchmark_metric_on_real_specs() -> None:
    # Hateful memes: ROC AUC of the logit difference, by hand: 3 of 4 pairs ordered right.
    logits = torch.tensor([[0.0, 0.1], [0.0, 0.4], [0.0, 0.35], [0.0, 0.8]])
    memes = benchmark_metric(spec("hateful_memes"), logits, torch.tensor([0, 0, 1, 1]))
    assert memes["score"] == memes["roc_auc"] == pytest.approx(0.75) and memes["top1"] == pytest.approx(0.5)
    # Kinetics-700: (top1 + top5) / 2 over 700 classes.
    logits = torch.arange(700.0).repeat(2, 1)  # class 699 ranks first, 695 fifth
    kinetics = benchmark_metric(spec("kinetics700"), logits, torch.tensor([699, 695]))
    assert kinetics["score"] == pytest.approx((0.5 + 1.0) / 2)
    # VOC 2007: the mAP of the hand-worked example above, spread over 20 classes with positives only in two.
    scores, targets = torch.zeros(4, 20), torch.zeros(4, 20, dtype=torch.long)
    scores[:, 0], targets[:, 0] = torch.tensor([0.95, 0.9, 0.8, 0.7]), torch.tensor([-1, 1, 0, 1])
    scores[:, 1], targets[:, 1] = torch.tensor([0.9, 0.8, 0.7, 0.6]), torch.tensor([0, 1, 0, 0])
    assert benchmark_metric(spec("voc2007"), scores, targets)["score"] == pytest.approx((28 / 33 + 0.5) / 2)
    # Retrieval: recall@K both ways; the headline is image-to-text R@1.
    similarity = torch.tensor([[0.9, 0.1, 0.2], [0.3, 0.2, 0.8]])
    coco = benchmark_metric(spec("mscoco"), similarity, torch.tensor([0, 0, 1]))
    assert coco["score"] == coco["image_to_text_R@1"] == 1.0
    assert coco["text_to_image_R@1"] == pytest.approx(2 / 3)


def test_a_cells_paper_figures_come_from_the_real_specs_by_openai_name() -> None:
    """The two halves the table joins: a pretrained name -> the paper's model key -> the spec's figures by column."""
    from clipworks.evaluation.benchmark import paper_figures, paper_model

    model = paper_model("ViT-B/32")  # OpenAI's spelling of a pretrained name
    assert paper_figures(spec("cifar10"), "zeroshot", model) == {"cifar10": 91.3}
    assert paper_figures(spec("cifar10"), "linear-probe", model) == {"cifar10": 95.1}
    assert paper_figures(spec("imagenet_r"), "zeroshot", model) is None  # Table 16 prints ViT-L/14@336px only
    assert paper_figures(spec("imagenet_r"), "zeroshot", paper_model("ViT-L-14-336")) == {"imagenet_r": 88.9}
    assert paper_figures(spec("mscoco"), "retrieval", paper_model("ViT-L-14-336")) == {
        "mscoco image->text R@1": 58.4, "mscoco text->image R@1": 37.8}
    assert paper_figures(spec("cifar10"), "zeroshot", paper_model("ViT-B-32:laion2b_s34b_b79k")) is None
