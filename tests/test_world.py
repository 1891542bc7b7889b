"""The generated world: determinism, held-out pairs, caption grammar, rendering, cache and export."""

from __future__ import annotations

import csv
import re
from collections import Counter

import numpy as np
import pytest
from PIL import Image

from clipworks.data.world import (
    BACKGROUNDS,
    COLOURS,
    MIN_CONTRAST,
    NUMBER_WORDS,
    PLURALS,
    SHAPES,
    Attributes,
    World,
    WorldConfig,
    noun_phrase,
)

N = 1500  # samples per split checked for distribution properties


@pytest.fixture(scope="module")
def world() -> World:
    return World()


@pytest.fixture(scope="module")
def train(world: World) -> tuple[np.ndarray, list[str], list[Attributes]]:
    return world.arrays("train", N)


def _words(caption: str) -> list[str]:
    return re.findall(r"[a-z]+", caption)


def test_samples_are_pure_functions_of_seed_split_index(world: World) -> None:
    a, b = world.sample("train", 17), World(WorldConfig()).sample("train", 17)
    assert a.caption == b.caption and a.attributes == b.attributes
    assert a.image.tobytes() == b.image.tobytes()
    images, captions, _ = world.arrays("train", 20)
    assert images[17].tobytes() == a.image.tobytes() and captions[17] == a.caption
    assert world.sample("train", 18).image.tobytes() != a.image.tobytes()
    assert world.sample("val", 17).image.tobytes() != a.image.tobytes()
    assert World(WorldConfig(seed=1)).sample("train", 17).image.tobytes() != a.image.tobytes()


def test_image_is_rgb_at_configured_size() -> None:
    image = World(WorldConfig(image_size=96, supersample=2)).sample("val", 0).image
    assert image.mode == "RGB" and image.size == (96, 96)


def test_heldout_pairs_only_in_heldout_split(world: World, train) -> None:
    heldout = set(world.heldout_pairs)
    assert len(heldout) == 8
    _, _, val = world.arrays("val", N)
    for attrs in [*train[2], *val]:
        assert (attrs.colour, attrs.shape) not in heldout
    _, _, held = world.arrays("heldout", 300)
    assert {(a.colour, a.shape) for a in held} == heldout


def test_every_colour_and_shape_is_seen_in_training(train) -> None:
    attrs = train[2]
    assert {a.colour for a in attrs} == set(COLOURS)
    assert {a.shape for a in attrs} == set(SHAPES)
    assert {a.count for a in attrs} == {1, 2, 3}


def test_heldout_pairs_leave_each_colour_and_shape_at_most_two_out(world: World) -> None:
    colours = Counter(c for c, _ in world.heldout_pairs)
    shapes = Counter(s for _, s in world.heldout_pairs)
    assert max(colours.values()) <= 2 and max(shapes.values()) <= 2


def test_holding_out_all_of_a_colour_is_refused() -> None:
    with pytest.raises(ValueError, match="no training example of it"):
        World(WorldConfig(heldout_pairs=tuple(("red", s) for s in SHAPES)))


def test_unknown_split_is_refused(world: World) -> None:
    with pytest.raises(ValueError, match="train, val, heldout"):
        world.sample("test", 0)  # type: ignore[arg-type]


def test_captions_name_colour_and_shape_with_correct_number(train) -> None:
    for caption, a in zip(train[1], train[2]):
        words = _words(caption)
        assert a.colour in words, caption
        if a.count == 1:
            assert a.shape in words and PLURALS[a.shape] not in words, caption
            assert "are" not in words, caption
        else:
            assert PLURALS[a.shape] in words and a.shape not in words, caption
            assert NUMBER_WORDS[a.count] in words and "is" not in words, caption
        assert " a orange" not in caption and " a a" not in caption, caption


def test_caption_mentions_are_truthful(train) -> None:
    for caption, a in zip(train[1], train[2]):
        words = set(_words(caption))
        assert not words & (set(COLOURS) - {a.colour}), caption
        assert not words & {"small", "large"} - {a.size}, caption
        for other in set(BACKGROUNDS) - {a.background}:
            if f" {other} background" in caption:
                assert other in a.background, caption  # "gray" inside "dark gray" is fine


def test_captions_are_varied(train) -> None:
    captions = train[1]
    assert len(set(captions)) > len(captions) // 2
    assert any(c.startswith("a photo of") for c in captions)
    assert any("background" in c for c in captions)
    assert any(" in the center" in c or " in the middle" in c for c in captions)


def test_noun_phrases_and_plurals() -> None:
    assert PLURALS["cross"] == "crosses" and PLURALS["star"] == "stars"
    assert noun_phrase("orange", "star") == "an orange star"
    assert noun_phrase("red", "cross", count=2, size="small") == "two small red crosses"
    assert noun_phrase("green", "heart", count=3, colour_last=True) == "three hearts in green"
    assert noun_phrase("blue", "circle", size="large", say_one=True) == "one large blue circle"


def test_backgrounds_stay_far_from_object_colour(train) -> None:
    for a in train[2]:
        rgb, bg = COLOURS[a.colour], BACKGROUNDS[a.background]
        assert sum((x - y) ** 2 for x, y in zip(rgb, bg)) ** 0.5 >= MIN_CONTRAST


@pytest.mark.parametrize("colour", list(COLOURS))
def test_object_colour_dominates_the_foreground(world: World, colour: str) -> None:
    attrs = Attributes(colour=colour, shape="square", size="small", position="center", count=1,
                       background=world.backgrounds_for[colour][0], variation=3)
    pixels = np.asarray(world.render(attrs)).reshape(-1, 3).astype(int)
    bg_pixels = np.abs(pixels - BACKGROUNDS[attrs.background]).max(axis=1) <= world.config.background_jitter
    foreground = pixels[~bg_pixels]
    assert 0.5 < bg_pixels.mean() < 0.97  # mostly background, with a visible object
    (top, count), = Counter(map(tuple, foreground)).most_common(1)
    assert count > 0.5 * len(foreground)  # edges are blends; the interior is one flat colour
    assert max(abs(t - c) for t, c in zip(top, COLOURS[colour])) <= world.config.colour_jitter


