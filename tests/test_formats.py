"""`clipworks.load` on every input format, made here from seeded small models: OpenAI (TorchScript archive, plain state
dict), open_clip (CLIP / CustomTextCLIP layouts, DDP prefix, training wrapper, safetensors, with or without
open_clip_config.json), HF transformers CLIPModel. Outputs are compared with the source model (<= 1e-5); shape
inference, resizing, dtypes, the no-code-execution policy and bad-input errors are checked too."""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from reference import openai_model
from safetensors.torch import save_file
from test_parity import openai_clip, sample_inputs

import clipworks
from clipworks import MODELS, create_model
from clipworks.errors import CheckpointError
from clipworks.io.formats import infer_config
from clipworks.models.configs import CLIPConfig, TextConfig, VisionConfig, registry_name

TOL = 1e-5
# Smaller than the registry's tiny models (keeps this file fast); 64-wide heads as OpenAI's, so shapes say it all.
SMALL = {
    "vit": CLIPConfig(32, VisionConfig(32, 64, 2, 16), TextConfig(context_length=16, width=64, layers=2)),
    "rn": CLIPConfig(32, VisionConfig(64, 16, (1, 1, 1, 1)), TextConfig(context_length=16, width=64, layers=2)),
}


def assert_same_outputs(a: torch.nn.Module, b: torch.nn.Module, cfg: CLIPConfig, tol: float = TOL) -> None:
    images, text = sample_inputs(cfg)
    with torch.no_grad():
        torch.testing.assert_close(a.encode_image(images), b.encode_image(images), atol=tol, rtol=0)
        torch.testing.assert_close(a.encode_text(text), b.encode_text(text), atol=tol, rtol=0)


def loaded(path: Path, capsys: pytest.CaptureFixture, **kwargs) -> tuple[torch.nn.Module, str]:
    model, _ = clipworks.load(path, **kwargs)
    return model, capsys.readouterr().err  # the load line goes to stderr


# ---------------------------------------------------------------- OpenAI releases


def openai_fp16_torchscript(name: str, path: Path) -> torch.nn.Module:
    """An archive as `clip.load` downloads it: OpenAI's CLIP, weights converted to fp16 by OpenAI's code, traced."""
    cfg = MODELS[name]
    ref = openai_clip(cfg).eval()
    ref.load_state_dict(create_model(name, seed=0).state_dict())
    openai_model().convert_weights(ref)
    size = cfg.vision.image_size
    example = (torch.randn(1, 3, size, size).half(), torch.zeros(1, cfg.text.context_length, dtype=torch.long))
    with torch.no_grad():
        torch.jit.save(torch.jit.trace(ref, example, check_trace=False), str(path))
    return ref


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning", "ignore::DeprecationWarning")  # torch.jit, as OpenAI
@pytest.mark.parametrize("name", ["ViT-Tiny", "RN-Tiny"])
def test_openai_torchscript_archive_loads_without_running_its_code(name: str, tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    ref = openai_fp16_torchscript(name, tmp_path / "model.pt")

    def no_jit(*args, **kwargs):
        raise AssertionError("torch.jit.load must not run without trust_code")

    with monkeypatch.context() as m:
        m.setattr(torch.jit, "load", no_jit)
        model, out = loaded(tmp_path / "model.pt", capsys)
    assert out.strip() == (f"loaded {tmp_path / 'model.pt'} as OpenAI TorchScript archive: matches registry model "
                           f"{name}, activation quick_gelu; no config: activation assumed quick_gelu "
                           "(OpenAI's weights use it)")
    assert model.dtype == torch.float32  # fp16 file, fp32 model on CPU by default
    expected = {k: v.float() for k, v in ref.state_dict().items()}
    assert all(torch.equal(v, expected[k]) for k, v in model.state_dict().items())
    assert_same_outputs(model, ref.float(), MODELS[name])
    trusted, _ = loaded(tmp_path / "model.pt", capsys, trust_code=True)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), trusted.state_dict().values()))


