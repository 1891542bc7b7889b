"""Image towers: the Vision Transformer and the ModifiedResNet (Radford et al. 2021, Sec. 2.4; OpenAI's clip/model.py).

ViT: patchify conv without bias -> class token -> positional embedding -> ln_pre -> Transformer -> ln_post on the class
token -> @ proj. ModifiedResNet: 3-conv stem + avgpool; anti-aliased Bottlenecks (all convolutions stride 1, an avgpool
where the stride would be, also on the downsample path); attention pooling over the mean token and the grid.
Parameter names and initialisation are OpenAI's.

Patch dropout (FLIP, Li et al. 2023; as open_clip's PatchDropout): in training mode only, a ViT keeps a random
max(1, int(n * (1 - p))) of its n patch tokens after the positional embedding is added and before ln_pre; the class
token is always kept. It is a plain attribute, not a parameter: state dicts and eval-mode outputs are unchanged.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from ..hardware import fast_paths
from .configs import Activation, VisionConfig
from .layers import LayerNorm, Transformer, scaled_randn


class VisionTransformer(nn.Module):
    def __init__(self, cfg: VisionConfig, output_dim: int, activation: Activation):
        super().__init__()
        width, grid = cfg.width, cfg.image_size // cfg.patch_size
        self.image_size = cfg.image_size
        self.conv1 = nn.Conv2d(3, width, kernel_size=cfg.patch_size, stride=cfg.patch_size, bias=False)
        scale = width**-0.5
        self.class_embedding = scaled_randn(width, scale=scale)
        self.positional_embedding = scaled_randn(grid * grid + 1, width, scale=scale)
        self.ln_pre = LayerNorm(width)
        self.transformer = Transformer(width, cfg.layers, cfg.heads, cfg.mlp_hidden, activation)
        self.ln_post = LayerNorm(width)
        self.proj = scaled_randn(width, output_dim, scale=scale)
        self.patch_dropout = 0.0  # fraction of patch tokens dropped in training mode (FLIP); 0 keeps them all

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)  # (N, D, g, g)
        x = x.flatten(2).transpose(1, 2)  # (N, g*g, D)
        cls = self.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)  # (N, 1, D)
        x = torch.cat([cls, x], dim=1) + self.positional_embedding.to(x.dtype)  # (N, 1 + g*g, D)
        if self.training and self.patch_dropout > 0:
            x = drop_patches(x, self.patch_dropout)  # (N, 1 + keep, D)
        x = self.transformer(self.ln_pre(x), at=0)  # only the class token's output: (N, 1, D)
        return self.ln_post(x[:, 0]) @ self.proj  # (N, E)


def drop_patches(x: torch.Tensor, p: float) -> torch.Tensor:
    """(N, 1 + n, D) tokens -> (N, 1 + max(1, int(n * (1 - p))), D): the class token and a random subset of patches
    per image (drawn from the global RNG, so seeded runs and resumes repeat it)."""
    n = x.shape[1] - 1
    keep = max(1, int(n * (1 - p)))
    idx = torch.rand(x.shape[0], n, device=x.device).argsort(dim=1)[:, :keep] + 1  # (N, keep) patch positions
    patches = x.gather(1, idx.unsqueeze(-1).expand(-1, -1, x.shape[2]))  # (N, keep, D)
    return torch.cat([x[:, :1], patches], dim=1)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1):
        super().__init__()
        out = planes * self.expansion
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        # Anti-aliased downsampling: pool after the 3x3 conv instead of striding it.
        self.avgpool = nn.AvgPool2d(stride) if stride > 1 else nn.Identity()
        self.conv3 = nn.Conv2d(planes, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.downsample = None
        if stride > 1 or inplanes != out:
            # Keys "downsample.0" / "downsample.1" as OpenAI's; the pool ("-1") has no parameters.
            self.downsample = nn.Sequential(OrderedDict([
                ("-1", nn.AvgPool2d(stride)),
                ("0", nn.Conv2d(inplanes, out, 1, stride=1, bias=False)),
                ("1", nn.BatchNorm2d(out)),
            ]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # In place where autograd allows (BatchNorm's backward needs its input, not its output): allocating and
        # writing fresh ReLU and residual-sum tensors is a visible share of a ResNet's CPU time.
        identity = x if self.downsample is None else self.downsample(x)
        x = F.relu_(self.bn1(self.conv1(x)))
        x = F.relu_(self.bn2(self.conv2(x)))
        x = self.bn3(self.conv3(self.avgpool(x)))
        x += identity
        return F.relu_(x)


class AttentionPool2d(nn.Module):
    """Attention pooling: the mean of the grid is the query; keys and values are the mean token and the grid."""

    def __init__(self, grid: int, embed_dim: int, heads: int, output_dim: int):
        super().__init__()
        self.heads = heads
        self.positional_embedding = scaled_randn(grid * grid + 1, embed_dim, scale=embed_dim**-0.5)
        self.k_proj = nn.Linear(embed_dim, embed_dim)
        self.q_proj = nn.Linear(embed_dim, embed_dim)
        self.v_proj = nn.Linear(embed_dim, embed_dim)
        self.c_proj = nn.Linear(embed_dim, output_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(2).transpose(1, 2)  # (N, HW, C)
        x = torch.cat([x.mean(dim=1, keepdim=True), x], dim=1) + self.positional_embedding.to(x.dtype)  # (N, 1+HW, C)
        n, length, c = x.shape
        hd = c // self.heads
        q = self.q_proj(x[:, :1]).view(n, 1, self.heads, hd).transpose(1, 2)  # (N, h, 1, hd)
        k = self.k_proj(x).view(n, length, self.heads, hd).transpose(1, 2)  # (N, h, 1+HW, hd)
        v = self.v_proj(x).view(n, length, self.heads, hd).transpose(1, 2)
        out = F.scaled_dot_product_attention(q, k, v)  # (N, h, 1, hd)
        return self.c_proj(out.transpose(1, 2).reshape(n, c))  # (N, E)

    def init_openai(self) -> None:
        std = self.c_proj.in_features**-0.5
        for proj in (self.q_proj, self.k_proj, self.v_proj, self.c_proj):
            nn.init.normal_(proj.weight, std=std)


class ModifiedResNet(nn.Module):
    def __init__(self, cfg: VisionConfig, output_dim: int):
        super().__init__()
        width = cfg.width
        self.image_size = cfg.image_size
        # Stem: three 3x3 convolutions (the first strided) and an average pool instead of a max pool.
        self.conv1 = nn.Conv2d(3, width // 2, 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width // 2)
        self.conv2 = nn.Conv2d(width // 2, width // 2, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width // 2)
        self.conv3 = nn.Conv2d(width // 2, width, 3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(width)
        self.avgpool = nn.AvgPool2d(2)
        inplanes = width
        stages = []
        for i, blocks in enumerate(cfg.layers):
            planes = width * 2**i
            stride = 1 if i == 0 else 2
            stages.append(nn.Sequential(
                Bottleneck(inplanes, planes, stride),
                *(Bottleneck(planes * Bottleneck.expansion, planes) for _ in range(blocks - 1)),
            ))
            inplanes = planes * Bottleneck.expansion
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.attnpool = AttentionPool2d(cfg.image_size // 32, width * 32, cfg.heads, output_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.conv1.weight.dtype)
        if x.device.type == "cpu" and fast_paths().channels_last_resnet:
            # oneDNN's convolutions, BatchNorms and pools run faster on NHWC activations (bench/kernels.py); the
            # weights keep their layout, so state dicts are unchanged.
            x = x.contiguous(memory_format=torch.channels_last)
        x = F.relu_(self.bn1(self.conv1(x)))
        x = F.relu_(self.bn2(self.conv2(x)))
        x = self.avgpool(F.relu_(self.bn3(self.conv3(x))))  # (N, W, H/4, W/4)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))  # (N, 32W, H/32, W/32)
        return self.attnpool(x)

    def init_openai(self) -> None:
        self.attnpool.init_openai()
        # Zero the last BN gain of every block so each residual branch starts as the identity.
        for stage in (self.layer1, self.layer2, self.layer3, self.layer4):
            for block in stage:
                nn.init.zeros_(block.bn3.weight)


def build_vision_tower(cfg: VisionConfig, output_dim: int, activation: Activation) -> nn.Module:
    if cfg.kind == "vit":
        return VisionTransformer(cfg, output_dim, activation)
    return ModifiedResNet(cfg, output_dim)
