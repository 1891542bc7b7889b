"""optimize_for_inference: folded, prepacked copies equal the model (fp32 within 1e-5, bf16 at cosine >= 0.999),
with oneDNN's fused ops and without them, and refuse what would lose their weights."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from clipworks import create_model, get_config, optimize_for_inference
from clipworks.hardware import onednn_available, use_fast_paths
from clipworks.models import inference
from clipworks.models.inference import FrozenConv, FrozenLinear, FrozenPatchEmbedding

TOKENS = torch.tensor([[49406, 320, 736, 2972, 49407] + [0] * 27,
                       [49406, 320, 1746, 539, 320, 1901, 3467, 49407] + [0] * 24,
                       [49406, 49407] + [0] * 30])


def model_under_test(name: str) -> torch.nn.Module:
    """A seeded model whose BatchNorms have non-trivial statistics and gains (OpenAI's initialisation zeroes the last
    gain of every block, which would hide a wrong fold), and whose biases are non-zero."""
    config = get_config(name.removesuffix("-gelu").removesuffix("-mlp"))
    if name.endswith("-gelu"):
        config = dataclasses.replace(config, activation="gelu")
    if name.endswith("-mlp"):  # MLPs not 4x wide (as open_clip's ViT-g-14 / ViT-bigG-14), in both towers
        config = dataclasses.replace(config, vision=dataclasses.replace(config.vision, mlp_width=500),
                                     text=dataclasses.replace(config.text, mlp_width=300))
    model = create_model(config, seed=0).eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.weight.copy_(torch.rand(module.weight.shape, generator=g) + 0.5)
                module.bias.copy_(torch.randn(module.bias.shape, generator=g) * 0.1)
                module.running_mean.copy_(torch.randn(module.running_mean.shape, generator=g) * 0.1)
                module.running_var.copy_(torch.rand(module.running_var.shape, generator=g) + 0.5)
            elif isinstance(module, torch.nn.Linear):
                module.bias.copy_(torch.randn(module.bias.shape, generator=g) * 0.1)
    return model


def images(n: int, seed: int = 2) -> torch.Tensor:
    return torch.randn(n, 3, 64, 64, generator=torch.Generator().manual_seed(seed))


MODELS = ["ViT-Tiny", "RN-Tiny", "ViT-Tiny-gelu", "ViT-Tiny-mlp"]


@pytest.mark.parametrize("fused", [True, False], ids=["onednn", "plain"])
@pytest.mark.parametrize("name", MODELS)
def test_an_fp32_copy_equals_the_model(name: str, fused: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    if fused:
        assert onednn_available(torch.device("cpu"), torch.float32)  # this machine runs the fused path for real
    else:
        monkeypatch.setattr(inference, "onednn_available", lambda device, dtype: False)
    model = model_under_test(name)
    fast = optimize_for_inference(model)
    linears = [m for m in fast.modules() if isinstance(m, FrozenLinear)]
    assert linears and all(m.packed == fused for m in linears)
    with torch.no_grad():
        x = images(5)
        torch.testing.assert_close(fast.encode_image(x), model.encode_image(x), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(fast.encode_text(TOKENS), model.encode_text(TOKENS), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", MODELS)
def test_an_int8_copy_quantizes_every_linear_and_stays_close_to_fp32(name: str) -> None:
    assert inference.int8_available()  # this machine runs the quantized engine for real
    model = model_under_test(name)
    fast = optimize_for_inference(model, "int8")
    linears = [m for m in fast.modules() if isinstance(m, FrozenLinear)]
    assert fast.dtype == torch.float32 and linears and all(m.kernel == "int8" for m in linears)
    with torch.no_grad():
        for full, quantized in ((model.encode_image(images(8)), fast.encode_image(images(8))),
                                (model.encode_text(TOKENS), fast.encode_text(TOKENS))):
            assert torch.nn.functional.cosine_similarity(full, quantized).min() > 0.99


def test_int8_is_refused_where_it_cannot_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(inference, "int8_available", lambda: False)
    with pytest.raises(ValueError, match="int8 inference needs a CPU and torch's quantized engine"):
        optimize_for_inference(create_model("ViT-Tiny", seed=0), "int8")


@pytest.mark.parametrize("name", MODELS)
def test_a_bf16_copy_stays_close_to_fp32(name: str) -> None:
    model = model_under_test(name)
    fast = optimize_for_inference(model, torch.bfloat16)
    assert fast.dtype == torch.bfloat16
    with torch.no_grad():
        for full, half in ((model.encode_image(images(8)), fast.encode_image(images(8))),
                           (model.encode_text(TOKENS), fast.encode_text(TOKENS))):
            assert half.dtype == torch.bfloat16
            assert torch.nn.functional.cosine_similarity(full, half.float()).min() > 0.999


@pytest.mark.parametrize("kernel", ["onednn", "plain"])
def test_a_vit_patch_embedding_runs_as_one_matmul_and_equals_the_convolution(kernel: str) -> None:
    fast = optimize_for_inference(model_under_test("ViT-Tiny"))
    assert isinstance(fast.visual.conv1, FrozenPatchEmbedding)
    assert not any(isinstance(m, torch.nn.Conv2d) for m in fast.modules())
    conv = torch.nn.Conv2d(3, 24, 8, stride=8, bias=False)
    frozen = FrozenPatchEmbedding(conv, torch.float32, kernel)
    x = torch.randn(3, 3, 37, 45)  # not a multiple of the patch: the convolution ignores the last rows and columns
    with torch.no_grad():
        torch.testing.assert_close(frozen(x), conv(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", ["ViT-Tiny", "RN-Tiny"])
def test_copies_with_the_patch_matmul_in_place_sums_and_batch_packing_off_equal_the_model_too(name: str) -> None:
    model = model_under_test(name)
    with use_fast_paths(patch_matmul=False, residual_in_place=False, conv_batch_packing=False):
        fast = optimize_for_inference(model)
    assert not any(isinstance(m, FrozenPatchEmbedding) for m in fast.modules())
    assert not any(m.in_place or m.batch_packing for m in fast.modules() if isinstance(m, FrozenConv))
    with torch.no_grad():
        x = images(5)
        torch.testing.assert_close(fast.encode_image(x), model.encode_image(x), atol=1e-5, rtol=1e-5)


def test_resnet_convolutions_are_folded_and_fused() -> None:
    fast = optimize_for_inference(model_under_test("RN-Tiny"))
    convs = [m for m in fast.modules() if isinstance(m, FrozenConv)]
    # 3 stem convolutions, 3 per Bottleneck and one per downsample: RN-Tiny has 4 blocks, all with a downsample.
    assert len(convs) == 3 + 4 * 4 and all(conv.packed for conv in convs)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fast.modules())


@pytest.mark.parametrize("name", ["ViT-Tiny", "RN-Tiny"])
def test_weights_packed_for_one_batch_size_serve_any(name: str) -> None:
    # ResNet convolutions run batches of one and of more on packings for each; rows of a batch equal the images alone.
    fast = optimize_for_inference(model_under_test(name))
    x = images(6, seed=3)
    with torch.no_grad():
        batched = fast.encode_image(x)
        alone = torch.cat([fast.encode_image(x[i:i + 1]) for i in range(len(x))])
    torch.testing.assert_close(batched, alone, atol=1e-5, rtol=1e-5)


@pytest.mark.skipif(not onednn_available(torch.device("cpu"), torch.float32), reason="needs oneDNN's fused ops")
@pytest.mark.parametrize("residual", [False, True])
def test_a_convolution_packed_separately_for_one_image_and_for_batches_computes_both(residual: bool) -> None:
    # RN50's 256 -> 1024 1x1 convolution at 14x14 and its downsample (512 -> 1024): in fp32 oneDNN lays their weights
    # out differently for an example of batch 1 and of batch 2 (on both CPU classes when measured), and each layout
    # was many times slower on the other's batches.
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(256, 1024, 1, bias=False)
    bn = torch.nn.BatchNorm2d(1024).eval()
    frozen = FrozenConv(conv, bn, torch.float32, packed=True, relu=True, size=14)
    assert frozen.batch_packing
    with torch.no_grad():
        for batch in (1, 2, 5):
            x = torch.randn(batch, 256, 14, 14).contiguous(memory_format=torch.channels_last)
            r = torch.randn(batch, 1024, 14, 14).contiguous(memory_format=torch.channels_last)
            expected = torch.relu(bn(conv(x)) + (r if residual else 0))
            got = frozen(x, r.clone()) if residual else frozen(x)
            torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.skipif(not onednn_available(torch.device("cpu"), torch.float32)
                    or not hasattr(torch.ops.mkldnn, "_nbytes"), reason="needs oneDNN's ops and torch >= 2.4's "
                    "mkldnn._nbytes (without it both packings are kept)")
def test_packed_weights_are_compared_by_their_bytes() -> None:
    w = torch.randn(64, 32, 3, 3).contiguous(memory_format=torch.channels_last)

    def pack(weight: torch.Tensor, batch: int) -> torch.Tensor:
        return torch._C._nn.mkldnn_reorder_conv2d_weight(weight.to_mkldnn(), [1, 1], [1, 1], [1, 1], 1,
                                                         [batch, 32, 8, 8])

    assert inference.same_bytes(pack(w, 1), pack(w.clone(), 1))
    assert not inference.same_bytes(pack(w, 1), pack(w * 2, 1))
    changed = w.clone()
    changed[-1, -1, -1, -1] += 1  # one value of 18,432
    assert not inference.same_bytes(pack(w, 1), pack(changed, 1))


def test_the_original_model_is_left_as_it_was() -> None:
    model = model_under_test("RN-Tiny")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimize_for_inference(model, torch.bfloat16)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) and after[k].dtype == before[k].dtype for k in before)
    assert all(p.requires_grad for p in model.parameters())


def test_a_copy_cannot_be_trained_saved_moved_or_reloaded() -> None:
    model = model_under_test("ViT-Tiny")
    fast = optimize_for_inference(model)
    assert not any(p.requires_grad for p in fast.parameters())
    with pytest.raises(RuntimeError, match="cannot be trained: train the original model"):
        fast.train()
    with pytest.raises(RuntimeError, match="has no state dict .* save the original model"):
        fast.state_dict()
    with pytest.raises(RuntimeError, match="cannot be moved or cast"):
        fast.to(torch.float16)
    with pytest.raises(RuntimeError, match="cannot load weights"):
        fast.load_state_dict(model.state_dict())
    fast.eval()  # eval mode is allowed: it is the only mode


def test_only_clip_models_are_accepted() -> None:
    with pytest.raises(TypeError, match="takes a clipworks CLIP model, got Linear"):
        optimize_for_inference(torch.nn.Linear(2, 2))


def test_load_for_inference_gives_the_loaded_models_optimized_copy(tmp_path) -> None:
    # What `clipworks eval ...` and `clipworks zeroshot` embed with.
    from clipworks import load, save_checkpoint
    from clipworks.io.checkpoints import load_for_inference

    save_checkpoint(tmp_path / "ckpt", model_under_test("RN-Tiny"))
    model, preprocess = load(tmp_path / "ckpt")
    fast, fast_preprocess = load_for_inference(tmp_path / "ckpt")
    assert any(isinstance(m, FrozenConv) for m in fast.modules())
    with torch.no_grad():
        torch.testing.assert_close(fast.encode_image(images(3)), model.encode_image(images(3)), atol=1e-5, rtol=1e-5)
    assert fast_preprocess.__class__ is preprocess.__class__