class Scriptable(torch.nn.Module):
    """Attributes of the kinds a scripted archive pickles: submodules, fp16 parameter, bool buffer, int list."""

    def __init__(self):
        super().__init__()
        self.bn = torch.nn.BatchNorm2d(4)
        self.attn = torch.nn.MultiheadAttention(8, 2)
        self.scale = torch.nn.Parameter(torch.randn(3).half())
        self.register_buffer("mask", torch.ones(2, 2).bool())
        self.sizes = [1, 2, 3]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(x)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_scripted_archive_tensors_are_read_exactly(tmp_path: Path) -> None:
    from clipworks.io.formats import read_weights

    scripted = torch.jit.script(Scriptable().eval())  # OpenAI's releases were scripted; their model no longer scripts
    torch.jit.save(scripted, str(tmp_path / "s.pt"))
    state, kind = read_weights(tmp_path / "s.pt")
    expected = scripted.state_dict()
    assert kind == "TorchScript archive" and set(state) == set(expected)
    for key, value in expected.items():
        assert state[key].dtype == value.dtype and torch.equal(state[key], value), key


@pytest.mark.parametrize("kind", ["vit", "rn"])
def test_openai_plain_state_dict(kind: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    cfg = SMALL[kind]
    ref = openai_clip(cfg).eval()
    torch.save(ref.state_dict(), tmp_path / "weights.pt")
    model, out = loaded(tmp_path / "weights.pt", capsys)
    assert "as OpenAI/open_clip PyTorch pickle: custom architecture, activation quick_gelu" in out
    assert model.config == cfg
    assert_same_outputs(model, ref, cfg)


# ---------------------------------------------------------------- open_clip layouts


def open_clip_custom_text(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our/OpenAI keys as open_clip's CustomTextCLIP names them: the text tower under `text.`."""
    text = ("token_embedding.", "positional_embedding", "transformer.", "ln_final.", "text_projection")
    return {f"text.{k}" if k.startswith(text) else k: v for k, v in state.items()}


def open_clip_config(cfg: CLIPConfig) -> dict:
    v, t = cfg.vision, cfg.text
    vision = {"image_size": v.image_size, "layers": list(v.layers) if v.kind == "resnet" else v.layers,
              "width": v.width, "head_width": v.head_width}
    if v.kind == "vit":
        vision["patch_size"] = v.patch_size
    return {"model_cfg": {"embed_dim": cfg.embed_dim, "quick_gelu": cfg.activation == "quick_gelu",
                          "vision_cfg": vision,
                          "text_cfg": {"context_length": t.context_length, "vocab_size": t.vocab_size,
                                       "width": t.width, "heads": t.heads, "layers": t.layers}},
            "preprocess_cfg": {}}


@pytest.mark.parametrize("layout", ["clip", "custom_text", "ddp", "training_checkpoint", "safetensors"])
@pytest.mark.parametrize("kind", ["vit", "rn"])
def test_open_clip_layouts_without_config(layout: str, kind: str, tmp_path: Path,
                                          capsys: pytest.CaptureFixture) -> None:
    source = create_model(SMALL[kind], seed=1).eval()
    state = source.state_dict()
    file = tmp_path / "open_clip_pytorch_model.bin"
    if layout == "custom_text":
        torch.save(open_clip_custom_text(state), file)
    elif layout == "ddp":
        torch.save({f"module.{k}": v for k, v in state.items()}, file)
    elif layout == "training_checkpoint":
        torch.save({"epoch": 3, "name": "run", "state_dict": {f"module.{k}": v for k, v in state.items()},
                    "optimizer": {"state": {}, "param_groups": []}}, file)
    elif layout == "safetensors":
        file = tmp_path / "open_clip_model.safetensors"
        save_file({k: v.contiguous() for k, v in open_clip_custom_text(state).items()}, str(file))
    else:
        torch.save(state, file)
    model, out = loaded(tmp_path, capsys)  # the directory: the weights file is found by its open_clip name
    assert "custom architecture, activation quick_gelu" in out
    assert "activation assumed quick_gelu" in out and "activation='gelu'" in out
    assert model.config == SMALL[kind]
    assert_same_outputs(model, source, SMALL[kind])
    gelu, _ = loaded(file, capsys, activation="gelu")  # the file itself, with the activation overridden
    assert gelu.config.activation == "gelu"


@pytest.mark.parametrize("kind", ["vit", "rn"])
def test_open_clip_config_sets_architecture_and_activation(kind: str, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture) -> None:
    cfg = dataclasses.replace(SMALL[kind], activation="gelu")
    source = create_model(cfg, seed=2).eval()
    (tmp_path / "open_clip_config.json").write_text(json.dumps(open_clip_config(cfg)))
    torch.save(open_clip_custom_text(source.state_dict()), tmp_path / "epoch_3.pt")
    model, out = loaded(tmp_path / "epoch_3.pt", capsys)
    assert "with open_clip_config.json: custom architecture, activation gelu" in out and "assumed" not in out
    assert model.config == cfg
    assert_same_outputs(model, source, cfg)


def test_open_clip_config_with_mlp_ratio_head_width_quick_gelu_and_preprocess(tmp_path: Path,
                                                                             capsys: pytest.CaptureFixture) -> None:
    # As open_clip writes ViT-bigG-14's, shrunk: vision mlp_ratio 4.9231 -> int(64 * 4.9231) = 315, heads 32 wide.
    cfg = {"model_cfg": {"embed_dim": 32, "quick_gelu": True,
                         "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "head_width": 32,
                                        "mlp_ratio": 4.9231, "patch_size": 16},
                         "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 64, "heads": 4,
                                      "layers": 2, "mlp_ratio": 2.0}},
           "preprocess_cfg": {"mean": [0.5, 0.25, 0.125], "std": [0.2, 0.3, 0.4], "interpolation": "bilinear",
                              "resize_mode": "squash"}}
    expected = CLIPConfig(32, VisionConfig(32, 64, 2, 16, head_width=32, mlp_width=315),
                          TextConfig(context_length=16, width=64, layers=2, head_width=16, mlp_width=128),
                          "quick_gelu")
    source = create_model(expected, seed=3).eval()
    (tmp_path / "open_clip_config.json").write_text(json.dumps(cfg))
    weights = {k: v.contiguous() for k, v in source.state_dict().items()}
    save_file(weights, str(tmp_path / "open_clip_model.safetensors"))
    model, preprocess = clipworks.load(tmp_path)
    assert "with open_clip_config.json: custom architecture, activation quick_gelu" in capsys.readouterr().err
    assert model.config == expected and model.visual.transformer.resblocks[0].mlp.c_fc.weight.shape == (315, 64)
    assert_same_outputs(model, source, expected)
    assert (preprocess.mean, preprocess.std) == ((0.5, 0.25, 0.125), (0.2, 0.3, 0.4))
    assert (preprocess.resize_mode, preprocess.interpolation) == ("squash", "bilinear")
    # squash: the whole 50 x 20 image becomes 32 x 32, nothing cropped
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (20, 50, 3), dtype=np.uint8))
    squashed = np.asarray(image.resize((32, 32), Image.Resampling.BILINEAR), np.float32) / np.float32(255)
    expected_pixels = (squashed - np.float32([0.5, 0.25, 0.125])) / np.float32([0.2, 0.3, 0.4])
    np.testing.assert_allclose(preprocess(image).numpy(), expected_pixels.transpose(2, 0, 1), rtol=0, atol=1e-6)
    # resizing on load keeps the preprocessing the file named
    assert clipworks.load(tmp_path, image_size=48)[1] == dataclasses.replace(preprocess, size=48)


