"""Writers for other runtimes: an HF transformers `CLIPModel` directory and ONNX encoders.

HF: the inverse of `formats.from_hf` (in_proj split into q/k/v, projections transposed), a `config.json` that
`CLIPModel.from_pretrained` reads, the tokenizer files (`vocab.json`, `merges.txt`) built from our own BPE merges,
and a `preprocessor_config.json` for `CLIPImageProcessor`. HF has no ModifiedResNet, so ResNet models cannot go there.
HF's fast tokenizer normalises text with NFC + lowercase instead of ftfy + HTML unescaping; ids agree with ours on
text that ftfy and HTML unescaping leave unchanged.

ONNX: `image.onnx` (float pixels) and `text.onnx` (int64 ids, as `clipworks.tokenize` returns), plus
`text_int32.onnx` for runtimes that feed int32 ids; both text graphs cast to int64 before the EOT argmax
(openai/CLIP #219). The text graphs run the full context (`encode_text(trim=False)`), so their length is not baked in.
"""

from __future__ import annotations

import copy
import json
import warnings
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from ..errors import CheckpointError
from ..models.clip import CLIP
from ..models.tokenizer import END_OF_WORD, EOT, NUM_MERGES, SOT, Tokenizer, byte_symbols
from ..models.transforms import OPENAI_MEAN, OPENAI_STD
from .files import nbytes, write_dir_atomic
from .formats import HF_BLOCK, HF_NAMES

SOT_ID, EOT_ID = 49406, 49407


def hf_state_dict(model: CLIP) -> dict[str, torch.Tensor]:
    """Our (OpenAI-layout) weights under HF CLIPModel's names."""
    if model.config.vision.kind != "vit":
        raise CheckpointError("HF transformers CLIPModel has no ModifiedResNet vision tower: a ResNet CLIP cannot be "
                              "exported to HF format (use --to native or --to onnx)")
    out: dict[str, torch.Tensor] = {}
    for key, value in model.state_dict().items():
        value = value.detach().cpu()
        if key in HF_NAMES:
            out[HF_NAMES[key]] = value
        elif key == "visual.proj":
            out["visual_projection.weight"] = value.t()
        elif key == "text_projection":
            out["text_projection.weight"] = value.t()
        else:
            tower, rest = ("vision_model", key[len("visual."):]) if key.startswith("visual.") else ("text_model", key)
            index, module = rest.removeprefix("transformer.resblocks.").split(".", 1)
            base = f"{tower}.encoder.layers.{index}."
            if module.startswith("attn.in_proj_"):
                kind = module.rsplit("_", 1)[1]
                for name, part in zip("qkv", value.chunk(3)):
                    out[f"{base}self_attn.{name}_proj.{kind}"] = part
            else:
                name, kind = module.rsplit(".", 1)
                out[f"{base}{HF_BLOCK[name]}.{kind}"] = value
    return {k: v.contiguous() for k, v in out.items()}


def hf_config(model: CLIP) -> dict:
    cfg = model.config
    v, t = cfg.vision, cfg.text
    dtype = str(model.dtype).removeprefix("torch.")
    return {
        "architectures": ["CLIPModel"], "model_type": "clip", "projection_dim": cfg.embed_dim,
        "logit_scale_init_value": 2.6592, "torch_dtype": dtype,
        "text_config": {"model_type": "clip_text_model", "vocab_size": t.vocab_size, "hidden_size": t.width,
                        "intermediate_size": t.mlp_hidden, "num_hidden_layers": t.layers,
                        "num_attention_heads": t.heads, "max_position_embeddings": t.context_length,
                        "hidden_act": cfg.activation, "layer_norm_eps": 1e-5, "projection_dim": cfg.embed_dim,
                        # HF pools at the first eos_token_id; ours at the argmax id, which is <|endoftext|>.
                        "bos_token_id": SOT_ID, "eos_token_id": EOT_ID, "pad_token_id": 1},
        "vision_config": {"model_type": "clip_vision_model", "hidden_size": v.width, "intermediate_size": v.mlp_hidden,
                          "num_hidden_layers": v.layers, "num_attention_heads": v.heads, "image_size": v.image_size,
                          "patch_size": v.patch_size, "num_channels": 3, "hidden_act": cfg.activation,
                          "layer_norm_eps": 1e-5, "projection_dim": cfg.embed_dim},
    }


