"""Kronecker-factored meta-optimizers: identity start, explicit L G R updates, PSD, errors."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import gbml_ext
from gbml_ext.optim import KroneckerTransform
from helpers import classification_task, params_snapshot


def small_cnn():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(2, 3, 3), torch.nn.ReLU(), torch.nn.Flatten(),
                               torch.nn.Linear(3 * 2 * 2, 4)).double()


def image_task():
    g = torch.Generator().manual_seed(3)
    y = torch.arange(4).repeat(2)
    return gbml_ext.Task(torch.randn(8, 2, 4, 4, generator=g, dtype=torch.float64), y,
                         torch.randn(8, 2, 4, 4, generator=g, dtype=torch.float64), y)


def adapted_and_metagrad(algorithm, task, steps=2):
    algorithm.zero_grad()
    learner = algorithm.clone()
    for _ in range(steps):
        learner.adapt(F.cross_entropy(learner(task.support_x), task.support_y))
    F.cross_entropy(learner(task.query_x), task.query_y).backward()
    return params_snapshot(learner.module), [p.grad.clone() for p in algorithm.module.parameters()]


@pytest.mark.parametrize("nonlinear", [False, True])
@pytest.mark.parametrize("psd", [False, True])
def test_identity_start_equals_maml(nonlinear, psd):
    task = image_task()
    maml_params, maml_grads = adapted_and_metagrad(gbml_ext.GBML(small_cnn(), lr=0.3), task)
    kfo = gbml_ext.GBML(small_cnn(), lr=0.3,
                        transform=KroneckerTransform(nonlinear=nonlinear, psd=psd))
    kfo_params, kfo_grads = adapted_and_metagrad(kfo, task)
    for a, b in zip(maml_params + maml_grads, kfo_params + kfo_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    if not nonlinear:  # the non-linear branch is gated off at the start; its gate gets the gradient
        assert all(p.grad is not None and p.grad.abs().max() > 0
                   for p in kfo.compute_update.parameters())
    else:
        gates = [m.map.gate for m in kfo.compute_update.transforms_modules]
        assert all(g.grad.abs() > 0 for g in gates)


def test_update_is_left_gradient_right_for_linear_conv_and_bias():
    model = small_cnn()
    kfo = gbml_ext.GBML(model, lr=0.2, transform=KroneckerTransform())
    torch.manual_seed(5)
    with torch.no_grad():
        for p in kfo.compute_update.parameters():
            p.add_(0.3 * torch.randn_like(p))
    task = image_task()
    learner = kfo.clone()
    loss = F.cross_entropy(learner(task.support_x), task.support_y)
    grads = torch.autograd.grad(loss, list(model.parameters()), retain_graph=True)
    learner.adapt(loss)
    maps = kfo.compute_update.transforms_modules
    conv_w, conv_b, lin_w, lin_b = (p.detach().numpy() for p in model.parameters())
    g_cw, g_cb, g_lw, g_lb = (g.numpy() for g in grads)
    L = [m.map.left.weight.detach().numpy() for m in maps]
    R = [m.map.right.weight.detach().numpy() if m.map.right is not None else None for m in maps]
    # Conv weight (out, in, kh, kw): per output channel, L (in x in) @ G[o] (in x 9) @ R (9 x 9).
    conv_update = np.stack([L[0] @ g_cw[o].reshape(2, 9) @ R[0] for o in range(3)])
    conv_update = conv_update.reshape(g_cw.shape)
    expected = [conv_w - 0.2 * conv_update, conv_b - 0.2 * L[1] @ g_cb,
                lin_w - 0.2 * L[2] @ g_lw @ R[2], lin_b - 0.2 * L[3] @ g_lb]
    for got, want in zip(learner.module.parameters(), expected, strict=True):
        np.testing.assert_allclose(got.detach().numpy(), want, rtol=1e-10, atol=1e-12)


def test_psd_factors_stay_psd_after_meta_updates():
    kfo = gbml_ext.GBML(small_cnn(), lr=0.3, transform=KroneckerTransform(psd=True))
    outer = torch.optim.SGD(kfo.parameters(), lr=2.0)
    task = image_task()
    for _ in range(5):
        outer.zero_grad()
        gbml_ext.run_task(kfo, task, 1).loss.backward()
        outer.step()
    factors = [m for m in kfo.compute_update.modules() if hasattr(m, "matrix")]
    assert any((f.weight - torch.eye(len(f.weight), dtype=f.weight.dtype)).abs().max() > 1e-3
               for f in factors), "the meta-updates should have moved the factors"
    for f in factors:
        A = f.matrix().detach()
        torch.testing.assert_close(A, A.T)
        assert torch.linalg.eigvalsh(A).min() > -1e-10


def test_adapt_transform_changes_transform_only_when_asked():
    task = classification_task(dtype=torch.float32)
    for adapt_transform in (False, True):
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.Tanh(), torch.nn.Linear(6, 3))
        kfo = gbml_ext.GBML(model, lr=0.5, transform=KroneckerTransform(),
                            adapt_transform=adapt_transform)
        learner = kfo.clone()
        for _ in range(3):
            learner.adapt(F.cross_entropy(learner(task.support_x), task.support_y))
        changed = any((a - b).abs().max() > 0 for a, b in
                      zip(learner.compute_update.parameters(), kfo.compute_update.parameters(),
                          strict=True))
        assert changed == adapt_transform


def test_caller_selects_parameters_and_unselected_take_plain_step():
    model = small_cnn()
    kfo = gbml_ext.GBML(model, transform=KroneckerTransform(params=["3.weight"]))
    assert len(kfo.compute_update.transforms_modules) == 1
    assert kfo.compute_update.transforms_indices == [None, None, 0, None]


def test_unsupported_shape_error_names_the_parameter():
    class Odd(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.mixer = torch.nn.Parameter(torch.ones(2, 3, 4))

    with pytest.raises(ValueError, match="'mixer'.*\\(2, 3, 4\\).*params="):
        gbml_ext.GBML(Odd(), transform=KroneckerTransform())


def test_transform_for_missing_parameter_is_a_clear_error():
    with pytest.raises(ValueError, match="head.weight.*does not have"):
        gbml_ext.GBML(torch.nn.Linear(3, 2), transform=KroneckerTransform(params=["head.weight"]))
