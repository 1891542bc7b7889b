"""Search index: build from a folder, CSV or shards; incremental and resumable builds; exact and approximate faiss
kinds; `clipworks index build` and `clipworks search`; the one-line message when the serve extra is missing."""

import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from clipworks import cli, tokenize
from clipworks.data.shard_files import write_shards
from clipworks.errors import SearchIndexError
from clipworks.io.checkpoints import save_checkpoint
from clipworks.models.clip import create_model
from clipworks.search.index import Index, IndexSpec


@pytest.fixture
def folder(search_collection, tmp_path: Path) -> Path:
    """A private, writable copy of the collection's images."""
    return Path(shutil.copytree(search_collection.images, tmp_path / "images"))


def test_text_query_ranks_the_only_image_of_its_colour_first(search_collection):
    index = Index.load(search_collection.index)
    assert len(index) == 42
    red = index.search(search_collection.red_query, k=5)
    blue = index.search(search_collection.blue_query, k=42)
    assert red[0].path == str(search_collection.red.resolve())
    assert blue[0].path == str(search_collection.blue.resolve())
    assert len(red) == 5 and len(blue) == 42
    scores = [hit.score for hit in blue]
    assert scores == sorted(scores, reverse=True) and -1.0 <= scores[-1] <= scores[0] <= 1.0
    assert (blue[0].width, blue[0].height, blue[0].size) == (64, 64, search_collection.blue.stat().st_size)


def test_image_query_finds_itself_with_cosine_one(search_collection):
    index = Index.load(search_collection.index)
    with Image.open(search_collection.red) as image:
        hits = index.search(image.copy(), k=3)
    assert hits[0].path == str(search_collection.red.resolve())
    assert hits[0].score == pytest.approx(1.0, abs=1e-5)
    vector = index.encode_text([search_collection.red_query])[0] * 7.0  # an embedding of any norm is normalised
    assert index.search(vector, k=1)[0].path == hits[0].path


def test_second_build_embeds_only_new_and_changed_files(search_collection, folder, tmp_path):
    out = tmp_path / "index"
    index, first = Index.build(folder, checkpoint=search_collection.checkpoint, out=out, progress=False)
    assert (first.embedded, first.unchanged, first.removed) == (42, 0, 0)
    ids = {hit.path: hit.id for hit in index.search(search_collection.red_query, k=42)}

    _, again = Index.build(folder, checkpoint=search_collection.checkpoint, out=out, progress=False)
    assert (again.embedded, again.unchanged, again.removed) == (0, 42, 0)

    files = sorted(folder.glob("*.png"))
    shutil.copy(search_collection.red, folder / "new.png")  # new
    files[0].unlink()  # removed
    Image.open(search_collection.blue).save(files[1])  # changed in place: now shows the blue image
    _, third = Index.build(folder, checkpoint=search_collection.checkpoint, out=out, progress=False)
    assert (third.embedded, third.unchanged, third.removed) == (2, 40, 1)

    index = Index.load(out)
    assert len(index) == 42
    hits = index.search(search_collection.blue_query, k=2)
    assert {h.path for h in hits} == {str(search_collection.blue.resolve()).replace(
        str(search_collection.images.resolve()), str(folder.resolve())), str(files[1].resolve())}
    assert {h.path: h.id for h in hits}[str(files[1].resolve())] == ids[str(files[1].resolve())]  # id kept
    assert str(files[0].resolve()) not in {h.path for h in index.search(search_collection.red_query, k=50)}


