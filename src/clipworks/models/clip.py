"""The CLIP model: an image tower and a text tower projected into one embedding space (Radford et al. 2021, Sec. 2.4).

One class, one state-dict layout: OpenAI's. The text tower's parameters sit at the top level (`token_embedding`,
`positional_embedding`, `transformer`, `ln_final`, `text_projection`) exactly as in OpenAI's releases, so
`model.load_state_dict(openai_state_dict)` works unchanged.

Deliberate difference from OpenAI's code (exact, not an approximation): `encode_text` runs the causal text transformer
only up to the batch's last end-of-text token. Positions after it can neither influence earlier positions (causal
mask) nor be pooled (pooling takes the EOT position), so the output equals full-length encoding up to float rounding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .configs import CLIPConfig, get_config
from .layers import LayerNorm, Transformer, default_logit_scale
from .vision import build_vision_tower


class CLIP(nn.Module):
    def __init__(self, config: CLIPConfig):
        super().__init__()
        self.config = config
        text = config.text
        self.visual = build_vision_tower(config.vision, config.embed_dim, config.activation)
        self.token_embedding = nn.Embedding(text.vocab_size, text.width)
        self.positional_embedding = nn.Parameter(torch.empty(text.context_length, text.width))
        self.transformer = Transformer(text.width, text.layers, text.heads, text.mlp_hidden, config.activation)
        self.ln_final = LayerNorm(text.width)
        self.text_projection = nn.Parameter(torch.empty(text.width, config.embed_dim))
        self.logit_scale = nn.Parameter(torch.tensor(default_logit_scale()))
        self.init_openai()

    def init_openai(self) -> None:
        """OpenAI's CLIP.initialize_parameters (vision-transformer blocks keep their module defaults, as there)."""
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.positional_embedding, std=0.01)
        if hasattr(self.visual, "init_openai"):
            self.visual.init_openai()
        self.transformer.init_openai()
        nn.init.normal_(self.text_projection, std=self.transformer.width**-0.5)

    @property
    def dtype(self) -> torch.dtype:
        return self.text_projection.dtype

    @property
    def image_size(self) -> int:
        return self.config.vision.image_size

    @property
    def context_length(self) -> int:
        return self.config.text.context_length

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.transformer.grad_checkpointing = enable
        if isinstance(getattr(self.visual, "transformer", None), Transformer):
            self.visual.transformer.grad_checkpointing = enable

    def set_patch_dropout(self, p: float) -> None:
        """Drop this fraction of a ViT's patch tokens in training mode (FLIP); eval outputs are unaffected."""
        if not 0.0 <= p < 1.0:
            raise ValueError(f"patch dropout must be in [0, 1), got {p}")
        if p and not hasattr(self.visual, "patch_dropout"):
            raise ValueError("patch dropout needs a ViT image tower; this model's is a ModifiedResNet (choose a ViT "
                             "model or leave --patch-dropout at 0)")
        if hasattr(self.visual, "patch_dropout"):
            self.visual.patch_dropout = p

    def encode_image(self, images: torch.Tensor, *, normalize: bool = False) -> torch.Tensor:
        """(N, 3, H, W) normalised pixels -> (N, embed_dim) image embeddings."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"encode_image expects a (N, 3, H, W) batch, got shape {tuple(images.shape)}")
        features = self.visual(images.to(self.dtype))
        return F.normalize(features, dim=-1) if normalize else features

    def encode_text(self, text: torch.Tensor, *, normalize: bool = False, trim: bool = True) -> torch.Tensor:
        """(N, L) token ids from `clipworks.tokenize` -> (N, embed_dim) text embeddings, pooled at end-of-text.

        `trim=False` runs all L positions (same output): a graph with no data-dependent length, for ONNX export.
        """
        if text.ndim != 2 or text.shape[1] > self.context_length:
            raise ValueError(f"encode_text expects (N, L<={self.context_length}) token ids, got {tuple(text.shape)}")
        text = text.long()  # argmax on int32 ids and embedding lookups both want int64 (openai/CLIP #219)
        eot = text.argmax(dim=-1)  # EOT has the largest id, so argmax finds it (OpenAI's pooling rule)
        length = int(eot.max()) + 1 if trim and text.numel() else text.shape[1]
        text = text[:, :length]  # drop positions after the last EOT: they cannot change the output (see docstring)
        x = self.token_embedding(text).to(self.dtype) + self.positional_embedding[:length].to(self.dtype)
        x = self.ln_final(self.transformer(x, causal=True, at=eot))  # only the end-of-text outputs: (N, 1, D)
        features = x[:, 0] @ self.text_projection  # (N, E)
        return F.normalize(features, dim=-1) if normalize else features

    def forward(self, images: torch.Tensor, text: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """OpenAI's API: (logits_per_image (N_img, N_txt), logits_per_text (N_txt, N_img))."""
        image_features = self.encode_image(images, normalize=True)
        text_features = self.encode_text(text, normalize=True)
        logits_per_image = self.logit_scale.exp() * image_features @ text_features.t()
        return logits_per_image, logits_per_image.t()


def create_model(name_or_config: str | CLIPConfig, *, seed: int | None = None) -> CLIP:
    """A randomly initialised CLIP (OpenAI's initialisation) by registry name or config. `seed` makes it repeatable."""
    config = get_config(name_or_config) if isinstance(name_or_config, str) else name_or_config
    if seed is None:
        return CLIP(config)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return CLIP(config)