def write_tokenizer(directory: Path, context_length: int) -> None:
    """vocab.json + merges.txt from our BPE file (same ids as `clipworks.tokenize`) and HF's tokenizer configs."""
    symbols = list(byte_symbols().values())
    lines = Tokenizer._read_vocab().decode("utf-8").split("\n")[1: NUM_MERGES + 1]
    vocab = symbols + [s + END_OF_WORD for s in symbols] + ["".join(line.split()) for line in lines] + [SOT, EOT]
    (directory / "vocab.json").write_text(json.dumps({tok: i for i, tok in enumerate(vocab)}, ensure_ascii=False))
    # HF skips the first line of merges.txt as a header, as our file's first line is.
    (directory / "merges.txt").write_text("#version: 0.2\n" + "\n".join(lines) + "\n")
    special = {"bos_token": SOT, "eos_token": EOT, "unk_token": EOT, "pad_token": EOT}
    (directory / "special_tokens_map.json").write_text(json.dumps(special, indent=2))
    (directory / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "CLIPTokenizer", "model_max_length": context_length, "do_lower_case": True,
         "errors": "replace", "add_prefix_space": False, **special}, indent=2))


def save_hf(model: CLIP, directory: str | Path) -> Path:
    """An HF transformers directory: CLIPModel weights + config, CLIPTokenizer files, CLIPImageProcessor config."""
    state = hf_state_dict(model)
    size = model.image_size

    def write(tmp: Path) -> None:
        save_file(state, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        (tmp / "config.json").write_text(json.dumps(hf_config(model), indent=2))
        write_tokenizer(tmp, model.context_length)
        (tmp / "preprocessor_config.json").write_text(json.dumps({
            "image_processor_type": "CLIPImageProcessor", "do_resize": True, "size": {"shortest_edge": size},
            "resample": 3, "do_center_crop": True, "crop_size": {"height": size, "width": size}, "do_rescale": True,
            "rescale_factor": 1 / 255, "do_normalize": True, "image_mean": list(OPENAI_MEAN),
            "image_std": list(OPENAI_STD), "do_convert_rgb": True}, indent=2))

    directory = write_dir_atomic(directory, write, needed=nbytes(state), keep_others=True)
    return directory


class _TextEncoder(nn.Module):
    """encode_text over the full context: ids of any integer type are cast to int64 before the EOT argmax."""

    def __init__(self, model: CLIP):
        super().__init__()
        self.model = model

    def forward(self, text: torch.Tensor) -> torch.Tensor:
        return self.model.encode_text(text.long(), trim=False)


class _ImageEncoder(nn.Module):
    def __init__(self, model: CLIP):
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model.encode_image(images)


def export_onnx(model: CLIP, directory: str | Path, *, opset: int = 18) -> dict[str, Path]:
    """image.onnx, text.onnx (int64 ids) and text_int32.onnx, each with a dynamic batch axis; returns their paths."""
    if model.dtype != torch.float32:
        model = copy.deepcopy(model).float()  # ONNX graphs are fp32; the caller's model is left as it was
    model.eval()
    size, length = model.image_size, model.context_length
    # Wrappers in eval mode: the exporter restores the wrapper's mode afterwards, which would otherwise switch the
    # model's BatchNorms to training mode.
    jobs = {"image": (_ImageEncoder(model).eval(), torch.zeros(2, 3, size, size), "images"),
            "text": (_TextEncoder(model).eval(), torch.zeros(2, length, dtype=torch.int64), "text"),
            "text_int32": (_TextEncoder(model).eval(), torch.zeros(2, length, dtype=torch.int32), "text")}

    def write(tmp: Path) -> None:
        for name, (module, example, input_name) in jobs.items():
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # tracer notes on shape checks that are constant for a fixed model
                torch.onnx.export(module, (example,), str(tmp / f"{name}.onnx"), input_names=[input_name],
                                  output_names=["embedding"], dynamic_axes={input_name: {0: "batch"},
                                                                            "embedding": {0: "batch"}},
                                  opset_version=opset, dynamo=False)

    directory = write_dir_atomic(directory, write, needed=nbytes(model.state_dict()), keep_others=True)
    return {name: directory / f"{name}.onnx" for name in jobs}
