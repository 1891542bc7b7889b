"""clipworks: CLIP (Radford et al., ICML 2021) — exact OpenAI-compatible models, training, evaluation."""

from .configs import MODELS, CLIPConfig, TextConfig, VisionConfig, get_config, list_models
from .model import CLIP, create_model

__all__ = ["CLIP", "CLIPConfig", "MODELS", "TextConfig", "VisionConfig", "create_model", "get_config", "list_models"]
