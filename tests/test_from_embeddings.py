"""`clipworks index build --from-embeddings`: clip-retrieval-layout directories the tests write (.npy shards and
parquet metadata) and the real output of `clipworks embed`, a PQ index built under a budget that reaches recall@10
>= 0.9 on held-out queries, nprobe/efSearch tuned on caption embeddings too when there are any, `search` and `serve`
answering from the memory-mapped index file, and bad input as one line with exit code 2."""

import csv
import json
import subprocess
import sys
import time
from pathlib import Path

import faiss
import httpx
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from clipworks import cli
from clipworks.search.index import Index
from clipworks.search.store import Store

N, DIM = 12_000, 32


def clustered(n: int, dim: int, seed: int) -> np.ndarray:
    """(n, dim) float32 unit rows around 50 centres, spread in 6 directions each (a low intrinsic dimension, as
    embeddings have) plus a little isotropic noise."""
    rng, shape = np.random.default_rng(seed), np.random.default_rng(1234)  # the same clusters for every seed
    centres = shape.standard_normal((50, dim)).astype(np.float32)
    spreads = shape.standard_normal((50, 6, dim)).astype(np.float32) * 0.5
    c = rng.integers(0, 50, n)
    x = (centres[c] + np.einsum("nr,nrd->nd", rng.standard_normal((n, 6)).astype(np.float32), spreads[c])
         + 0.05 * rng.standard_normal((n, dim)).astype(np.float32))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def write_embeddings(directory: Path, vectors: np.ndarray, shards: int, paths: list[str] | None = None,
                     captions: list[str] | None = None, dtype: type = np.float16,
                     texts: np.ndarray | None = None) -> Path:
    """clip-retrieval's layout: img_emb/img_emb_NNNNN.npy and metadata/metadata_NNNNN.parquet, rows in order; with
    `texts`, the captions' embeddings in text_emb/text_emb_NNNNN.npy (what `clipworks embed --text` adds)."""
    (directory / "img_emb").mkdir(parents=True)
    (directory / "metadata").mkdir()
    if texts is not None:
        (directory / "text_emb").mkdir()
    paths = paths or [f"images/{i:06d}.jpg" for i in range(len(vectors))]
    captions = captions or [f"caption {i}" for i in range(len(vectors))]
    bounds = np.linspace(0, len(vectors), shards + 1).astype(int)
    for s, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
        np.save(directory / "img_emb" / f"img_emb_{s:05d}.npy", vectors[a:b].astype(dtype))
        if texts is not None:
            np.save(directory / "text_emb" / f"text_emb_{s:05d}.npy", texts[a:b].astype(dtype))
        pq.write_table(pa.table({"image_path": paths[a:b], "caption": captions[a:b], "index": list(range(a, b))}),
                       directory / "metadata" / f"metadata_{s:05d}.parquet")
    return directory


@pytest.fixture(scope="module")
def pq_index(tmp_path_factory) -> Path:
    """12k x 32 in 400 kB: flat (1.5 MB) and IVF-Flat (1.4 MB) do not fit; IVF-PQ with 16-byte codes does."""
    root = tmp_path_factory.mktemp("pq")
    source = write_embeddings(root / "emb", clustered(N, DIM, seed=0), shards=3)
    assert cli.main(["index", "build", "--from-embeddings", str(source), "--max-index-memory", "400kB",
                     "--out", str(root / "idx"), "--quiet"]) == 0
    return root / "idx"


def test_pq_index_under_a_budget_reaches_recall_09_on_held_out_queries(pq_index):
    manifest = json.loads((pq_index / "index.json").read_text())
    assert manifest["index"]["kind"] == "ivfpq" and manifest["index"]["pq_m"] == 16
    assert manifest["index"]["file_bytes"] <= 400_000 == manifest["max_index_memory"]
    assert (pq_index / "index.faiss").stat().st_size == manifest["index"]["file_bytes"]
    assert manifest["count"] == N and manifest["embed_dim"] == DIM

    # New vectors from the same distribution, never in the index; exact top-10 by brute force.
    database = clustered(N, DIM, seed=0).astype(np.float16).astype(np.float32)
    queries = clustered(300, DIM, seed=1)
    exact = np.argsort(-(queries @ database.T), axis=1)[:, :10]
    index = Index.load(pq_index)
    assert f"{pq_index / 'index.faiss'}" in Path("/proc/self/maps").read_text()  # memory-mapped, not read
    hits = index.search_vectors(queries, 10)
    recall = np.mean([len({h.id for h in row} & set(truth.tolist())) / 10 for row, truth in zip(hits, exact)])
    assert recall >= 0.9
    assert abs(recall - manifest["recall_at_10"]) < 0.05  # the estimate in index.json holds for new queries
    curve = manifest["recall_by_setting"]  # nprobe 1, 2, 4, ... until the target; the chosen one is recorded
    assert curve[str(manifest["spec"]["nprobe"])] == manifest["recall_at_10"]
    first = hits[0][0]
    assert (first.path, first.caption) == (f"images/{first.id:06d}.jpg", f"caption {first.id}")  # from parquet rows


