"""Image-text retrieval metrics (Radford et al. 2021, Sec. 3.1.4 / Table 13): recall@K in both directions.

Pure functions of a similarity matrix. An image may have several captions: image->text counts a hit when ANY of its
captions is among the top K texts; text->image asks whether the caption's own image is among the top K images.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def recall_at_k(similarity: torch.Tensor, text_to_image: Sequence[int] | torch.Tensor,
                ks: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
    """`similarity`: (N_images, N_texts); `text_to_image[j]` is the index of the image caption j describes.

    Returns {"image_to_text_R@K": ..., "text_to_image_R@K": ...} as fractions in [0, 1]. A tie with the correct
    item counts in its favour (only strictly higher scores push it down).
    """
    n_images, n_texts = similarity.shape
    owner = torch.as_tensor(text_to_image, dtype=torch.long, device=similarity.device)
    if owner.shape != (n_texts,):
        raise ValueError(f"text_to_image has {owner.numel()} entries for {n_texts} texts")
    if n_texts and (owner.min() < 0 or owner.max() >= n_images):
        raise ValueError(f"text_to_image refers to images outside 0..{n_images - 1}")
    results: dict[str, float] = {}
    # Rank of the best-ranked correct caption for each image: count texts scoring strictly higher than it.
    is_own = owner.unsqueeze(0) == torch.arange(n_images, device=owner.device).unsqueeze(1)  # (N_img, N_txt)
    best_own = similarity.masked_fill(~is_own, float("-inf")).max(dim=1).values  # (N_img,)
    image_rank = (similarity > best_own.unsqueeze(1)).sum(dim=1)  # 0 = the top
    # Rank of each caption's image among all images.
    own_score = similarity[owner, torch.arange(n_texts, device=owner.device)]  # (N_txt,)
    text_rank = (similarity > own_score.unsqueeze(0)).sum(dim=0)
    for k in ks:
        results[f"image_to_text_R@{k}"] = (image_rank < k).float().mean().item()
        results[f"text_to_image_R@{k}"] = (text_rank < k).float().mean().item()
    return results


@torch.no_grad()
def recall_at_k_chunked(image_features: torch.Tensor, text_features: torch.Tensor,
                        text_to_image: Sequence[int] | torch.Tensor, ks: Sequence[int] = (1, 5, 10), *,
                        max_elements: int = 1 << 26) -> dict[str, float]:
    """`recall_at_k(image_features @ text_features.T, text_to_image, ks)` without the (N_images, N_texts) matrix.

    Similarities are computed for a block of images at a time (at most `max_elements` entries, 256 MB in fp32), in
    two passes over the same blocks: the first ranks each image's best caption and collects every caption's score
    with its own image, the second counts the images that beat each caption's own. Each score is computed by the
    same block product in both passes, so the ranks, ties included, are those of the dense matrix of these blocks.
    """
    n_images, n_texts = len(image_features), len(text_features)
    owner = torch.as_tensor(text_to_image, dtype=torch.long, device=image_features.device)
    if owner.shape != (n_texts,):
        raise ValueError(f"text_to_image has {owner.numel()} entries for {n_texts} texts")
    if n_texts and (owner.min() < 0 or owner.max() >= n_images):
        raise ValueError(f"text_to_image refers to images outside 0..{n_images - 1}")
    rows = max(1, max_elements // max(1, n_texts))
    blocks = [(i, min(i + rows, n_images)) for i in range(0, n_images, rows)]
    image_rank = torch.empty(n_images, dtype=torch.long, device=owner.device)
    own_score = torch.empty(n_texts, dtype=image_features.dtype, device=owner.device)
    text_columns = torch.arange(n_texts, device=owner.device)
    for start, stop in blocks:
        sim = image_features[start:stop] @ text_features.t()  # (B, N_txt)
        is_own = owner.unsqueeze(0) == torch.arange(start, stop, device=owner.device).unsqueeze(1)
        best_own = sim.masked_fill(~is_own, float("-inf")).max(dim=1).values
        image_rank[start:stop] = (sim > best_own.unsqueeze(1)).sum(dim=1)
        mine = (owner >= start) & (owner < stop)
        own_score[mine] = sim[owner[mine] - start, text_columns[mine]]
    text_rank = torch.zeros(n_texts, dtype=torch.long, device=owner.device)
    for start, stop in blocks:
        sim = image_features[start:stop] @ text_features.t()
        text_rank += (sim > own_score.unsqueeze(0)).sum(dim=0)
    results: dict[str, float] = {}
    for k in ks:
        results[f"image_to_text_R@{k}"] = (image_rank < k).float().mean().item()
        results[f"text_to_image_R@{k}"] = (text_rank < k).float().mean().item()
    return results
