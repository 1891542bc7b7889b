"""The faster forms of standard operations in layers.py and optim.py compute what the plain ones do."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from clipworks import create_model
from clipworks.hardware import onednn_available
from clipworks.models.layers import MLP, QuickGELU, Transformer, linear
from clipworks.training.optim import create_optimizer, param_groups


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", [(7, 24), (3, 5, 24)])
def test_linear_matches_f_linear_values_and_gradients(shape: tuple[int, ...], bias: bool) -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(*shape, generator=g, requires_grad=True)
    w = torch.randn(40, 24, generator=g, requires_grad=True)
    b = torch.randn(40, generator=g, requires_grad=True) if bias else None
    upstream = torch.randn(*shape[:-1], 40, generator=g)
    grads = []
    for fn in (linear, F.linear):
        y = fn(x, w, b)
        y.backward(upstream)
        grads.append((y.detach(), x.grad, w.grad, None if b is None else b.grad))
        x.grad = w.grad = None
        if b is not None:
            b.grad = None
    for ours, reference in zip(*grads):
        if reference is not None:
            torch.testing.assert_close(ours, reference, atol=1e-5, rtol=1e-5)


def test_linear_runs_in_onednn_on_this_machine() -> None:
    # The checks above compare against F.linear; this one makes sure they exercised the oneDNN path.
    assert onednn_available(torch.device("cpu"), torch.float32)
    y = linear(torch.randn(2, 8), torch.randn(4, 8, requires_grad=True))
    assert type(y.grad_fn).__name__ == "_OneDNNLinearBackward"


def test_linear_only_needs_the_gradients_asked_for() -> None:
    x = torch.randn(4, 8)
    w = torch.randn(6, 8, requires_grad=True)
    linear(x, w).sum().backward()
    torch.testing.assert_close(w.grad, torch.ones(4, 6).t() @ x)


def test_linear_leaves_autocast_and_other_dtypes_to_torch() -> None:
    x, w = torch.randn(4, 8), torch.randn(6, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert linear(x, w).dtype == torch.bfloat16
    assert linear(x.double(), w.double()).dtype == torch.float64
    torch.testing.assert_close(linear(x.bfloat16(), w.bfloat16()), F.linear(x.bfloat16(), w.bfloat16()))


def test_quick_gelu_is_x_times_sigmoid_of_1_702_x() -> None:
    x = torch.linspace(-12, 12, 4001, dtype=torch.float64).float().requires_grad_(True)
    y = QuickGELU()(x)
    reference = x * torch.sigmoid(1.702 * x)
    torch.testing.assert_close(y, reference, atol=1e-6, rtol=1e-6)
    (grad,) = torch.autograd.grad(y.sum(), x)
    (reference_grad,) = torch.autograd.grad(reference.sum(), x)
    torch.testing.assert_close(grad, reference_grad, atol=1e-6, rtol=1e-6)


def test_an_mlp_with_quick_gelu_folded_into_its_weights_computes_the_plain_one() -> None:
    # 260 rows of width 64: the fold is taken (the hook on QuickGELU never fires) and output and every gradient
    # equal the module-by-module computation x -> c_fc -> x * sigmoid(1.702 x) -> c_proj.
    torch.manual_seed(0)
    mlp, calls = MLP(64, 256, "quick_gelu"), []
    mlp.gelu.register_forward_hook(lambda module, args, out: calls.append(1))
    x = torch.randn(4, 65, 64, requires_grad=True)
    y = mlp(x)
    assert calls == []
    hidden = F.linear(x, mlp.c_fc.weight, mlp.c_fc.bias)
    reference = F.linear(hidden * torch.sigmoid(1.702 * hidden), mlp.c_proj.weight, mlp.c_proj.bias)
    torch.testing.assert_close(y, reference, atol=1e-5, rtol=1e-5)
    weights = [x, *mlp.parameters()]
    upstream = torch.randn_like(y)
    for grad, reference_grad in zip(torch.autograd.grad(y, weights, upstream),
                                    torch.autograd.grad(reference, weights, upstream)):
        torch.testing.assert_close(grad, reference_grad, atol=1e-5, rtol=1e-5)
    mlp(torch.randn(2, 64))  # two rows: scaling the weights would cost more than the activations, so no fold
    assert calls == [1]


@pytest.mark.parametrize("checkpointing", [False, True])
@pytest.mark.parametrize("causal, at", [(False, 0), (True, 4), (True, torch.tensor([8, 3, 0, 5, 8]))])
def test_the_last_block_computes_only_the_token_that_is_read(causal: bool, at: int | torch.Tensor,
                                                              checkpointing: bool) -> None:
    # Vision reads the class token (position 0 of every row), text the end-of-text token (its own position in each
    # row, keys after it masked). The output there and every gradient equal the full computation's, and the last
    # block's MLP sees one token a row.
    torch.manual_seed(0)
    transformer = Transformer(64, 3, 4, 256, "quick_gelu")
    transformer.grad_checkpointing = checkpointing
    seen = []
    transformer.resblocks[-1].mlp.register_forward_hook(lambda module, args, out: seen.append(tuple(args[0].shape)))
    x = torch.randn(5, 9, 64, requires_grad=True)
    full = transformer(x, causal=causal)
    rows = torch.arange(5)
    reference = full[rows, at] if isinstance(at, torch.Tensor) else full[:, at]
    picked = transformer(x, causal=causal, at=at)
    assert picked.shape == (5, 1, 64) and seen[0] == (5, 9, 64) and seen[-1] == (5, 1, 64)
    torch.testing.assert_close(picked[:, 0], reference, atol=1e-6, rtol=1e-5)
    weights, upstream = [x, *transformer.parameters()], torch.randn(5, 64)
    for grad, reference_grad in zip(torch.autograd.grad(picked[:, 0], weights, upstream),
                                    torch.autograd.grad(reference, weights, upstream)):
        torch.testing.assert_close(grad, reference_grad, atol=1e-6, rtol=1e-5)


def test_the_trainers_adamw_is_fused_and_steps_as_the_default_one() -> None:
    model, reference_model = create_model("ViT-Tiny", seed=0), create_model("ViT-Tiny", seed=0)
    settings = {"lr": 1e-3, "betas": (0.9, 0.98), "eps": 1e-6}
    optimizer = create_optimizer(model, weight_decay=0.2, **settings)
    reference = torch.optim.AdamW(param_groups(reference_model, 0.2), **settings, fused=False, foreach=False)
    assert optimizer.defaults["fused"] is True
    g = torch.Generator().manual_seed(0)
    for _ in range(3):
        for p, q in zip(model.parameters(), reference_model.parameters()):
            p.grad = torch.randn(p.shape, generator=g) * 0.01
            q.grad = p.grad.clone()
        optimizer.step()
        reference.step()
    for (name, p), q in zip(model.named_parameters(), reference_model.parameters()):
        torch.testing.assert_close(p, q, atol=1e-6, rtol=1e-6, msg=name)