@pytest.fixture(scope="module")
def model_embeddings(search_collection, tmp_path_factory) -> Path:
    """The search collection's 42 image embeddings (from its store), written as `clipworks embed` would."""
    store = Store(search_collection.index)
    ids, vectors = store.vectors(128)
    entries = store.entries([int(i) for i in ids])
    store.close()
    return write_embeddings(tmp_path_factory.mktemp("model") / "emb", vectors, shards=2, dtype=np.float32,
                            paths=[entries[int(i)].path for i in ids],
                            captions=[f"image {int(i)}" for i in ids])


@pytest.fixture(scope="module")
def model_index(search_collection, model_embeddings) -> Path:
    out = model_embeddings.parent / "idx"
    assert cli.main(["index", "build", "--from-embeddings", str(model_embeddings), "--max-index-memory", "1MB",
                     "--checkpoint", str(search_collection.checkpoint), "--out", str(out), "--quiet"]) == 0
    return out


def test_cli_search_answers_text_queries_from_the_mapped_index(search_collection, model_index, capsys):
    assert json.loads((model_index / "index.json").read_text())["index"]["kind"] == "flat"
    assert not (model_index / "items.sqlite").exists()
    opened = Index.load(model_index)
    assert f"{model_index / 'index.faiss'}" in Path("/proc/self/maps").read_text()  # the flat vectors are mapped
    del opened
    assert cli.main(["search", str(model_index), search_collection.red_query, "-k", "3", "--json"]) == 0
    results = json.loads(capsys.readouterr().out)["results"]
    assert results[0]["path"] == str(search_collection.red.resolve())
    assert results[0]["caption"].startswith("image ") and len(results) == 3


def test_the_output_of_clipworks_embed_is_indexed_and_found_by_text(search_collection, tmp_path, capsys):
    # The collection's CSV, with a missing image before the red one: embed leaves it out, so from there on a
    # global id (position in the shards) is no longer the input row, and the catalog must follow the parquet rows.
    with open(search_collection.captions, newline="") as f:
        rows = [(str(search_collection.captions.parent / r["filepath"]), r["caption"]) for r in csv.DictReader(f)]
    red = next(i for i, (path, _) in enumerate(rows) if path == str(search_collection.red))
    rows.insert(red, (str(tmp_path / "gone.png"), "a missing image"))
    table = tmp_path / "data.csv"
    with open(table, "w", newline="") as f:
        csv.writer(f).writerows([("filepath", "caption"), *rows])
    checkpoint = str(search_collection.checkpoint)
    assert cli.main(["embed", str(table), "--checkpoint", checkpoint, "--out", str(tmp_path / "emb"),
                     "--shard-size", "16", "--precision", "fp32", "--quiet"]) == 0  # fp16 vectors, 3 shards
    capsys.readouterr()
    assert cli.main(["index", "build", "--from-embeddings", str(tmp_path / "emb"), "--max-index-memory", "1MB",
                     "--checkpoint", checkpoint, "--out", str(tmp_path / "idx"), "--quiet"]) == 0
    manifest = json.loads((tmp_path / "idx" / "index.json").read_text())
    assert (manifest["count"], manifest["embed_dim"], manifest["index"]["kind"]) == (42, 128, "flat")

    assert cli.main(["search", str(tmp_path / "idx"), search_collection.red_query, "-k", "5", "--json"]) == 0
    found = json.loads(capsys.readouterr().out)["results"]
    caption_of = {path: caption for path, caption in rows}
    assert found[0]["path"] == str(search_collection.red)
    assert found[0]["id"] == red  # the 43-row input's row red + 1, shifted by the missing image
    assert all(hit["caption"] == caption_of[hit["path"]] for hit in found)  # ids map to their own rows
    index = Index.load(tmp_path / "idx")
    assert index.search(search_collection.blue_query, 1)[0].path == str(search_collection.blue)
    vectors = np.concatenate([np.load(f) for f in sorted((tmp_path / "emb" / "img_emb").glob("*.npy"))])
    assert [row[0].id for row in index.search_vectors(vectors.astype(np.float32), 1)] == list(range(42))