def test_open_clip_config_without_preprocess_cfg_gives_openai_preprocessing(tmp_path: Path) -> None:
    cfg = open_clip_config(SMALL["vit"])
    del cfg["preprocess_cfg"]
    (tmp_path / "open_clip_config.json").write_text(json.dumps(cfg))
    torch.save(create_model(SMALL["vit"], seed=0).state_dict(), tmp_path / "open_clip_pytorch_model.bin")
    assert clipworks.load(tmp_path)[1] == clipworks.image_transform(32)


@pytest.mark.parametrize("preprocess_cfg, message", [
    ({"mean": [0.5, 0.5]}, "mean must be three numbers"),
    ({"std": [0.5, 0.0, 0.5]}, "std must be positive"),
    ({"resize_mode": "crop"}, "resize_mode 'crop' is not one of shortest, squash, longest"),
    ({"interpolation": "lanczos"}, "interpolation 'lanczos' is not one of bicubic, bilinear"),
])
def test_a_bad_preprocess_cfg_is_refused(preprocess_cfg: dict, message: str, tmp_path: Path) -> None:
    cfg = open_clip_config(SMALL["vit"]) | {"preprocess_cfg": preprocess_cfg}
    (tmp_path / "open_clip_config.json").write_text(json.dumps(cfg))
    torch.save(create_model(SMALL["vit"], seed=0).state_dict(), tmp_path / "open_clip_pytorch_model.bin")
    with pytest.raises(CheckpointError, match=f"open_clip_config.json: not an open_clip model config.*{message}"):
        clipworks.load(tmp_path)


