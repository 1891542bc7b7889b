"""Transformer building blocks shared by both towers (Radford et al. 2021, Sec. 2.4; OpenAI's clip/model.py).

Names and parameter layout are OpenAI's (`attn.in_proj_weight`, `mlp.c_fc`, `ln_1`, ...), so OpenAI state dicts load
unchanged. Deliberate differences from OpenAI's code, none of which changes the numbers beyond float rounding:
- tensors are batch-first (N, L, D) rather than (L, N, D);
- attention runs through torch's fused `scaled_dot_product_attention` (with `is_causal` for text) instead of
  `nn.MultiheadAttention` with an explicit mask, keeping the packed `in_proj_weight` of shape (3D, D);
- fp32 projections on CPU run their matmuls in oneDNN (`linear`), QuickGELU is computed as silu(1.702 x) / 1.702:
  both measured faster (bench/RESULTS.md), both tested equal to the plain forms.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..hardware import fast_paths, onednn_available
from .configs import Activation


class LayerNorm(nn.LayerNorm):
    """LayerNorm computed in fp32 whatever the input dtype (as OpenAI's), cast back afterwards. The gain and bias
    are used in fp32 too, so a model whose weights were cast to bf16/fp16 runs on CPU (which refuses mixed dtypes)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = None if self.weight is None else self.weight.float()
        bias = None if self.bias is None else self.bias.float()
        return F.layer_norm(x.float(), self.normalized_shape, weight, bias, self.eps).to(x.dtype)


def onednn_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, activation: str = "none",
                  algorithm: str = "") -> torch.Tensor:
    """(..., in) -> (..., out) through oneDNN's `_linear_pointwise` (weight plain or prepacked), with an optional fused
    activation ("none", "swish", "gelu" with algorithm "none" for erf)."""
    y = torch.ops.mkldnn._linear_pointwise(x.reshape(-1, x.shape[-1]), weight, bias, activation, [], algorithm)
    return y.view(*x.shape[:-1], y.shape[-1])


class _OneDNNLinear(torch.autograd.Function):
    """x @ weight.T + bias with the forward and input-gradient matmuls in oneDNN, the weight gradient in torch's."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:  # noqa: ANN001
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return onednn_linear(x, weight, bias)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:  # noqa: ANN001
        x, weight = ctx.saved_tensors
        grad2 = grad.reshape(-1, grad.shape[-1])
        grad_x = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:
            grad_x = onednn_linear(grad, weight.t(), None)
        if ctx.needs_input_grad[1]:
            grad_weight = grad2.t() @ x.reshape(-1, x.shape[-1])
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_bias = grad2.sum(0)
        return grad_x, grad_weight, grad_bias


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """F.linear, with fp32 matmuls on CPU run by oneDNN rather than torch's default BLAS (MKL): faster on the
    model's shapes (bench/RESULTS.md), values within float rounding. Anything else (other dtypes, autocast,
    other devices, tracing, export, torch.compile) is plain F.linear."""
    if (x.dtype == torch.float32 and weight.dtype == torch.float32 and x.device.type == "cpu"
            and not torch.is_autocast_enabled("cpu") and not _capturing_a_graph()
            and fast_paths().training_linear and onednn_available(x.device, x.dtype)):
        return _OneDNNLinear.apply(x, weight, bias)
    return F.linear(x, weight, bias)


QUICK_GELU_SCALE = 1.702


class QuickGELU(nn.Module):
    """x * sigmoid(1.702 x): the GELU approximation OpenAI's CLIP models were trained with.

    Computed as silu(1.702 x) / 1.702, the same function (values within an ulp): its backward is one fused kernel
    instead of autograd's five elementwise passes."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.silu(x * QUICK_GELU_SCALE) / QUICK_GELU_SCALE


def activation_layer(name: Activation) -> nn.Module:
    if name == "quick_gelu":
        return QuickGELU()
    if name == "gelu":
        return nn.GELU()
    raise ValueError(f"unknown activation '{name}': use 'quick_gelu' (OpenAI models) or 'gelu'")


