"""The paper's evaluations: zero-shot, linear probes, retrieval, robustness, prompts, the report."""
