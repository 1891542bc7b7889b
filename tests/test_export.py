"""Writers: HF transformers directories (model, tokenizer, image processor) and ONNX encoders, checked against our
model with transformers and onnxruntime; and `clipworks convert` end to end."""

from __future__ import annotations

import dataclasses
import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from test_formats import SMALL, assert_same_outputs, hf_features
from test_parity import sample_inputs

import clipworks
from clipworks import create_model, tokenize
from clipworks.cli import main
from clipworks.errors import CheckpointError
from clipworks.io.export import export_onnx, save_hf

TOL = 1e-5


@pytest.mark.parametrize("activation", ["quick_gelu", "gelu"])
def test_hf_round_trip(activation: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from transformers import CLIPModel

    cfg = dataclasses.replace(SMALL["vit"], activation=activation)
    ours = create_model(cfg, seed=0).eval()
    save_hf(ours, tmp_path / "hf")
    hf = CLIPModel.from_pretrained(tmp_path / "hf").eval()
    assert hf.config.text_config.eos_token_id == 49407 and hf.config.text_config.hidden_act == activation
    images, text = sample_inputs(cfg)
    image_hf, text_hf = hf_features(hf, images, text)
    with torch.no_grad():
        torch.testing.assert_close(image_hf, ours.encode_image(images), atol=TOL, rtol=0)
        torch.testing.assert_close(text_hf, ours.encode_text(text), atol=TOL, rtol=0)
    back, _ = clipworks.load(tmp_path / "hf")
    assert "as HF transformers CLIPModel" in capsys.readouterr().err
    assert back.config == cfg
    for (name, a), (_, b) in zip(ours.state_dict().items(), back.state_dict().items()):
        assert torch.equal(a, b), name


def varied_texts(n: int) -> list[str]:
    """Words, contractions, digits, punctuation, accents, CJK, emoji, odd spacing; text ftfy/HTML leave unchanged."""
    rng = random.Random(0)
    pieces = ["a photo of a", "cat", "DOG", "it's", "they're", "we'll", "I'm", "you'd", "don't", "2024", "3.14",
              "#hashtag", "@user", "e-mail", "naïve", "café", "über", "Ångström", "niño", "東京", "日本語のテキスト",
              "🙂", "👍🏽", "!!!", "?!", "(brackets)", "[x]", "x_y", "a/b", "C++", "100%", "$5", "—", "...",
              "\t",
              "  ", "multiple   spaces", "Straße", "ΑΒΓ δέλτα", "кошка", "hello,world", "end."]
    return [" ".join(rng.choice(pieces) for _ in range(rng.randint(1, 8))) for _ in range(n)]


def test_hf_tokenizer_gives_our_ids(tmp_path: Path) -> None:
    from transformers import AutoTokenizer, CLIPTokenizer, CLIPTokenizerFast

    save_hf(create_model(SMALL["vit"], seed=0), tmp_path)
    texts = varied_texts(300)
    ours = tokenize(texts, context_length=77, truncate=True)
    for cls in (CLIPTokenizer, CLIPTokenizerFast, AutoTokenizer):
        tok = cls.from_pretrained(tmp_path)
        assert tok.model_max_length == 16
        for text, row in zip(texts, ours):
            ids = tok(text, truncation=True, max_length=77)["input_ids"]
            assert ids == row[: len(ids)].tolist() and row[len(ids):].eq(0).all(), text


def test_hf_image_processor_config(tmp_path: Path) -> None:
    from PIL import Image
    from transformers import CLIPImageProcessor

    model = create_model(SMALL["vit"], seed=0)
    save_hf(model, tmp_path)
    processor = CLIPImageProcessor.from_pretrained(tmp_path)
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (48, 40, 3), dtype=np.uint8))
    pixels = processor(images=image, return_tensors="pt")["pixel_values"]
    ours = clipworks.image_transform(model.image_size)(image)
    assert pixels.shape == (1, 3, 32, 32)
    # Same resize (bicubic, shorter side), crop and normalisation; resampling implementations differ slightly.
    assert (pixels[0] - ours).abs().mean() < 0.05