def test_groups_of_large_shapes_do_not_touch(world: World) -> None:
    # Three large circles on the left: the background must show between them in their column.
    attrs = Attributes(colour="red", shape="circle", size="large", position="left", count=3, background="gray",
                       variation=0)
    image = np.asarray(world.render(attrs)).astype(int)
    column = image[:, image.shape[1] // 4 - 2: image.shape[1] // 4 + 3]
    redness = (column[..., 0] - column[..., 1]).mean(axis=1) > 60  # (H,) rows crossing a circle
    runs = np.diff(np.concatenate([[0], redness.astype(int), [0]]))
    assert (runs == 1).sum() == 3


def test_cache_round_trip_does_not_render_again(world: World, tmp_path, monkeypatch) -> None:
    first = world.arrays("val", 40, cache_dir=tmp_path)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert len(files) == 1 and files[0].endswith(".npz")  # no temporary files left behind

    def refuse(*args, **kwargs):
        raise AssertionError("render called although the cache exists")

    monkeypatch.setattr(World, "render", refuse)
    second = world.arrays("val", 40, cache_dir=tmp_path)
    assert np.array_equal(first[0], second[0]) and second[0].dtype == np.uint8
    assert first[1] == second[1] and first[2] == second[2]
    with pytest.raises(AssertionError, match="render called"):
        world.arrays("val", 41, cache_dir=tmp_path)  # a different n is a different cache entry


def test_export_writes_readable_csv_and_images(world: World, tmp_path) -> None:
    out = world.export("train", 12, tmp_path / "flat", task="colour")
    with open(out / "captions.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    with open(out / "labels.csv", newline="") as f:
        labels = list(csv.DictReader(f))
    assert len(rows) == len(labels) == 12
    for i, (row, label) in enumerate(zip(rows, labels)):
        sample = world.sample("train", i)
        assert row["caption"] == sample.caption and label["label"] == sample.attributes.colour
        assert np.array_equal(np.asarray(Image.open(out / row["filepath"])), np.asarray(sample.image))

    folders = world.export("heldout", 12, tmp_path / "folders", task="combination", class_folders=True)
    classes = {p.name for p in (folders / "combination").iterdir()}
    assert classes <= {f"{c} {s}" for c, s in world.heldout_pairs} and classes


def test_zero_shot_tasks_prompt_like_captions(world: World) -> None:
    tasks = world.zero_shot_tasks()
    assert set(tasks) == {"colour", "shape", "size", "count", "position", "combination"}
    assert [t("orange") for t in tasks["colour"].templates[9:12]] == [
        "an orange star", "two orange stars", "three orange stars"]  # ensembled over shapes and counts
    assert tasks["count"].templates[0]("two").startswith("two ") and tasks["count"].templates[0]("two").endswith("s")
    assert tasks["position"].templates[0]("top").endswith("at the top")
    combination = tasks["combination"]
    assert len(combination.classnames) == 48 and combination.split == "heldout"
    assert [t("red cross") for t in combination.templates] == [
        "a red cross", "two red crosses", "three red crosses",
        "a photo of a red cross", "a photo of two red crosses", "a photo of three red crosses"]
    sample = world.sample("heldout", 0)
    assert combination.classnames[combination.label(sample.attributes)] == (
        f"{sample.attributes.colour} {sample.attributes.shape}")
    assert tasks["count"].label(sample.attributes) == sample.attributes.count - 1


@pytest.mark.parametrize("style", ["outline", "texture", "noise", "unseen-background"])
def test_styles_render_the_same_scene_differently_and_deterministically(style: str) -> None:
    flat, shifted = World(), World(WorldConfig(style=style))
    index = next(i for i in range(100) if flat.sample("val", i).attributes.size == "large")  # outlines show best
    a, b = flat.sample("val", index), shifted.sample("val", index)
    assert a.attributes == b.attributes and a.caption == b.caption  # same scene, only the painting differs
    assert b.image.mode == "RGB" and b.image.size == a.image.size
    assert b.image.tobytes() != a.image.tobytes()
    assert World(WorldConfig(style=style)).sample("val", index).image.tobytes() == b.image.tobytes()
    pixels, plain = np.asarray(b.image).astype(int), np.asarray(a.image).astype(int)
    if style == "outline":  # the interior of a filled shape shows the background again: fewer object pixels
        colour = np.array(COLOURS[a.attributes.colour])
        near = lambda im: (np.abs(im - colour).sum(-1) < 60).sum()  # noqa: E731
        assert near(pixels) < 0.8 * near(plain)
    if style == "noise":
        assert 20 < np.abs(pixels - plain).mean() < 40
    if style == "unseen-background":
        corner = tuple(pixels[0, 0])
        assert all(np.abs(np.array(corner) - np.array(rgb)).sum() > 30 for rgb in BACKGROUNDS.values())


def test_flat_style_keeps_the_cache_key_and_unknown_styles_are_refused(tmp_path) -> None:
    World().arrays("val", 4, cache_dir=tmp_path)
    World(WorldConfig(style="noise")).arrays("val", 4, cache_dir=tmp_path)
    names = sorted(p.name for p in tmp_path.glob("*.npz"))
    assert len(names) == 2  # one entry per style
    with pytest.raises(ValueError, match="unknown style"):
        World(WorldConfig(style="sketch"))
