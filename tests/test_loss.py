"""The contrastive loss, the temperature clamp, and the optimizer's parameter groups, on hand-computed cases."""

from __future__ import annotations

import math

import pytest
import torch

from clipworks import create_model
from clipworks.training.loss import MAX_LOGIT_SCALE, clamp_logit_scale_, clip_loss
from clipworks.training.optim import cosine_lr, param_groups


def test_loss_on_a_hand_computed_3x3_case() -> None:
    # Orthonormal embeddings: similarity is the identity; with scale s the logits are s*I.
    emb = torch.eye(3)
    s = torch.tensor(math.log(2.0))  # exp -> 2
    # Each row's cross-entropy: -log(e^2 / (e^2 + 2 e^0)).
    expected = -math.log(math.exp(2) / (math.exp(2) + 2))
    assert clip_loss(emb, emb, s).item() == pytest.approx(expected, rel=1e-6)
    # Swapping two texts makes those rows wrong: loss for rows 0,1 is -log(1/(e^2+2)), row 2 unchanged.
    swapped = emb[[1, 0, 2]]
    wrong = -math.log(1 / (math.exp(2) + 2))
    assert clip_loss(emb, swapped, s).item() == pytest.approx((2 * wrong + expected) / 3, rel=1e-6)


def test_loss_is_symmetric_mean_of_both_directions_and_scale_invariant_to_norm() -> None:
    g = torch.Generator().manual_seed(0)
    img, txt = torch.randn(5, 8, generator=g), torch.randn(5, 8, generator=g)
    s = torch.tensor(2.0)
    logits = s.exp() * torch.nn.functional.normalize(img, dim=1) @ torch.nn.functional.normalize(txt, dim=1).t()
    labels = torch.arange(5)
    i2t = -torch.log_softmax(logits, dim=1)[labels, labels].mean()
    t2i = -torch.log_softmax(logits, dim=0)[labels, labels].mean()
    assert clip_loss(img, txt, s).item() == pytest.approx(((i2t + t2i) / 2).item(), rel=1e-6)
    assert clip_loss(3 * img, 0.5 * txt, s).item() == pytest.approx(clip_loss(img, txt, s).item(), rel=1e-6)
    with pytest.raises(ValueError, match="differ in shape"):
        clip_loss(img, txt[:4], s)


def test_logit_scale_clamp_caps_temperature_at_100() -> None:
    scale = torch.nn.Parameter(torch.tensor(7.0))
    clamp_logit_scale_(scale)
    assert scale.exp().item() == pytest.approx(100.0, rel=1e-6)
    assert MAX_LOGIT_SCALE == pytest.approx(math.log(100))


def test_weight_decay_only_on_weight_matrices() -> None:
    model = create_model("RN-Tiny")
    groups = param_groups(model, 0.2)
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = {names[id(p)] for g in groups if g["weight_decay"] == 0.2 for p in g["params"]}
    undecayed = {names[id(p)] for g in groups if g["weight_decay"] == 0.0 for p in g["params"]}
    assert "logit_scale" in undecayed and "ln_final.weight" in undecayed and "visual.bn1.bias" in undecayed
    assert "transformer.resblocks.0.attn.in_proj_weight" in decayed and "text_projection" in decayed
    assert all(model.get_parameter(n).ndim >= 2 for n in decayed)
    assert len(decayed) + len(undecayed) == len(names) and not decayed & undecayed


def test_cosine_schedule_warms_up_then_decays() -> None:
    kw = dict(base_lr=1.0, warmup_steps=10, total_steps=110)
    assert cosine_lr(0, **kw) == pytest.approx(0.1)
    assert cosine_lr(9, **kw) == pytest.approx(1.0)
    assert cosine_lr(60, **kw) == pytest.approx(0.5)  # halfway through the cosine
    assert cosine_lr(110, **kw) == pytest.approx(0.0)


def test_sharded_loss_averaged_over_ranks_equals_the_global_loss() -> None:
    from clipworks.training.loss import local_clip_loss

    g = torch.Generator().manual_seed(1)
    img = torch.nn.functional.normalize(torch.randn(6, 4, generator=g), dim=1)
    txt = torch.nn.functional.normalize(torch.randn(6, 4, generator=g), dim=1)
    s = torch.tensor(1.5)
    shards = [local_clip_loss(img[r * 2:(r + 1) * 2], txt[r * 2:(r + 1) * 2], img, txt, s, offset=r * 2)
              for r in range(3)]
    assert (sum(shards) / 3).item() == pytest.approx(clip_loss(img, txt, s).item(), rel=1e-6)


@pytest.mark.parametrize("b, n, offset", [(4096, 4096, 0), (300, 900, 300)])
def test_tiled_loss_matches_the_plain_loss_and_its_gradients(b: int, n: int, offset: int) -> None:
    from clipworks.training.loss import local_clip_loss, tiled_local_clip_loss

    g = torch.Generator().manual_seed(2)
    all_img = torch.nn.functional.normalize(torch.randn(n, 64, generator=g), dim=1)
    all_txt = torch.nn.functional.normalize(torch.randn(n, 64, generator=g) + all_img, dim=1)
    results = []
    for fn in (local_clip_loss, lambda *a, **kw: tiled_local_clip_loss(*a, **kw, tile=512)):
        img, txt = all_img.clone().requires_grad_(), all_txt.clone().requires_grad_()
        scale = torch.tensor(2.5, requires_grad=True)
        # The gathered columns are the same tensors as the local rows where they overlap, as after all_gather.
        loss = fn(img[offset:offset + b], txt[offset:offset + b], img, txt, scale, offset=offset)
        loss.backward()
        results.append((loss.detach(), img.grad, txt.grad, scale.grad))
    for plain, tiled in zip(*results):
        torch.testing.assert_close(tiled, plain, atol=1e-6, rtol=1e-5)  # gradients are ~1e-3 here
