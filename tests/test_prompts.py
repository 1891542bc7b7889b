"""Built-in class names and templates: counts and known entries of OpenAI's published lists; file parsing."""

from __future__ import annotations

from pathlib import Path

import pytest

from clipworks.evaluation import prompts


def test_imagenet_names_and_templates() -> None:
    assert len(prompts.IMAGENET_CLASSNAMES) == 1000
    assert prompts.IMAGENET_CLASSNAMES[0] == "tench" and prompts.IMAGENET_CLASSNAMES[999] == "toilet paper"
    # The notebook's clean-ups disambiguate WordNet homonyms.
    assert "crane bird" in prompts.IMAGENET_CLASSNAMES and "construction crane" in prompts.IMAGENET_CLASSNAMES
    assert len(set(prompts.IMAGENET_CLASSNAMES)) == 998  # OpenAI's list repeats "missile" and "sunglasses"
    assert len(prompts.IMAGENET_TEMPLATES) == 80 and len(set(prompts.IMAGENET_TEMPLATES)) == 80
    assert prompts.IMAGENET_TEMPLATES[0] == "a bad photo of a {}."
    assert prompts.IMAGENET_TEMPLATES[-1] == "a tattoo of the {}."
    assert len(prompts.IMAGENET_TEMPLATES_7) == 7 and set(prompts.IMAGENET_TEMPLATES_7) <= set(
        prompts.IMAGENET_TEMPLATES)
    assert prompts.IMAGENET_TEMPLATES_7[0] == "itap of a {}."


def test_cifar_names_and_templates() -> None:
    assert prompts.CIFAR10_CLASSNAMES == ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                                          "ship", "truck")
    assert len(prompts.CIFAR100_CLASSNAMES) == 100 and len(set(prompts.CIFAR100_CLASSNAMES)) == 100
    assert prompts.CIFAR100_CLASSNAMES[:2] == ("apple", "aquarium fish") and prompts.CIFAR100_CLASSNAMES[-1] == "worm"
    assert len(prompts.CIFAR_TEMPLATES) == 18 and prompts.CIFAR_TEMPLATES[0] == "a photo of a {}."


def test_every_template_has_one_slot() -> None:
    for templates in prompts.TEMPLATE_SETS.values():
        assert all(t.count("{}") == 1 for t in templates)
    assert prompts.templates("default") == ["a photo of a {}."]


def test_names_and_templates_from_files(tmp_path: Path) -> None:
    (tmp_path / "names.txt").write_text("# my classes\ncat\n\n dog \n")
    assert prompts.classnames(str(tmp_path / "names.txt")) == ["cat", "dog"]
    assert prompts.classnames("cifar10")[3] == "cat"
    (tmp_path / "t.txt").write_text("a photo of a {}.\na sketch of a {}.\n")
    assert prompts.templates(str(tmp_path / "t.txt")) == ["a photo of a {}.", "a sketch of a {}."]
    # Lines end at \r\n, \r or \n only: a form feed or U+2028 inside a line stays in it (str.splitlines cuts there).
    (tmp_path / "odd.txt").write_bytes("a photo of a {}.\r\na {}\u2028drawing.\ra {}\x0cmark.\n".encode())
    assert prompts.templates(str(tmp_path / "odd.txt")) == ["a photo of a {}.", "a {}\u2028drawing.", "a {}\x0cmark."]
    (tmp_path / "bad.txt").write_text("a photo\n")
    with pytest.raises(ValueError, match="has no '\\{\\}'"):
        prompts.templates(str(tmp_path / "bad.txt"))
    with pytest.raises(FileNotFoundError, match="not a built-in set"):
        prompts.classnames("imagenet21k")
    (tmp_path / "empty.txt").write_text("\n")
    with pytest.raises(ValueError, match="no class names"):
        prompts.classnames(str(tmp_path / "empty.txt"))