# ---------------------------------------------------------------- HF transformers


def hf_model(hidden_act: str = "quick_gelu"):
    from transformers import CLIPConfig as HFConfig
    from transformers import CLIPModel

    torch.manual_seed(0)
    text = {"hidden_size": 64, "intermediate_size": 256, "num_hidden_layers": 2, "num_attention_heads": 2,
            "max_position_embeddings": 16, "hidden_act": hidden_act}
    vision = {"hidden_size": 64, "intermediate_size": 256, "num_hidden_layers": 2, "num_attention_heads": 4,
              "image_size": 32, "patch_size": 8, "hidden_act": hidden_act}
    return CLIPModel(HFConfig(text_config=text, vision_config=vision, projection_dim=32)).eval()


def hf_features(hf, images: torch.Tensor, text: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        image = hf.get_image_features(pixel_values=images)
        text = hf.get_text_features(input_ids=text)
    return getattr(image, "pooler_output", image), getattr(text, "pooler_output", text)


@pytest.mark.parametrize("hidden_act", ["quick_gelu", "gelu"])
@pytest.mark.parametrize("weights", ["safetensors", "bin"])
def test_hf_clipmodel_directory(hidden_act: str, weights: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    hf = hf_model(hidden_act)
    if weights == "safetensors":
        hf.save_pretrained(tmp_path)
    else:
        hf.config.save_pretrained(tmp_path)
        torch.save(hf.state_dict(), tmp_path / "pytorch_model.bin")
    model, out = loaded(tmp_path, capsys)
    assert f"as HF transformers CLIPModel: custom architecture, activation {hidden_act}" in out
    assert model.config.vision.heads == 4 and model.config.text.heads == 2  # from config.json, not assumed
    images, text = sample_inputs(model.config)
    image_ref, text_ref = hf_features(hf, images, text)
    with torch.no_grad():
        torch.testing.assert_close(model.encode_image(images), image_ref, atol=TOL, rtol=0)
        torch.testing.assert_close(model.encode_text(text), text_ref, atol=TOL, rtol=0)
    if weights == "safetensors":  # the weights file itself: its config.json beside it still gives heads/activation
        assert loaded(tmp_path / "model.safetensors", capsys)[0].config == model.config


def test_hf_mlp_width_and_image_processor_mean_and_std(tmp_path: Path) -> None:
    from transformers import CLIPConfig as HFConfig
    from transformers import CLIPModel

    torch.manual_seed(0)
    text = {"hidden_size": 64, "intermediate_size": 200, "num_hidden_layers": 2, "num_attention_heads": 2,
            "max_position_embeddings": 16, "hidden_act": "gelu"}
    vision = {"hidden_size": 64, "intermediate_size": 300, "num_hidden_layers": 2, "num_attention_heads": 4,
              "image_size": 32, "patch_size": 8, "hidden_act": "gelu"}
    hf = CLIPModel(HFConfig(text_config=text, vision_config=vision, projection_dim=32)).eval()
    hf.save_pretrained(tmp_path)
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(
        {"image_processor_type": "CLIPImageProcessor", "image_mean": [0.5, 0.5, 0.5], "image_std": [0.25, 0.5, 1]}))
    model, preprocess = clipworks.load(tmp_path)
    assert (model.config.vision.mlp_hidden, model.config.text.mlp_hidden) == (300, 200)
    assert (preprocess.mean, preprocess.std, preprocess.resize_mode) == ((0.5,) * 3, (0.25, 0.5, 1.0), "shortest")
    images, text_ids = sample_inputs(model.config)
    image_ref, text_ref = hf_features(hf, images, text_ids)
    with torch.no_grad():
        torch.testing.assert_close(model.encode_image(images), image_ref, atol=TOL, rtol=0)
        torch.testing.assert_close(model.encode_text(text_ids), text_ref, atol=TOL, rtol=0)
    config = json.loads((tmp_path / "config.json").read_text())
    config["vision_config"]["intermediate_size"] = 256  # says 4x; the weights say 300
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="vision_config.intermediate_size 256 disagrees with the weights' MLP "
                                              "width 300"):
        clipworks.load(tmp_path)