def test_resnet_cannot_go_to_hf(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no ModifiedResNet .* cannot be exported to HF"):
        save_hf(create_model(SMALL["rn"], seed=0), tmp_path / "hf")
    assert not (tmp_path / "hf").exists()


@pytest.mark.parametrize("kind", ["vit", "rn"])
def test_onnx_encoders_match_pytorch(kind: str, tmp_path: Path) -> None:
    import onnxruntime as ort

    cfg = SMALL[kind]
    model = create_model(cfg, seed=0).eval()
    paths = export_onnx(model, tmp_path)
    assert not any(m.training for m in model.modules())  # exporting leaves the model in eval mode
    assert sorted(p.name for p in paths.values()) == ["image.onnx", "text.onnx", "text_int32.onnx"]
    images, text = sample_inputs(cfg, n_images=3)  # batch sizes differ from the export's: the batch axis is dynamic
    with torch.no_grad():
        image_ref, text_ref = model.encode_image(images).numpy(), model.encode_text(text).numpy()
    image = ort.InferenceSession(str(paths["image"])).run(None, {"images": images.numpy()})[0]
    np.testing.assert_allclose(image, image_ref, atol=1e-4, rtol=0)
    for name, dtype in (("text", np.int64), ("text_int32", np.int32)):
        out = ort.InferenceSession(str(paths[name])).run(None, {"text": text.numpy().astype(dtype)})[0]
        np.testing.assert_allclose(out, text_ref, atol=1e-4, rtol=0)


def test_convert_cli_native_hf_onnx(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    cfg = SMALL["vit"]
    source = create_model(cfg, seed=7).eval()
    torch.save({"state_dict": {f"module.{k}": v for k, v in source.state_dict().items()}}, tmp_path / "src.pt")

    assert main(["convert", str(tmp_path / "src.pt"), str(tmp_path / "native"), "--to", "native"]) == 0
    captured = capsys.readouterr()
    assert "as OpenAI/open_clip PyTorch pickle: custom architecture, activation quick_gelu" in captured.err
    assert f"wrote native fp32 model to {tmp_path / 'native'}" in captured.out
    native, _ = clipworks.load(tmp_path / "native")
    assert_same_outputs(native, source, cfg, tol=0)

    assert main(["convert", str(tmp_path / "native"), str(tmp_path / "hf"), "--to", "hf", "--dtype", "fp16"]) == 0
    weights = load_file(str(tmp_path / "hf" / "model.safetensors"))
    assert weights["text_projection.weight"].dtype == torch.float16
    assert json.loads((tmp_path / "hf" / "config.json").read_text())["torch_dtype"] == "float16"
    assert clipworks.load(tmp_path / "hf")[0].dtype == torch.float32  # half file, fp32 model by default

    assert main(["convert", str(tmp_path / "native"), str(tmp_path / "onnx"), "--to", "onnx",
                 "--image-size", "48"]) == 0
    assert "image size 32 -> 48" in capsys.readouterr().err
    assert (tmp_path / "onnx" / "image.onnx").is_file() and (tmp_path / "onnx" / "text_int32.onnx").is_file()


def test_convert_cli_bad_input_is_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "notes.txt").write_text("not weights")
    assert main(["convert", str(tmp_path / "notes.txt"), str(tmp_path / "out"), "--to", "hf"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "notes.txt: not a weights file" in err
    torch.save(create_model(SMALL["rn"], seed=0).state_dict(), tmp_path / "rn.pt")
    assert main(["convert", str(tmp_path / "rn.pt"), str(tmp_path / "out"), "--to", "hf"]) == 2
    assert "cannot be exported to HF" in capsys.readouterr().err
