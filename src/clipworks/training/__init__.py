"""Contrastive training: run configuration, recipes, the loop, the loss, the optimizer, multi-process."""