def test_serve_answers_from_the_mapped_index(search_collection, model_index):
    process = subprocess.Popen([sys.executable, "-m", "clipworks.cli", "serve", str(model_index), "--port", "0"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline()
        assert " at http://127.0.0.1:" in line, process.stderr.read() if process.poll() is not None else line
        url = line.split(" at ")[1].split("/ ")[0]
        deadline = time.monotonic() + 30
        while True:
            try:
                info = httpx.get(url + "/api/info", timeout=5).json()
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        assert (info["images"], info["kind"], info["embed_dim"]) == (42, "flat", 128)
        found = httpx.get(url + "/api/search", params={"q": search_collection.blue_query, "k": 2}, timeout=60).json()
        assert found["results"][0]["path"] == str(search_collection.blue.resolve())
        thumb = httpx.get(url + found["results"][0]["thumbnail"], timeout=10)
        assert thumb.status_code == 404 and "error" in thumb.json()  # embeddings come without thumbnails
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_a_model_of_another_dimension_is_refused(model_index, tmp_path, capsys):
    emb = write_embeddings(tmp_path / "emb", clustered(50, 64, seed=0), shards=1)
    out = tmp_path / "idx"
    assert cli.main(["index", "build", "--from-embeddings", str(emb), "--max-index-memory", "1MB", "--out",
                     str(out), "--quiet"]) == 0
    checkpoint = json.loads((model_index / "index.json").read_text())["checkpoint"]
    assert cli.main(["search", str(out), "a cat", "--checkpoint", checkpoint]) == 2
    assert "embeds into 128 dimensions but the vectors of" in capsys.readouterr().err


def _mismatched(root: Path) -> Path:
    emb = write_embeddings(root / "emb", clustered(100, 32, seed=0), shards=2)
    np.save(emb / "img_emb" / "img_emb_00001.npy", clustered(50, 64, seed=0))
    return emb


def _misaligned_captions(root: Path) -> Path:
    vectors = clustered(100, 32, seed=0)
    emb = write_embeddings(root / "emb", vectors, shards=2, texts=vectors)
    np.save(emb / "text_emb" / "text_emb_00001.npy", vectors[:49])
    return emb


def _captions_of_one_shard(root: Path) -> Path:
    vectors = clustered(100, 32, seed=0)
    emb = write_embeddings(root / "emb", vectors, shards=2, texts=vectors)
    (emb / "text_emb" / "text_emb_00001.npy").unlink()
    return emb


def _empty(root: Path) -> Path:
    (root / "emb" / "img_emb").mkdir(parents=True)
    return root / "emb"


def _short_metadata(root: Path) -> Path:
    emb = write_embeddings(root / "emb", clustered(100, 32, seed=0), shards=1)
    pq.write_table(pa.table({"image_path": ["a.jpg"]}), emb / "metadata" / "metadata_00000.parquet")
    return emb


@pytest.mark.parametrize("make, flags, message", [
    (_mismatched, ["--max-index-memory", "4GB"], "img_emb_00001.npy has dimension 64, but img_emb_00000.npy has 32"),
    (_empty, ["--max-index-memory", "4GB"], "holds no embeddings (no img_emb/img_emb_*.npy)"),
    (_misaligned_captions, ["--max-index-memory", "4GB"], "text_emb_00001.npy has shape (49, 32) but "
     "img_emb_00001.npy has (50, 32): caption embeddings must be row-aligned with the images"),
    (_captions_of_one_shard, ["--max-index-memory", "4GB"], "has caption embeddings for some shards but not "
     "text_emb_00001.npy; complete it with `clipworks embed --text`, or remove"),
    (lambda root: root / "nowhere", ["--max-index-memory", "4GB"], "does not exist"),
    (lambda root: write_embeddings(root / "emb", clustered(2000, 32, seed=0), shards=1),
     ["--max-index-memory", "20kB"], "no index of 2,000 vectors of dimension 32 fits in 20 kB"),
    (lambda root: write_embeddings(root / "emb", clustered(10, 32, seed=0), shards=1), [],
     "--from-embeddings needs --max-index-memory"),
    (lambda root: write_embeddings(root / "emb", clustered(10, 32, seed=0), shards=1),
     ["--max-index-memory", "lots"], "is not a memory size"),
    (_short_metadata, ["--max-index-memory", "4GB"], "has 1 rows but img_emb_00000.npy has 100"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, make, flags, message):
    source = make(tmp_path)
    assert cli.main(["index", "build", "--from-embeddings", str(source), *flags, "--out", str(tmp_path / "o"),
                     "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("clipworks index: error: ") and message in err, err
    assert not (tmp_path / "o" / "index.json").exists()


def test_the_images_path_still_needs_a_checkpoint(tmp_path, capsys):
    assert cli.main(["index", "build", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "give SRC and --checkpoint" in capsys.readouterr().err


@pytest.mark.parametrize("kind, flat_max, hnsw_max", [("hnsw", 1_000, 10_000), ("ivf", 1_000, 1_000)])
def test_hnsw_and_ivf_flat_are_built_mapped_and_tuned(tmp_path, monkeypatch, kind, flat_max, hnsw_max):
    from clipworks.search import budget

    monkeypatch.setattr(budget, "FLAT_MAX_N", flat_max)  # 4,000 vectors stand for the sizes these kinds are for
    monkeypatch.setattr(budget, "HNSW_MAX_N", hnsw_max)
    source = write_embeddings(tmp_path / "emb", clustered(4000, DIM, seed=0), shards=2)
    assert cli.main(["index", "build", "--from-embeddings", str(source), "--max-index-memory", "10MB", "--out",
                     str(tmp_path / "idx"), "--quiet"]) == 0
    manifest = json.loads((tmp_path / "idx" / "index.json").read_text())
    assert manifest["index"]["kind"] == kind and manifest["recall_at_10"] >= 0.95
    index = Index.load(tmp_path / "idx")
    assert f"{tmp_path / 'idx' / 'index.faiss'}" in Path("/proc/self/maps").read_text()
    database = clustered(4000, DIM, seed=0).astype(np.float16).astype(np.float32)
    hits = index.search_vectors(database[:5], 1)
    assert [row[0].id for row in hits] == [0, 1, 2, 3, 4]  # each row finds itself
    if kind == "hnsw":  # the graph was built with the plan's efConstruction, not faiss's default (40)
        assert faiss.downcast_index(index.faiss_index).hnsw.efConstruction == 80
        assert manifest["index"]["hnsw_ef_construction"] == 80


def captions_of(images: np.ndarray, seed: int) -> np.ndarray:
    """Stand-ins for the captions' embeddings: each image's vector plus isotropic noise (norm ~1.7 against 1), so
    a caption lies farther from its images than an image row from its neighbours, as CLIP's text embeddings do."""
    x = images + 0.3 * np.random.default_rng(seed).standard_normal(images.shape).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.mark.parametrize("kind, hnsw_max, setting", [("hnsw", 10_000, "ef_search"), ("ivf", 1_000, "nprobe")])
def test_caption_embeddings_tune_the_setting_for_text_queries(tmp_path, monkeypatch, kind, hnsw_max, setting):
    from clipworks.search import budget

    monkeypatch.setattr(budget, "FLAT_MAX_N", 1_000)  # 4,000 vectors stand for the sizes these kinds are for
    monkeypatch.setattr(budget, "HNSW_MAX_N", hnsw_max)
    images = clustered(4000, DIM, seed=0)
    manifests = {}
    for name, texts in (("images", None), ("captions", captions_of(images, seed=0))):
        source = write_embeddings(tmp_path / name / "emb", images, shards=2, texts=texts)
        assert cli.main(["index", "build", "--from-embeddings", str(source), "--max-index-memory", "10MB", "--out",
                         str(tmp_path / name / "idx"), "--quiet"]) == 0
        manifests[name] = json.loads((tmp_path / name / "idx" / "index.json").read_text())
    alone, both = manifests["images"], manifests["captions"]
    assert alone["index"]["kind"] == both["index"]["kind"] == kind

    # Without captions: as before, and index.json says for which queries the estimate holds.
    assert (alone["tuned_on"], alone["decided_by"]) == ("image rows", "image rows")
    assert "text_recall_at_10" not in alone and "image-like queries" in alone["recall_note"]
    assert alone["recall_at_10"] >= 0.95

    # With captions: a larger setting, reaching the target on both sets, both recorded for every setting tried.
    chosen, chosen_alone = both["spec"][setting], alone["spec"][setting]
    assert chosen > chosen_alone
    assert (both["tuned_on"], both["decided_by"]) == ("image rows and captions", "captions")
    assert both["recall_at_10"] >= 0.95 and both["text_recall_at_10"] >= 0.95
    assert both["text_recall_by_setting"].keys() == both["recall_by_setting"].keys()
    assert both["text_recall_by_setting"][str(chosen)] == both["text_recall_at_10"]
    assert both["text_recall_by_setting"][str(chosen_alone)] < 0.95  # what image rows alone would have given text
    assert both["recall_by_setting"][str(chosen_alone)] == alone["recall_at_10"]  # same rows, same index

    # New captions of other noise, never seen by the build: exact top-10 over the images by brute force.
    database = images.astype(np.float16).astype(np.float32)
    queries = captions_of(images[:300], seed=1)
    exact = np.argsort(-(queries @ database.T), axis=1)[:, :10]
    hits = Index.load(tmp_path / "captions" / "idx").search_vectors(queries, 10)
    recall = np.mean([len({h.id for h in row} & set(truth.tolist())) / 10 for row, truth in zip(hits, exact)])
    assert recall >= 0.93
