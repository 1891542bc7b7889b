"""Inference-only copies of a CLIP model that do the same arithmetic in fewer passes over memory.

`optimize_for_inference(model, "auto")` returns a frozen copy (bf16 where the CPU computes it natively); the
profiles behind each step are in bench/RESULTS.md:

- Every Linear and convolution weight is reordered once into oneDNN's blocked layout. Eager PyTorch reorders it on
  every call, a cost that grows as the batch shrinks. A convolution whose best layout for one image differs from
  the one for a batch keeps both.
- QuickGELU is fused into the matmul before it as oneDNN's swish post-op: x·σ(1.702x) = swish(1.702x) / 1.702, so
  c_fc's weight and bias are scaled by 1.702 and c_proj's weight by 1/1.702 (folded in fp32, then cast). The three
  elementwise passes of QuickGELU disappear. A GELU model fuses oneDNN's erf GELU.
- LayerNorm runs on bf16 activations directly: the kernel accumulates in fp32, as OpenAI's upcast does, and rounds
  once, without the copies to fp32 and back.
- A ViT's patch embedding runs as one matmul on the image cut into patches rather than as a convolution.
- ResNets: each BatchNorm is folded into the convolution before it, ReLU and the residual sum are fused into the
  convolutions, and activations stay channels_last (oneDNN's NCHW average pooling is slow).

Without oneDNN's ops (a CUDA model, fp16 on CPU, a torch built without them) the copy runs the same folded weights
through F.linear / F.conv2d. The copy cannot be trained, saved, moved or cast: keep the original model for that, and
call this on a model already on the device it will run on.
"""

from __future__ import annotations

import copy
import ctypes
import functools
import warnings
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from ..hardware import fast_paths, keep_freed_memory, onednn_available, resolve_dtype
from .clip import CLIP
from .layers import MLP, QUICK_GELU_SCALE, Attention, LayerNorm, Position, QuickGELU, attend, onednn_linear
from .vision import Bottleneck, ModifiedResNet