def test_a_build_killed_midway_resumes_where_its_last_chunk_ended(search_collection, folder, tmp_path, monkeypatch):
    from clipworks.models.clip import CLIP

    calls = {"n": 0}
    real = CLIP.encode_image

    def dies_on_third_batch(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # as a Ctrl-C or a kill would stop the loop
        return real(self, *args, **kwargs)

    monkeypatch.setattr(CLIP, "encode_image", dies_on_third_batch)
    out = tmp_path / "index"
    with pytest.raises(KeyboardInterrupt):
        Index.build(folder, checkpoint=search_collection.checkpoint, out=out, batch_size=8, chunk=8, progress=False)
    assert not (out / "index.faiss").exists()
    assert len(Index(out)) == 16  # two committed chunks of 8
    monkeypatch.setattr(CLIP, "encode_image", real)

    index, report = Index.build(folder, checkpoint=search_collection.checkpoint, out=out, batch_size=8, chunk=8,
                                progress=False)
    assert (report.embedded, report.unchanged) == (26, 16)
    fresh, _ = Index.build(folder, checkpoint=search_collection.checkpoint, out=tmp_path / "fresh", batch_size=8,
                           progress=False)
    ids, vectors = index.store.vectors(128)
    fresh_ids, fresh_vectors = fresh.store.vectors(128)
    assert np.array_equal(ids, fresh_ids) and np.array_equal(vectors, fresh_vectors)


def test_csv_and_shards_keep_captions_and_find_their_own_images(search_collection, tmp_path):
    index, report = Index.build(search_collection.captions, checkpoint=search_collection.checkpoint,
                                out=tmp_path / "csv", progress=False)
    assert report.embedded == 42
    hit = index.search(search_collection.red_query, k=1)[0]
    rows = dict(line.split(",", 1) for line in search_collection.captions.read_text().splitlines()[1:])
    assert hit.caption == rows[f"images/{search_collection.red.name}"].strip()

    samples = [(search_collection.red, "the red one", {}), (search_collection.blue, "the blue one", {})]
    shards = write_shards(samples * 3, tmp_path / "shards", samples_per_shard=4)
    spec = str(tmp_path / "shards" / "shard-{00000..00001}.tar")
    index, report = Index.build(spec, checkpoint=search_collection.checkpoint, out=tmp_path / "tars", progress=False)
    assert report.embedded == 6 and len(shards) == 2
    with Image.open(search_collection.blue) as image:
        hits = index.search(image.copy(), k=6)
    assert [h.caption for h in hits[:3]] == ["the blue one"] * 3
    assert hits[0].path.startswith(str(shards[0].resolve()) + "#") or hits[0].path.startswith(
        str(shards[1].resolve()) + "#")
    assert hits[0].score == pytest.approx(1.0, abs=1e-5)
    _, again = Index.build(spec, checkpoint=search_collection.checkpoint, out=tmp_path / "tars", progress=False)
    assert again.embedded == 0 and again.unchanged == 6


@pytest.mark.parametrize("spec", [IndexSpec("ivf", nlist=4, nprobe=4), IndexSpec("hnsw", hnsw_m=8, ef_search=64)])
def test_approximate_kinds_agree_with_flat_when_they_search_everything(search_collection, folder, tmp_path, spec):
    # nprobe = nlist (every cell) and a 42-vector graph: both are exhaustive here, so they must match flat exactly.
    index, _ = Index.build(folder, checkpoint=search_collection.checkpoint, out=tmp_path / "a", spec=spec,
                           progress=False)
    flat = Index.load(search_collection.index)
    for query in (search_collection.red_query, search_collection.blue_query, "a white heart"):
        assert [h.path.split("/")[-1] for h in index.search(query, k=10)] == [
            h.path.split("/")[-1] for h in flat.search(query, k=10)]
    reopened = Index.load(tmp_path / "a")
    assert reopened.spec == spec
    assert json.loads((tmp_path / "a" / "index.json").read_text())["spec"]["kind"] == spec.kind
    assert reopened.search(search_collection.red_query, k=1)[0].path.endswith(search_collection.red.name)


def test_an_index_is_only_searched_with_its_own_model(search_collection, tmp_path):
    other = save_checkpoint(tmp_path / "other", create_model("RN-Tiny"))
    index = Index.load(search_collection.index, checkpoint=other)
    with pytest.raises(SearchIndexError, match="is not the model .* was built with"):
        index.search("a red circle")


def test_stale_faiss_file_is_rebuilt_from_the_store(search_collection, folder, tmp_path):
    out = tmp_path / "index"
    index, _ = Index.build(folder, checkpoint=search_collection.checkpoint, out=out, progress=False)
    extra = tmp_path / "extra"
    extra.mkdir()
    shutil.copy(search_collection.red, extra / "late.png")
    index.add(extra, progress=False)  # committed to the store, index.faiss not rewritten (a build killed here)
    reopened = Index.load(out)
    assert len(reopened) == 43
    assert {h.path.split("/")[-1] for h in reopened.search(search_collection.red_query, k=2)} == {
        "late.png", search_collection.red.name}


def test_cli_build_and_search_table_and_json(search_collection, folder, tmp_path, capsys):
    out = tmp_path / "index"
    assert cli.main(["index", "build", str(folder), "--checkpoint", str(search_collection.checkpoint), "--out",
                     str(out), "--quiet", "--precision", "bf16", "--kind", "ivf"]) == 0
    assert "embedded 42 new or changed, 0 unchanged, 0 removed" in capsys.readouterr().out
    assert cli.main(["search", str(out), search_collection.blue_query, "-k", "3", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["results"][0]["path"] == str((folder / search_collection.blue.name).resolve())
    assert len(result["results"]) == 3
    assert cli.main(["search", str(out), "--image", str(folder / search_collection.red.name), "-k", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["rank", "score", "id", "path", "/", "caption"]
    assert lines[1].split()[0] == "1" and float(lines[1].split()[1]) >= 0.99  # bf16 index, query from `search`'s
    # own copy (precision auto: fp32 or bf16 by CPU class): ~0.999
    assert lines[1].split()[3] == str((folder / search_collection.red.name).resolve())


@pytest.mark.parametrize("argv, message", [
    (["search", "{tmp}/nowhere", "a cat"], "is not a search index (no index.json)"),
    (["search", "{index}"], "give a text query or --image PATH"),
    (["search", "{index}", "--image", "{tmp}/missing.png"], "image {tmp}/missing.png does not exist"),
    (["search", "{index}", "--image", "{tmp}/notes.jpg"], "is not a readable image"),
    (["index", "build", "{tmp}/empty", "--checkpoint", "{ckpt}", "--out", "{tmp}/o"], "no images under"),
    (["index", "build", "{tmp}/nothing", "--checkpoint", "{ckpt}", "--out", "{tmp}/o"], "does not exist"),
])
def test_cli_errors_are_one_line(search_collection, tmp_path, capsys, argv, message):
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes.jpg").write_text("not a picture")
    fill = dict(tmp=tmp_path, index=search_collection.index, ckpt=search_collection.checkpoint)
    assert cli.main([a.format(**fill) for a in argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("clipworks ") and ": error: " in err and message.format(**fill) in err
    assert "Traceback" not in capsys.readouterr().err


@pytest.mark.parametrize("module, argv", [("faiss", ["search", "{index}", "a cat"]),
                                          ("fastapi", ["serve", "{index}"]),
                                          ("uvicorn", ["serve", "{index}"])])
def test_missing_serve_extra_is_one_line_naming_the_extra(search_collection, capsys, monkeypatch, module, argv):
    monkeypatch.setitem(sys.modules, module, None)  # `import module` now raises ImportError
    assert cli.main([a.format(index=search_collection.index) for a in argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.endswith("pip install 'clipworks[serve]'")
    assert f"needs {module}" in err or "need faiss" in err


def test_files_are_written_with_normal_permissions(search_collection):
    for name in ("index.faiss", "index.json", "items.sqlite"):
        assert oct(os.stat(search_collection.index / name).st_mode & 0o777) == "0o644"


def test_builds_embed_through_an_optimized_copy_equal_to_the_model(search_collection, folder, tmp_path):
    # Index.add embeds with optimize_for_inference at the index's precision; queries use the same copy.
    built = {}
    for bf16 in (False, True):
        built[bf16], report = Index.build(folder, checkpoint=search_collection.checkpoint, out=tmp_path / str(bf16),
                                          batch_size=16, precision="bf16" if bf16 else "fp32", progress=False)
        assert report.embedded == 42
    index = built[False]
    ids, vectors = index.store.vectors(128)
    bf16_ids, bf16_vectors = built[True].store.vectors(128)
    assert np.array_equal(ids, bf16_ids)
    entries = index.store.entries([int(i) for i in ids])
    paths = [entries[int(i)].path for i in ids]
    with torch.no_grad():
        eager = torch.nn.functional.normalize(index.model.encode_image(torch.stack(
            [index.preprocess(Image.open(path)) for path in paths])), dim=-1).numpy()
    assert np.abs(vectors - eager).max() < 1e-5  # fp32: the eager model's embeddings
    assert np.abs(np.linalg.norm(bf16_vectors, axis=1) - 1).max() < 1e-5  # normalised in fp32
    assert (eager * bf16_vectors).sum(axis=1).min() > 0.999  # bf16: cosine per image
    red = str((folder / search_collection.red.name).resolve())
    assert built[True].search(search_collection.red_query, k=1)[0].path == red
    # Queries go through the same copy: bf16 for the bf16 index; for the fp32 one, equal to the model.
    assert built[True].query_model.dtype == torch.bfloat16 and index.query_model.dtype == torch.float32
    with torch.no_grad():
        tokens = tokenize([search_collection.red_query], context_length=index.model.context_length)
        text = index.model.encode_text(tokens, normalize=True).numpy()
        image = index.model.encode_image(index.preprocess(Image.open(paths[0])).unsqueeze(0), normalize=True).numpy()
    assert np.abs(index.encode_text([search_collection.red_query]) - text).max() < 1e-5
    assert np.abs(index.encode_image(Image.open(paths[0])) - image).max() < 1e-5
