"""Pretrained weights by name: the downloader (verify, resume, lock, mirror, offline) and the names that reach it,
against a loopback HTTP server serving files these tests make. No test touches the internet."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from fileserver import serving
from safetensors.torch import save_file

import clipworks
from clipworks import cli
from clipworks.errors import CheckpointError, DiskFullError
from clipworks.io import pretrained
from clipworks.io.download import DownloadError, fetch
from clipworks.io.hub import fetch_repo
from clipworks.io.pretrained import PRETRAINED, Pretrained

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private cache; no mirror, online, Hub files in their own cache."""
    monkeypatch.setenv("CLIPWORKS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    for var in ("CLIPWORKS_MIRROR", "CLIPWORKS_OFFLINE", "HF_HUB_OFFLINE", "HF_ENDPOINT"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def tiny_weights() -> bytes:
    """RN-Tiny's weights as OpenAI-layout `torch.save(state_dict)` bytes (seeded)."""
    torch.manual_seed(0)
    buffer = io.BytesIO()
    torch.save(clipworks.create_model("RN-Tiny").state_dict(), buffer)
    return buffer.getvalue()


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _register(monkeypatch: pytest.MonkeyPatch, url: str, data: bytes) -> Pretrained:
    entry = Pretrained("RN-Tiny", "openai", "quick_gelu", url=url, sha256=_sha(data))
    monkeypatch.setitem(PRETRAINED, entry.name, entry)
    return entry


def _encode(model: clipworks.CLIP) -> torch.Tensor:
    torch.manual_seed(1)
    return model.encode_image(torch.randn(2, 3, 64, 64))


def test_download_verifies_caches_and_loads_by_name(cache: Path, tiny_weights: bytes,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    with serving() as server:
        path = f"/clip/models/{_sha(tiny_weights)}/RN-Tiny.pt"
        server.files[path] = tiny_weights
        entry = _register(monkeypatch, server.url + path, tiny_weights)
        model, preprocess = clipworks.load("RN-Tiny")  # a bare architecture name means its OpenAI weights
        again, _ = clipworks.load("openai/RN-Tiny")  # from the cache: no second request
        assert server.gets[path] == 1
    cached = cache / "pretrained" / "openai" / "RN-Tiny.pt"
    assert entry.path == cached and cached.read_bytes() == tiny_weights
    assert sorted(p.name for p in cached.parent.iterdir()) == [".RN-Tiny.pt.lock", ".RN-Tiny.pt.sha256", "RN-Tiny.pt"]
    state = torch.load(io.BytesIO(tiny_weights), weights_only=True)
    reference = clipworks.create_model("RN-Tiny")
    reference.load_state_dict(state)
    assert torch.allclose(_encode(model), _encode(reference.eval()), atol=1e-6)
    assert torch.equal(_encode(model), _encode(again))
    assert preprocess.size == 64


def test_cut_download_resumes_with_range(cache: Path, tiny_weights: bytes) -> None:
    dest = cache / "w.pt"
    with serving() as server:
        server.files["/w.pt"] = tiny_weights
        half = len(tiny_weights) // 2
        server.cut_once["/w.pt"] = half
        with pytest.raises(DownloadError, match=r"cut after .* run again to resume"):
            fetch(server.url + "/w.pt", dest, sha256=_sha(tiny_weights), progress=False)
        part = cache / ".w.pt.part"
        assert part.stat().st_size == half and not dest.exists()
        fetch(server.url + "/w.pt", dest, sha256=_sha(tiny_weights), progress=False)
        assert server.ranges == [f"bytes={half}-"]
    assert dest.read_bytes() == tiny_weights and not part.exists()


def test_checksum_mismatch_deletes_everything_and_shows_both_hashes(cache: Path, tiny_weights: bytes) -> None:
    wrong = "0" * 64
    with serving() as server:
        server.files["/w.pt"] = tiny_weights
        with pytest.raises(DownloadError) as e:
            fetch(server.url + "/w.pt", cache / "w.pt", sha256=wrong, progress=False)
    assert f"expected {wrong}, got {_sha(tiny_weights)}" in str(e.value)
    assert [p.name for p in cache.iterdir()] == [".w.pt.lock"]  # no weights, no part


def test_a_corrupted_cached_file_is_detected_and_fetched_again(cache: Path, tiny_weights: bytes) -> None:
    dest = cache / "w.pt"
    with serving() as server:
        server.files["/w.pt"] = tiny_weights
        fetch(server.url + "/w.pt", dest, sha256=_sha(tiny_weights), progress=False)
        dest.write_bytes(b"x" + tiny_weights[1:])  # a changed file: its size/mtime note no longer matches
        fetch(server.url + "/w.pt", dest, sha256=_sha(tiny_weights), progress=False)
        assert server.gets["/w.pt"] == 2
    assert dest.read_bytes() == tiny_weights


def test_http_404_and_no_network_are_one_line_naming_the_url(cache: Path) -> None:
    with serving() as server:
        url = server.url + "/missing.pt"
        with pytest.raises(DownloadError, match=r"could not download .*/missing.pt: HTTP 404 .*curl -L -o"):
            fetch(url, cache / "m.pt", progress=False)
    with pytest.raises(DownloadError, match=r"could not download http://127.0.0.1:9/x.pt: .*by hand"):
        fetch("http://127.0.0.1:9/x.pt", cache / "x.pt", progress=False)  # nothing listens on port 9


def test_a_stalled_server_times_out_and_the_next_call_resumes(cache: Path, tiny_weights: bytes) -> None:
    dest = cache / "w.pt"
    with serving() as server:
        server.files["/w.pt"] = tiny_weights
        server.delay = 2.0  # one 64 KB chunk, then silence longer than the timeout
        with pytest.raises(DownloadError, match=r"download of .*/w.pt cut after 0.1 MB \(timed out\); run again"):
            fetch(server.url + "/w.pt", dest, sha256=_sha(tiny_weights), progress=False, timeout=0.5)
        server.delay = 0.0
        fetch(server.url + "/w.pt", dest, sha256=_sha(tiny_weights), progress=False)
        assert server.ranges == [f"bytes={1 << 16}-"]
    assert dest.read_bytes() == tiny_weights


def test_full_disk_is_one_error_and_leaves_no_part(cache: Path, tiny_weights: bytes,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("clipworks.io.files.free_bytes", lambda directory: 1000)
    with serving() as server:
        server.files["/w.pt"] = tiny_weights
        with pytest.raises(DiskFullError, match=r"no space left on the device of .*MB needed"):
            fetch(server.url + "/w.pt", cache / "w.pt", sha256=_sha(tiny_weights), progress=False)
    assert not (cache / "w.pt").exists() and not (cache / ".w.pt.part").exists()


def test_a_real_full_disk_mid_download(tmp_path: Path) -> None:
    """On a 1 MB tmpfs, a 3 MB body of unannounced length: ENOSPC mid-write is one error, and no part is left."""
    from test_files import _small_tmpfs

    data = os.urandom(3 << 20)
    with _small_tmpfs(tmp_path / "small", "1m") as small, serving() as server:
        server.files["/big.pt"] = data
        server.no_length.add("/big.pt")
        with pytest.raises(DiskFullError, match=f"no space left on the device of {small}"):
            fetch(server.url + "/big.pt", small / "big.pt", sha256=_sha(data), progress=False)
        assert [p.name for p in small.iterdir()] == [".big.pt.lock"]


def test_mirror_serves_openai_paths(cache: Path, tiny_weights: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    """CLIPWORKS_MIRROR: OpenAI's URL path on another server; a mirror with a wrong file fails the SHA-256 check."""
    sha = _sha(tiny_weights)
    _register(monkeypatch, f"https://openaipublic.azureedge.net/clip/models/{sha}/RN-Tiny.pt", tiny_weights)
    with serving() as server:
        server.files[f"/clip/models/{sha}/RN-Tiny.pt"] = tiny_weights
        vit = PRETRAINED["ViT-B-32:openai"]
        server.files[f"/clip/models/{vit.sha256}/ViT-B-32.pt"] = b"not the weights"
        monkeypatch.setenv("CLIPWORKS_MIRROR", server.url + "/")
        model, _ = clipworks.load("RN-Tiny:openai")
        with pytest.raises(DownloadError, match=f"SHA-256 mismatch: expected {vit.sha256}"):
            clipworks.load("ViT-B/32")
    assert model.config.vision.width == 16
    assert not vit.path.exists()


def test_offline_loads_a_cached_file_and_names_the_missing_one(cache: Path, tiny_weights: bytes,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    with serving() as server:
        path = "/w/RN-Tiny.pt"
        server.files[path] = tiny_weights
        entry = _register(monkeypatch, server.url + path, tiny_weights)
        monkeypatch.setenv("CLIPWORKS_OFFLINE", "1")
        with pytest.raises(DownloadError) as e:
            clipworks.load("RN-Tiny")
        assert f"download {entry.url} (SHA-256 {entry.sha256}) on a connected machine and place it at " \
               f"{entry.path}" in str(e.value)
        entry.path.parent.mkdir(parents=True)
        entry.path.write_bytes(tiny_weights)  # placed by hand
        monkeypatch.setenv("CLIPWORKS_OFFLINE", "0")
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
        model, _ = clipworks.load("RN-Tiny")
        assert sum(server.gets.values()) == 0
    assert model.config.text.width == 128


_LOAD_BY_NAME = """
import sys, time, clipworks
from clipworks.io.pretrained import PRETRAINED, Pretrained
entry = Pretrained("RN-Tiny", "openai", "quick_gelu", url=sys.argv[1], sha256=sys.argv[2])
PRETRAINED[entry.name] = entry
start = time.time()
model, _ = clipworks.load("RN-Tiny")
print(sum(p.numel() for p in model.parameters()), start, time.time())
"""


def test_two_processes_loading_one_name_download_it_once(cache: Path, tiny_weights: bytes) -> None:
    with serving() as server:
        server.files["/w/RN-Tiny.pt"] = tiny_weights
        server.delay = 0.01  # a ~5 s body: both processes are inside the download at once
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
        args = [sys.executable, "-c", _LOAD_BY_NAME, server.url + "/w/RN-Tiny.pt", _sha(tiny_weights)]
        procs = [subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(2)]
        outs = [p.communicate(timeout=120) for p in procs]
        assert [p.returncode for p in procs] == [0, 0], outs
        assert server.gets["/w/RN-Tiny.pt"] == 1
    n = sum(p.numel() for p in clipworks.create_model("RN-Tiny").parameters())
    rows = [out.split() for out, _ in outs]
    assert [int(row[0]) for row in rows] == [n, n]
    starts, ends = [float(row[1]) for row in rows], [float(row[2]) for row in rows]
    assert max(starts) < min(ends)  # both were loading at once: one waited for the other's download


def test_names_and_closest_names() -> None:
    assert pretrained.find("ViT-B/32") is PRETRAINED["ViT-B-32:openai"]
    assert pretrained.find("ViT-L/14@336px") is PRETRAINED["ViT-L-14-336:openai"]
    assert pretrained.find("openai/RN50x4") is PRETRAINED["RN50x4:openai"]
    assert pretrained.find("vit-b-32", "LAION2B_S34B_B79K") is PRETRAINED["ViT-B-32:laion2b_s34b_b79k"]
    assert pretrained.find("ViT-B-32-quickgelu:metaclip_400m") is PRETRAINED["ViT-B-32:metaclip_400m"]
    assert pretrained.find("ViT-B-32-quickgelu:laion2b_s34b_b79k") is None  # trained with GELU
    assert pretrained.find("ViT-H-14") is None  # no OpenAI release: a tag is needed
    entry = PRETRAINED["ViT-L-14:laion2b_s32b_b82k"]
    assert (entry.activation, entry.preprocess.mean, entry.preprocess.std) == ("gelu", (0.5,) * 3, (0.5,) * 3)
    assert entry.preprocess.resize_mode == "shortest"
    assert PRETRAINED["ViT-H-14:dfn5b"].preprocess.resize_mode == "squash"
    assert len([p for p in PRETRAINED.values() if p.tag == "openai"]) == 9
    with pytest.raises(CheckpointError, match=r"ViT-B-33: no such file .* Did you mean ViT-B-32, ViT-B-16"):
        clipworks.load("ViT-B-33")


def test_every_pretrained_architecture_is_in_the_registry() -> None:
    for entry in PRETRAINED.values():
        assert entry.config.activation == entry.activation, entry.name


def test_cli_lists_pretrained_and_refuses_unknown_names(cache: Path, capsys: pytest.CaptureFixture) -> None:
    assert cli.main(["pretrained"]) == 0
    out = capsys.readouterr().out
    vit = PRETRAINED["ViT-B-32:openai"]
    assert f"ViT-B-32:openai" in out and vit.sha256 in out and vit.url in out
    assert "ViT-bigG-14:laion2b_s39b_b160k" in out and "hf-hub:laion/CLIP-ViT-bigG-14-laion2B-39B-b160k" in out
    assert cli.main(["convert", "ViT-B-31", str(cache / "out"), "--to", "native"]) == 2
    assert "ViT-B-31: no such file or directory, and not a pretrained name. Did you mean" in capsys.readouterr().err


def test_cli_takes_a_name_wherever_it_takes_a_checkpoint(cache: Path, tiny_weights: bytes,
                                                          capsys: pytest.CaptureFixture,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    with serving() as server:
        server.files["/w/RN-Tiny.pt"] = tiny_weights
        entry = _register(monkeypatch, server.url + "/w/RN-Tiny.pt", tiny_weights)
        assert cli.main(["pretrained", "--download", "RN-Tiny"]) == 0
        assert capsys.readouterr().out == f"RN-Tiny:openai: {entry.path}\n"
        assert cli.main(["convert", "RN-Tiny", str(cache / "converted"), "--to", "native"]) == 0
        assert server.gets["/w/RN-Tiny.pt"] == 1  # convert used the cache
    capsys.readouterr()
    assert cli.main(["pretrained", "--cached"]) == 0
    rows = capsys.readouterr().out.splitlines()[1:]
    assert len(rows) == 1 and rows[0].split()[:3] == ["RN-Tiny:openai", f"{len(tiny_weights) / 1e6:,.0f}", "MB"]
    assert rows[0].split()[3:5] == ["yes", entry.sha256]
    model, _ = clipworks.load(cache / "converted")
    reference, _ = clipworks.load("RN-Tiny")
    assert torch.equal(_encode(model), _encode(reference))


# ---------------------------------------------------------------- hf-hub:


def _open_clip_repo() -> dict[str, bytes]:
    import json

    torch.manual_seed(2)
    model = clipworks.create_model("ViT-Tiny")
    path = Path(os.environ["CLIPWORKS_CACHE"]).parent / "oc.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    config = {"model_cfg": {"embed_dim": 128, "vision_cfg": {"image_size": 64, "layers": 4, "width": 192,
                                                             "patch_size": 8},
                            "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 128, "heads": 2,
                                         "layers": 4}},
              "preprocess_cfg": {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}}
    return {"open_clip_config.json": json.dumps(config).encode(), "open_clip_model.safetensors": path.read_bytes()}


def _transformers_repo(tmp: Path) -> dict[str, bytes]:
    from transformers import CLIPConfig, CLIPModel

    torch.manual_seed(3)
    config = CLIPConfig(text_config={"hidden_size": 64, "intermediate_size": 256, "num_hidden_layers": 2,
                                     "num_attention_heads": 2, "max_position_embeddings": 32},
                        vision_config={"hidden_size": 64, "intermediate_size": 256, "num_hidden_layers": 2,
                                       "num_attention_heads": 2, "image_size": 32, "patch_size": 8},
                        projection_dim=32)
    CLIPModel(config).save_pretrained(tmp / "hf")
    return {p.name: p.read_bytes() for p in (tmp / "hf").iterdir()}


def test_hf_hub_open_clip_and_transformers_repos_through_hf_endpoint(cache: Path, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    oc, hf = _open_clip_repo(), _transformers_repo(tmp_path)
    for name, files in (("oc", oc), ("hf", hf)):  # the same files from a local directory: the reference
        (tmp_path / f"local-{name}").mkdir()
        for file, data in files.items():
            (tmp_path / f"local-{name}" / file).write_bytes(data)
    with serving() as server:
        server.hub = {"org/open-clip-tiny": oc, "org/hf-tiny": hf}
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        for name, repo in (("oc", "org/open-clip-tiny"), ("hf", "org/hf-tiny")):
            model, preprocess = clipworks.load(f"hf-hub:{repo}")
            local, local_preprocess = clipworks.load(tmp_path / f"local-{name}")
            size = model.image_size
            torch.manual_seed(4)
            images = torch.randn(2, 3, size, size)
            assert torch.equal(model.encode_image(images), local.encode_image(images))
            assert preprocess == local_preprocess
        weights = fetch_repo("hf-hub:org/open-clip-tiny")  # a snapshot may also hold timm's files: never taken for HF's
        (weights.parent / "config.json").write_text('{"architecture": "vit_base_patch32_clip_224"}')
        (weights.parent / "model.safetensors").write_bytes(b"timm's weights")
        assert clipworks.load("hf-hub:org/open-clip-tiny")[0].config.vision.width == 192
        with pytest.raises(CheckpointError, match=r"hf-hub:org/nope: no such repository at http://127.0.0.1"):
            clipworks.load("hf-hub:org/nope")
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # cached: loads without the network
        before = sum(server.gets.values())
        model, _ = clipworks.load("hf-hub:org/open-clip-tiny")
        assert sum(server.gets.values()) == before
        with pytest.raises(DownloadError, match=r"offline mode .* hf-hub:org/never-fetched has no"):
            clipworks.load("hf-hub:org/never-fetched")


def test_open_clip_tag_loads_from_the_hub_with_its_activation_and_preprocessing(
        cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A tag's repo may carry weights only: the architecture, activation and preprocessing come from the table."""
    from clipworks.models.transforms import Preprocess

    weights = {"open_clip_model.safetensors": _open_clip_repo()["open_clip_model.safetensors"]}
    entry = Pretrained("ViT-Tiny", "tiny_tag", "gelu", hub="org/tiny-tag",
                       preprocess=Preprocess(mean=0.5, std=0.5, resize_mode="squash"))
    monkeypatch.setitem(PRETRAINED, entry.name, entry)
    with serving() as server:
        server.hub = {"org/tiny-tag": weights}
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        assert entry.cached_file is None
        model, preprocess = clipworks.load("ViT-Tiny", pretrained="tiny_tag")
        assert entry.cached_file is not None and entry.cached_file.name == "open_clip_model.safetensors"
    assert model.config == dataclasses.replace(clipworks.get_config("ViT-Tiny"), activation="gelu")
    assert (preprocess.mean, preprocess.std, preprocess.resize_mode) == ((0.5,) * 3, (0.5,) * 3, "squash")


def test_hf_hub_without_huggingface_hub_says_how_to_install(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # as if not installed
    with pytest.raises(CheckpointError, match=r"needs the huggingface_hub package: pip install 'clipworks\[hub\]'"):
        clipworks.load("hf-hub:org/repo")