class _Frozen(nn.Module):
    """Holds prepacked tensors as plain attributes, so everything that would silently drop or mishandle them fails."""

    def train(self, mode: bool = True) -> _Frozen:
        if mode:
            raise RuntimeError("a model from optimize_for_inference cannot be trained: train the original model")
        return super().train(False)

    def _apply(self, fn, recurse=True):  # noqa: ANN001 (nn.Module's signature)
        raise RuntimeError("a model from optimize_for_inference cannot be moved or cast: move or cast the original "
                           "model, then call optimize_for_inference on it")

    def _save_to_state_dict(self, destination, prefix, keep_vars):  # noqa: ANN001
        raise RuntimeError("a model from optimize_for_inference has no state dict (its weights are folded and "
                           "prepacked): save the original model")

    def _load_from_state_dict(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003
        raise RuntimeError("a model from optimize_for_inference cannot load weights: load them into the original "
                           "model, then call optimize_for_inference on it")


@functools.cache
def int8_available() -> bool:
    """True when this torch has the quantized engine's dynamic int8 linear (fbgemm / x86) and it computes F.linear to
    int8 accuracy on small fixed tensors."""
    if not {"x86", "fbgemm"} & set(torch.backends.quantized.supported_engines):
        return False
    x, w, b = torch.linspace(-1, 1, 24).view(3, 8), torch.linspace(-1, 1, 40).view(5, 8), torch.linspace(-1, 1, 5)
    try:
        y = torch.ops.quantized.linear_dynamic(x, _int8_pack(w, b), True)
    except (RuntimeError, AttributeError):
        return False
    return torch.allclose(y, F.linear(x, w, b), atol=0.05)


def _int8_pack(weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """The weight quantized to int8 per output row (symmetric: scale = max |w| / 127), packed for the quantized
    engine with its fp32 bias."""
    weight = weight.detach().float()
    scale = (weight.abs().amax(dim=1).clamp_min(1e-12) / 127).double()
    with warnings.catch_warnings():
        # torch >= 2.14 announces that quantized tensor creation will be removed; int8_available() then says False
        # and optimize_for_inference refuses int8 with a clear error instead of failing here.
        warnings.filterwarnings("ignore", message=".*quantized tensor creation functions.*")
        q = torch.quantize_per_channel(weight, scale, torch.zeros(len(scale), dtype=torch.long), 0, torch.qint8)
    return torch.ops.quantized.linear_prepack(q, None if bias is None else bias.detach().float())


class FrozenLinear(_Frozen):
    """activation(x @ weight.T + bias); activation is "none", "swish" or "gelu" (erf). `kernel`:
    - "onednn": the weight prepacked for oneDNN once, the activation fused into the matmul;
    - "int8": the weight in int8 per output row, activations quantized per call (dynamic quantization, 7-bit so that
      AVX2's int16 pair sums cannot saturate), through torch's quantized engine (fbgemm); fp32 in and out;
    - "plain": F.linear on the folded weight."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, dtype: torch.dtype, kernel: str,
                 activation: str = "none"):
        super().__init__()
        self.activation, self.kernel = activation, kernel
        if kernel == "int8":  # the bias is packed with the weight
            self.weight, self.bias = _int8_pack(weight, bias), None
            return
        weight = weight.detach().to(dtype).contiguous()
        self.weight = torch.ops.mkldnn._reorder_linear_weight(weight) if kernel == "onednn" else weight
        self.bias = None if bias is None else bias.detach().to(dtype)

    @property
    def packed(self) -> bool:
        return self.kernel == "onednn"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kernel == "onednn":
            return onednn_linear(x, self.weight, self.bias, self.activation,
                                 "none" if self.activation == "gelu" else "")
        if self.kernel == "int8":
            y = torch.ops.quantized.linear_dynamic(x.reshape(-1, x.shape[-1]), self.weight, True)
            y = y.view(*x.shape[:-1], y.shape[-1])
        else:
            y = F.linear(x, self.weight, self.bias)
        if self.activation == "swish":
            return F.silu(y)
        return F.gelu(y) if self.activation == "gelu" else y


def frozen_linear(linear: nn.Linear, dtype: torch.dtype, kernel: str) -> FrozenLinear:
    return FrozenLinear(linear.weight, linear.bias, dtype, kernel)


class FrozenPatchEmbedding(_Frozen):
    """A ViT's patch embedding (a convolution whose stride is its kernel, no padding, no bias) as one matmul on the
    image cut into patches: the same products, and at batch 1 a quarter of the convolution's time (the convolution
    kernel is slow for 3 input channels and a 32-pixel kernel). Returns (N, D, g, g) as the convolution does."""

    def __init__(self, conv: nn.Conv2d, dtype: torch.dtype, kernel: str):
        super().__init__()
        self.patch = conv.kernel_size[0]
        self.linear = FrozenLinear(conv.weight.reshape(conv.out_channels, -1), None, dtype, kernel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, p = x.shape[0], x.shape[1], self.patch
        gh, gw = x.shape[2] // p, x.shape[3] // p
        patches = x[:, :, :gh * p, :gw * p].reshape(n, c, gh, p, gw, p).permute(0, 2, 4, 1, 3, 5)
        out = self.linear(patches.reshape(n, gh * gw, c * p * p))  # (N, g*g, D), features in (c, ky, kx) order
        return out.view(n, gh, gw, -1).permute(0, 3, 1, 2)


def is_patch_embedding(module: nn.Module) -> bool:
    return (isinstance(module, nn.Conv2d) and module.bias is None and module.groups == 1
            and module.kernel_size == module.stride and module.kernel_size[0] == module.kernel_size[1]
            and module.padding == (0, 0) and module.dilation == (1, 1))


class FrozenAttention(_Frozen):
    """layers.Attention with prepacked projections."""

    def __init__(self, attn: Attention, dtype: torch.dtype, kernel: str):
        super().__init__()
        self.heads = attn.heads
        self.qkv = FrozenLinear(attn.in_proj_weight, attn.in_proj_bias, dtype, kernel)
        self.out = frozen_linear(attn.out_proj, dtype, kernel)

    def forward(self, x: torch.Tensor, *, causal: bool = False, at: Position = None) -> torch.Tensor:
        return self.out(attend(self.qkv(x), self.heads, causal=causal, at=at))


class FrozenMLP(_Frozen):
    """layers.MLP with its activation fused into c_fc (QuickGELU as a scaled swish; see the module docstring)."""

    def __init__(self, mlp: MLP, dtype: torch.dtype, kernel: str):
        super().__init__()
        fc_w, fc_b, proj_w = mlp.c_fc.weight.float(), mlp.c_fc.bias.float(), mlp.c_proj.weight.float()
        if isinstance(mlp.gelu, QuickGELU):
            s = QUICK_GELU_SCALE
            fc_w, fc_b, proj_w, activation = fc_w * s, fc_b * s, proj_w / s, "swish"
        else:
            activation = "gelu"
        self.c_fc = FrozenLinear(fc_w, fc_b, dtype, kernel, activation)
        self.c_proj = FrozenLinear(proj_w, mlp.c_proj.bias, dtype, kernel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(self.c_fc(x))


class FrozenLayerNorm(_Frozen):
    """LayerNorm on the activations' own dtype (the kernel accumulates in fp32)."""

    def __init__(self, ln: LayerNorm, dtype: torch.dtype):
        super().__init__()
        self.shape, self.eps = ln.normalized_shape, ln.eps
        self.weight, self.bias = ln.weight.detach().to(dtype), ln.bias.detach().to(dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, self.shape, self.weight, self.bias, self.eps)


class FrozenConv(_Frozen):
    """A bias-free convolution with the BatchNorm after it folded in, prepacked for oneDNN, channels_last, with an
    optional fused ReLU and an optional fused residual sum (relu(conv(x) + residual), overwriting `residual`).

    `size` is the side of the images it will see: oneDNN picks the packed layout from an example input's shape.
    Without one it chose a layout for 1x1 convolutions that made them many times slower on channels_last activations;
    and for some shapes the layout for an example of batch 1 differs from the one for batch 2 or more, each many times
    slower on the other's batches (RN50 fp32 on AVX-512: a 256->1024 1x1 convolution at 14x14 takes 0.6 ms at batch 1
    packed for batch 1 and 7.9 ms packed for batch 2; at batch 2 it is 8.6 ms against 1.1 ms). So the weight is
    packed for both, and kept once where the two packings are the same bytes (most layers)."""

    def __init__(self, conv: nn.Conv2d, bn: nn.BatchNorm2d, dtype: torch.dtype, packed: bool, relu: bool, size: int):
        super().__init__()
        scale = bn.weight.float() / torch.sqrt(bn.running_var.float() + bn.eps)
        weight = conv.weight.float() * scale[:, None, None, None]
        bias = bn.bias.float() - bn.running_mean.float() * scale
        self.padding, self.stride, self.dilation = list(conv.padding), list(conv.stride), list(conv.dilation)
        self.groups, self.relu, self.packed = conv.groups, relu, packed
        paths = fast_paths()
        self.in_place, self.batch_packing = paths.residual_in_place, packed and paths.conv_batch_packing
        weight = weight.to(dtype).contiguous(memory_format=torch.channels_last)
        self.weight = self.batched_weight = weight  # for one image, and for two or more
        if packed:
            onednn_weight = weight.to_mkldnn()

            def pack(batch: int) -> torch.Tensor:
                return torch._C._nn.mkldnn_reorder_conv2d_weight(onednn_weight, self.padding, self.stride,
                                                                 self.dilation, self.groups,
                                                                 [batch, conv.in_channels, size, size])

            self.weight = self.batched_weight = pack(1)
            if self.batch_packing:
                batched = pack(2)
                if not same_bytes(self.weight, batched):
                    self.batched_weight = batched
        self.bias = bias.to(dtype)

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None = None) -> torch.Tensor:
        if not self.packed:
            y = F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)
            if residual is not None:
                y += residual
            return F.relu_(y) if self.relu else y
        weight = self.weight if x.shape[0] == 1 else self.batched_weight
        args = (weight, self.bias, self.padding, self.stride, self.dilation, self.groups)
        if residual is None:
            return torch.ops.mkldnn._convolution_pointwise(x, *args, "relu" if self.relu else "none", [], "")
        # relu(conv(x) + residual): the only binary fusion used (Bottleneck's last convolution, self.relu is True).
        # Accumulated into `residual` itself (oneDNN's sum post-op), which no caller reads again: 1-3% faster on RN50
        # than writing a fresh output, on both CPU classes, and the same values.
        if self.in_place:
            return torch.ops.mkldnn._convolution_pointwise_.binary(residual, x, *args, "add", None, "relu", [], "")
        return torch.ops.mkldnn._convolution_pointwise.binary(x, residual, *args, "add", None, "relu", [], "")


