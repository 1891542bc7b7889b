"""clipworks: CLIP (Radford et al., ICML 2021) — exact OpenAI-compatible models, training, evaluation."""