class Attention(nn.Module):
    """Multi-head self-attention with OpenAI's packed q/k/v projection (`in_proj_weight`, `in_proj_bias`)."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        if width % heads:
            raise ValueError(f"width {width} is not divisible by {heads} heads")
        self.heads = heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * width, width))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * width))
        self.out_proj = nn.Linear(width, width)
        # nn.MultiheadAttention's own initialisation, which OpenAI's vision towers keep.
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.zeros_(self.out_proj.bias)

    def forward(self, x: torch.Tensor, *, causal: bool = False, at: Position = None) -> torch.Tensor:
        out = attend(linear(x, self.in_proj_weight, self.in_proj_bias), self.heads, causal=causal, at=at)
        return linear(out, self.out_proj.weight, self.out_proj.bias)


Position = int | torch.Tensor | None  # one token position for every row, one per row ((N,) int64), or all of them


def attend(qkv: torch.Tensor, heads: int, *, causal: bool, at: Position = None) -> torch.Tensor:
    """(N, L, 3D) packed queries, keys and values -> (N, L, D) multi-head attention output, before the out
    projection; with `at`, only the output at that position of each row, (N, 1, D)."""
    n, length, width = qkv.shape[0], qkv.shape[1], qkv.shape[2] // 3
    q, k, v = qkv.view(n, length, 3, heads, width // heads).permute(2, 0, 3, 1, 4)  # 3 x (N, h, L, hd)
    if at is None:
        out = F.scaled_dot_product_attention(q, k, v, is_causal=causal)  # (N, h, L, hd)
        return out.transpose(1, 2).reshape(n, length, width)
    q = pick(qkv, at)[:, :, :width].view(n, 1, heads, width // heads).transpose(1, 2)  # (N, h, 1, hd)
    mask = None
    if causal:  # keys up to the query's position: (1 or N, 1, 1, L)
        mask = torch.arange(length, device=qkv.device) <= torch.as_tensor(at, device=qkv.device).view(-1, 1, 1, 1)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # (N, h, 1, hd)
    return out.transpose(1, 2).reshape(n, 1, width)


def pick(x: torch.Tensor, at: int | torch.Tensor) -> torch.Tensor:
    """(N, L, D) -> (N, 1, D): the token at `at` (one position, or one per row) of each row."""
    if isinstance(at, int):
        return x[:, at:at + 1]
    return x[torch.arange(x.shape[0], device=x.device), at].unsqueeze(1)


class MLP(nn.Module):
    """c_fc (width -> hidden) -> activation -> c_proj (hidden -> width); hidden is 4 x width in OpenAI's models and
    wider in some of open_clip's (ViT-g-14: 1408 -> 6144, ViT-bigG-14: 1664 -> 8192)."""

    def __init__(self, width: int, hidden: int, activation: Activation):
        super().__init__()
        self.c_fc = nn.Linear(width, hidden)
        self.gelu = activation_layer(activation)
        self.c_proj = nn.Linear(hidden, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if isinstance(self.gelu, QuickGELU) and _folding_pays(x):
            # c_proj(silu(1.702 c_fc(x)) / 1.702) with the two scalings moved onto the weights: for many rows the
            # weights are much smaller than the hidden activations, and this saves two passes over those forward
            # and two backward (the same function, within float rounding).
            hidden = F.silu(linear(x, self.c_fc.weight * QUICK_GELU_SCALE, self.c_fc.bias * QUICK_GELU_SCALE))
            return linear(hidden, self.c_proj.weight / QUICK_GELU_SCALE, self.c_proj.bias)
        x = self.gelu(linear(x, self.c_fc.weight, self.c_fc.bias))
        return linear(x, self.c_proj.weight, self.c_proj.bias)


def _folding_pays(x: torch.Tensor) -> bool:
    """Whether scaling an MLP's weights costs less than scaling its hidden activations: rows (tokens in the batch)
    well above the width. Never in a traced, exported or compiled graph, whose batch size is not this one."""
    return fast_paths().fold_quick_gelu and x.numel() >= 4 * x.shape[-1] ** 2 and not _capturing_a_graph()


def _capturing_a_graph() -> bool:
    """Tracing, ONNX export or torch.compile: the fast paths' private ops and batch-size choices stay out of graphs."""
    return torch.jit.is_tracing() or torch.onnx.is_in_onnx_export() or torch.compiler.is_compiling()


class ResidualAttentionBlock(nn.Module):
    """Pre-LN block: x + attn(ln_1(x)), then x + mlp(ln_2(x))."""

    def __init__(self, width: int, heads: int, mlp_width: int, activation: Activation):
        super().__init__()
        self.ln_1 = LayerNorm(width)
        self.attn = Attention(width, heads)
        self.ln_2 = LayerNorm(width)
        self.mlp = MLP(width, mlp_width, activation)

    def forward(self, x: torch.Tensor, *, causal: bool = False, at: Position = None) -> torch.Tensor:
        """(N, L, D) -> (N, L, D); with `at`, only the output at that position of each row, (N, 1, D): keys and
        values still come from every token, but the query, out projection and MLP run on one token a row."""
        attended = self.attn(self.ln_1(x), causal=causal, at=at)
        x = (x if at is None else pick(x, at)) + attended
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    """`layers` pre-LN blocks of `width`, `heads` attention heads and an MLP `mlp_width` wide."""

    def __init__(self, width: int, layers: int, heads: int, mlp_width: int, activation: Activation):
        super().__init__()
        self.width = width
        self.layers = layers
        self.resblocks = nn.ModuleList(ResidualAttentionBlock(width, heads, mlp_width, activation)
                                       for _ in range(layers))
        self.grad_checkpointing = False  # trade compute for memory in training (the paper's recipe uses it)

    def forward(self, x: torch.Tensor, *, causal: bool = False, at: Position = None) -> torch.Tensor:
        """(N, L, D) -> (N, L, D). A caller that reads one token a row (the class token, end-of-text) passes its
        position as `at` and gets (N, 1, D): the last block then computes that token only after its q/k/v projection
        (the same numbers; three quarters of one block's work less)."""
        last = len(self.resblocks) - 1
        for i, block in enumerate(self.resblocks):
            where = at if i == last else None
            if self.grad_checkpointing and torch.is_grad_enabled():
                x = checkpoint(block, x, causal=causal, at=where, use_reentrant=False)
            else:
                x = block(x, causal=causal, at=where)
        return x if at is None or last >= 0 else pick(x, at)

    def init_openai(self) -> None:
        """OpenAI's initialisation of the text transformer (CLIP.initialize_parameters)."""
        proj_std = self.width**-0.5 * (2 * self.layers) ** -0.5
        attn_std = self.width**-0.5
        fc_std = (2 * self.width) ** -0.5
        for block in self.resblocks:
            nn.init.normal_(block.attn.in_proj_weight, std=attn_std)
            nn.init.normal_(block.attn.out_proj.weight, std=proj_std)
            nn.init.normal_(block.mlp.c_fc.weight, std=fc_std)
            nn.init.normal_(block.mlp.c_proj.weight, std=proj_std)


def scaled_randn(*shape: int, scale: float) -> nn.Parameter:
    return nn.Parameter(scale * torch.randn(*shape))


def default_logit_scale() -> float:
    """ln(1 / 0.07): the paper's initial temperature of 0.07."""
    return math.log(1 / 0.07)