def same_bytes(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether two oneDNN-packed tensors hold the same bytes (so the same layout); False where this torch cannot say."""
    try:
        n = torch.ops.mkldnn._nbytes(a)
        if n != torch.ops.mkldnn._nbytes(b):
            return False
        a_bytes, b_bytes = ((ctypes.c_uint8 * n).from_address(torch.ops.mkldnn.data_ptr(t)) for t in (a, b))
    except (AttributeError, RuntimeError):  # a torch without these ops
        return False
    return torch.equal(torch.frombuffer(a_bytes, dtype=torch.uint8), torch.frombuffer(b_bytes, dtype=torch.uint8))


class FrozenBottleneck(_Frozen):
    def __init__(self, block: Bottleneck, dtype: torch.dtype, packed: bool, size: int):
        super().__init__()
        # The anti-aliasing pool's stride (1 without one): conv3 and the downsample path see size // stride.
        stride = self.stride = block.avgpool.stride if isinstance(block.avgpool, nn.AvgPool2d) else 1
        self.conv1 = FrozenConv(block.conv1, block.bn1, dtype, packed, relu=True, size=size)
        self.conv2 = FrozenConv(block.conv2, block.bn2, dtype, packed, relu=True, size=size)
        self.avgpool = block.avgpool
        # relu(bn3(conv3(x)) + identity), after the pool
        self.conv3 = FrozenConv(block.conv3, block.bn3, dtype, packed, relu=True, size=size // stride)
        self.down_pool, self.down = None, None
        if block.downsample is not None:
            pool, conv, bn = block.downsample
            self.down_pool, self.down = pool, FrozenConv(conv, bn, dtype, packed, relu=False, size=size // stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.down is None else self.down(self.down_pool(x))
        return self.conv3(self.avgpool(self.conv2(self.conv1(x))), identity)


class FrozenResNet(_Frozen):
    """vision.ModifiedResNet with folded, prepacked convolutions on channels_last activations; `linear_kernel` is for
    the attention pool's projections."""

    def __init__(self, resnet: ModifiedResNet, dtype: torch.dtype, packed: bool, linear_kernel: str):
        super().__init__()
        self.image_size, self.dtype = resnet.image_size, dtype
        size = resnet.image_size
        self.stem = nn.ModuleList(FrozenConv(conv, bn, dtype, packed, relu=True, size=side) for conv, bn, side in (
            (resnet.conv1, resnet.bn1, size), (resnet.conv2, resnet.bn2, size // 2),
            (resnet.conv3, resnet.bn3, size // 2)))
        self.avgpool = resnet.avgpool
        blocks, size = [], size // 4
        for stage in (resnet.layer1, resnet.layer2, resnet.layer3, resnet.layer4):
            for block in stage:
                blocks.append(FrozenBottleneck(block, dtype, packed, size))
                size //= blocks[-1].stride
        self.blocks = nn.Sequential(*blocks)
        pool = copy.deepcopy(resnet.attnpool).to(dtype).requires_grad_(False)  # its forward, frozen projections
        _freeze_children(resnet.attnpool, pool, dtype, Packing(linear_kernel, packed))
        self.attnpool = pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.dtype).contiguous(memory_format=torch.channels_last)
        for conv in self.stem:
            x = conv(x)
        return self.attnpool(self.blocks(self.avgpool(x)))


class Packing(NamedTuple):
    """How a frozen copy runs its linears ("onednn", "int8" or "plain") and whether it prepacks convolutions for
    oneDNN (hardware.fast_paths, where oneDNN serves the dtype)."""

    linear: str
    conv: bool


INT8 = ("int8", torch.qint8)


def optimize_for_inference(model: CLIP, dtype: torch.dtype | str | None = None) -> CLIP:
    """An inference-only copy of `model` in `dtype` with weights folded and prepacked. `dtype` is a torch dtype, a
    precision name ("auto": bf16 where this device computes it natively, else fp32; "fp32", "bf16"), "int8" (an
    opt-in for CPUs without native bf16: every Linear dynamically quantized, the rest fp32) or None (the model's own
    dtype).

    Outputs equal the original's up to float rounding: fp32 copies within ~1e-5, bf16 copies at cosine similarity
    >= 0.999 to fp32, int8 copies at cosine >= 0.99 (tests/test_inference.py). Its own parameters are frozen; it
    cannot be trained or saved.

    On a CPU it also makes malloc keep freed memory for reuse, process-wide (`hardware.keep_freed_memory`): a batch's
    large activations are otherwise mapped afresh and page-faulted in on every call (RN50 at batch 32: 7-12% of
    its time on AVX-512).
    """
    if not isinstance(model, CLIP):
        raise TypeError(f"optimize_for_inference takes a clipworks CLIP model, got {type(model).__name__}")
    device = model.text_projection.device
    int8 = dtype in INT8
    if int8 and (device.type != "cpu" or not int8_available()):
        raise ConfigError("int8 inference needs a CPU and torch's quantized engine (fbgemm/x86); use fp32 or bf16")
    dtype = torch.float32 if int8 else resolve_dtype(dtype, device) or model.dtype
    available, paths = onednn_available(device, dtype), fast_paths()
    linear = "int8" if int8 else "onednn" if available and paths.packed_linear else "plain"
    packing = Packing(linear=linear, conv=available and paths.packed_conv)
    if device.type == "cpu":
        keep_freed_memory()
    frozen = copy.deepcopy(model).to(dtype).eval().requires_grad_(False)
    _freeze_children(model, frozen, dtype, packing)
    return frozen


def _freeze_children(source: nn.Module, target: nn.Module, dtype: torch.dtype, packing: Packing) -> None:
    """Replace `target`'s submodules (a copy of `source` cast to `dtype`) by frozen ones built from `source`'s, so
    folds (BatchNorm, the QuickGELU scale) run in the original precision before the cast."""
    for name, child in source.named_children():
        replacement = _frozen(child, dtype, packing)
        if replacement is None:
            _freeze_children(child, getattr(target, name), dtype, packing)
        else:
            setattr(target, name, replacement)


def _frozen(module: nn.Module, dtype: torch.dtype, packing: Packing) -> nn.Module | None:
    if isinstance(module, Attention):
        return FrozenAttention(module, dtype, packing.linear)
    if isinstance(module, MLP):
        return FrozenMLP(module, dtype, packing.linear)
    if isinstance(module, LayerNorm):
        return FrozenLayerNorm(module, dtype)
    if isinstance(module, ModifiedResNet):
        return FrozenResNet(module, dtype, packing.conv, packing.linear)
    if isinstance(module, nn.Linear):
        return frozen_linear(module, dtype, packing.linear)
    if is_patch_embedding(module) and packing.linear != "int8" and fast_paths().patch_matmul:  # int8: Linears only
        return FrozenPatchEmbedding(module, dtype, packing.linear)
    return None