# ---------------------------------------------------------------- shape inference


@pytest.mark.parametrize("name", list(MODELS))
def test_shape_inference_names_the_registry_model(name: str) -> None:
    with torch.device("meta"):  # shapes only: no memory for the big models
        state = create_model(name).state_dict()
    expected = MODELS[name]
    # Head widths and the activation are invisible in shapes (OpenAI's defaults: 64, QuickGELU); MLP widths are not.
    config = infer_config(state, activation=expected.activation, vision_head_width=expected.vision.head_width,
                          text_head_width=expected.text.head_width)
    assert config == expected
    assert registry_name(config) == name
    assert registry_name(dataclasses.replace(config, activation="gelu")) == name
    assert registry_name(dataclasses.replace(config, activation="quick_gelu")) == name


def test_mlp_width_is_inferred_from_c_fc() -> None:
    cfg = CLIPConfig(32, VisionConfig(32, 64, 2, 16, mlp_width=100), TextConfig(context_length=16, width=64, layers=2,
                                                                                 mlp_width=80))
    with torch.device("meta"):
        state = create_model(cfg).state_dict()
    assert infer_config(state) == cfg and infer_config(state).vision.mlp_hidden == 100


def test_custom_architecture_is_inferred_exactly() -> None:
    cfg = CLIPConfig(48, VisionConfig(96, 128, 3, 16), TextConfig(context_length=20, vocab_size=1000, width=192,
                                                                   layers=1))
    with torch.device("meta"):
        state = create_model(cfg).state_dict()
    assert infer_config(state) == cfg and registry_name(cfg) is None


# ---------------------------------------------------------------- safety


class RunsCode:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("container", ["torch.save", "plain pickle", "torchscript-shaped zip"])
def test_a_pickle_that_would_run_code_is_refused(container: str, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    file = tmp_path / "model.pt"
    payload = {"epoch": 1, "hook": RunsCode(marker)}  # no tensor: plain pickle would refer to torch's own helpers
    if container == "torch.save":
        torch.save({**payload, "state_dict": {"x": torch.zeros(1)}}, file)
    elif container == "plain pickle":
        file.write_bytes(pickle.dumps(payload, protocol=2))
    else:
        with zipfile.ZipFile(file, "w") as z:
            z.writestr("model/data.pkl", pickle.dumps(payload, protocol=2))
            z.writestr("model/code/__torch__/model.py", "")
            z.writestr("model/constants.pkl", pickle.dumps((), protocol=2))
    with pytest.raises(CheckpointError, match=rf"{file}: refused to load: unpickling it would run code .*system"):
        clipworks.load(file)
    assert not marker.exists()


# ---------------------------------------------------------------- resizing and dtype


@pytest.mark.parametrize("kind", ["vit", "rn"])
def test_resize_image_positional_embedding(kind: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    cfg = SMALL[kind]
    source = create_model(cfg, seed=3).eval()
    clipworks.save_checkpoint(tmp_path / "c", source)
    same, _ = loaded(tmp_path / "c", capsys, image_size=cfg.vision.image_size)
    assert_same_outputs(same, source, cfg, tol=0)
    bigger = cfg.vision.image_size * 2
    model, out = loaded(tmp_path / "c", capsys, image_size=bigger)
    assert f"image size {cfg.vision.image_size} -> {bigger}: positional embedding interpolated bicubically" in out
    pos = model.visual.positional_embedding if kind == "vit" else model.visual.attnpool.positional_embedding
    grid = bigger // (cfg.vision.patch_size or 32)
    assert pos.shape[0] == grid * grid + 1 and model.image_size == bigger
    old = source.visual.positional_embedding if kind == "vit" else source.visual.attnpool.positional_embedding
    assert torch.equal(pos[0], old[0])  # the class (ResNet: mean) token is kept
    with torch.no_grad():
        assert model.encode_image(torch.randn(2, 3, bigger, bigger)).shape == (2, cfg.embed_dim)
    with pytest.raises(ValueError, match="not a multiple of patch_size|divisible by 32"):
        clipworks.load(tmp_path / "c", image_size=bigger + 1)


def test_longer_context_keeps_short_texts_identical(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    cfg = SMALL["vit"]
    source = create_model(cfg, seed=4).eval()
    clipworks.save_checkpoint(tmp_path / "c", source)
    model, out = loaded(tmp_path / "c", capsys, context_length=40)
    assert "context length 16 -> 40: positions 16..39 are untrained copies of position 15" in out
    assert model.positional_embedding.shape == (40, 64)
    _, text = sample_inputs(cfg)
    padded = torch.cat([text, torch.zeros(3, 24, dtype=text.dtype)], dim=1)
    with torch.no_grad():
        expected = source.encode_text(text)
        assert torch.equal(model.encode_text(text), expected)
        torch.testing.assert_close(model.encode_text(padded, trim=False), expected, atol=TOL, rtol=0)
    shorter, _ = loaded(tmp_path / "c", capsys, context_length=8)
    assert torch.equal(shorter.positional_embedding, source.positional_embedding[:8])


def test_dtype_option(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    source = create_model(SMALL["vit"], seed=5).half()
    torch.save(source.state_dict(), tmp_path / "half.pt")
    assert loaded(tmp_path / "half.pt", capsys)[0].dtype == torch.float32
    model, _ = loaded(tmp_path / "half.pt", capsys, dtype=torch.bfloat16)
    assert model.dtype == torch.bfloat16 and model.visual.conv1.weight.dtype == torch.bfloat16


# ---------------------------------------------------------------- bad input


def test_bad_inputs_give_one_clear_error(tmp_path: Path) -> None:
    cfg = SMALL["vit"]
    state = create_model(cfg, seed=6).state_dict()
    cases = {}
    torch.save(state, tmp_path / "full.pt")
    (tmp_path / "truncated.pt").write_bytes((tmp_path / "full.pt").read_bytes()[:5000])
    cases["truncated.pt"] = "corrupt or truncated"
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "full.safetensors"))
    (tmp_path / "truncated.safetensors").write_bytes((tmp_path / "full.safetensors").read_bytes()[:5000])
    cases["truncated.safetensors"] = "unreadable safetensors file .*truncated"
    torch.save(torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.ReLU()).state_dict(), tmp_path / "other.pt")
    cases["other.pt"] = "unknown state-dict layout .*expected CLIP weights"
    torch.save({k: v for k, v in state.items() if k != "visual.ln_post.bias"}, tmp_path / "missing.pt")
    cases["missing.pt"] = "weights do not match the architecture read from the file"
    (tmp_path / "notes.txt").write_text("hello, these are not weights\n")
    cases["notes.txt"] = "not a weights file; expected CLIP weights"
    (tmp_path / "photo.jpg").write_bytes(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(100))
    cases["photo.jpg"] = "a JPEG image; expected CLIP weights"
    (tmp_path / "empty.bin").write_bytes(b"")
    cases["empty.bin"] = "an empty file"
    shape_dir = tmp_path / "mismatch"
    shape_dir.mkdir()
    torch.save(state, shape_dir / "open_clip_pytorch_model.bin")
    (shape_dir / "open_clip_config.json").write_text(json.dumps(open_clip_config(
        dataclasses.replace(cfg, embed_dim=16))))
    cases["mismatch"] = "weights do not match .*size mismatch"
    for name, message in cases.items():
        with pytest.raises(CheckpointError, match=rf"^{tmp_path / name}: {message}"):
            clipworks.load(tmp_path / name)


def test_unknown_directory_and_foreign_config(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    save_file({"x": torch.zeros(1)}, str(tmp_path / "model.safetensors"))
    with pytest.raises(CheckpointError, match="model_type 'bert' is not 'clip'"):
        clipworks.load(tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    (other / "readme.md").write_text("x")
    with pytest.raises(CheckpointError, match=rf"^{other}: no weights found"):
        clipworks.load(other)
