"""MAML, FOMAML, Meta-SGD and clone semantics, checked against closed forms and finite
differences."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import gbml_ext
from helpers import (
    classification_task,
    finite_difference_grad,
    maml_linear_regression_metagrad,
    params_snapshot,
    regression_task,
)


def linear_model(dim=3, seed=1):
    torch.manual_seed(seed)
    return torch.nn.Linear(dim, 1, bias=False).double()


def meta_gradient(algorithm, task, steps):
    algorithm.zero_grad()
    gbml_ext.run_task(algorithm, task, steps, F.mse_loss).loss.backward()
    return [p.grad.clone() for p in algorithm.parameters()]


@pytest.mark.parametrize("steps", [1, 3])
def test_maml_metagradient_matches_closed_form_on_linear_regression(steps):
    task, model = regression_task(), linear_model()
    maml = gbml_ext.GBML(model, lr=0.1)
    (grad,) = meta_gradient(maml, task, steps)
    expected, _ = maml_linear_regression_metagrad(task, model.weight.detach().numpy().T, 0.1, steps)
    np.testing.assert_allclose(grad.numpy().T, expected, rtol=1e-10, atol=1e-12)


def test_maml_metagradient_matches_finite_differences_on_nonlinear_model():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.Tanh(), torch.nn.Linear(5, 3))
    model = model.double()
    task = classification_task()
    maml = gbml_ext.GBML(model, lr=0.5)

    def meta_loss():
        return gbml_ext.run_task(maml, task, 2, F.cross_entropy).loss

    maml.zero_grad()
    meta_loss().backward()
    numeric = finite_difference_grad(meta_loss, list(model.parameters()))
    for p, g in zip(model.parameters(), numeric, strict=True):
        torch.testing.assert_close(p.grad, g, rtol=1e-6, atol=1e-8)


def test_fomaml_uses_query_gradient_at_adapted_weights_and_differs_from_maml():
    task, model = regression_task(), linear_model()
    w0 = model.weight.detach().numpy().T
    (fo_grad,) = meta_gradient(gbml_ext.GBML(model, lr=0.1, first_order=True), task, 2)
    expected_fo, _ = maml_linear_regression_metagrad(task, w0, 0.1, 2, first_order=True)
    np.testing.assert_allclose(fo_grad.numpy().T, expected_fo, rtol=1e-10)
    (so_grad,) = meta_gradient(gbml_ext.GBML(model, lr=0.1), task, 2)
    assert (fo_grad - so_grad).abs().max() > 1e-3  # H != 0 here, so the two must differ


def test_adapt_never_changes_meta_parameters():
    model = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.ReLU(), torch.nn.Linear(6, 3))
    kfo = gbml_ext.GBML(model, transform=gbml_ext.KroneckerTransform(), lr=0.5,
                        adapt_transform=True)
    before, before_t = params_snapshot(model), params_snapshot(kfo.compute_update)
    task = classification_task(dtype=torch.float32)
    learner = kfo.clone()
    for _ in range(3):
        learner.adapt(F.cross_entropy(learner(task.support_x), task.support_y))
    assert any((a - b).abs().max() > 0
               for a, b in zip(params_snapshot(learner.module), before, strict=True))
    after = params_snapshot(model) + params_snapshot(kfo.compute_update)
    for a, b in zip(after, before + before_t, strict=True):
        assert torch.equal(a, b)


def test_metasgd_learning_rate_gradient_matches_closed_form():
    task, model = regression_task(), linear_model()
    meta_sgd = gbml_ext.MetaSGD(model, lr=0.1)
    alpha = next(meta_sgd.compute_update.parameters())
    with torch.no_grad():
        alpha.copy_(torch.tensor([[0.05, 0.1, 0.2]], dtype=torch.float64))
    meta_gradient(meta_sgd, task, 1)
    w = model.weight.detach().numpy().T
    a = alpha.detach().numpy().T
    Xs, ys, Xq, yq = (t.numpy()
                      for t in (task.support_x, task.support_y, task.query_x, task.query_y))
    g = 2 / len(Xs) * Xs.T @ (Xs @ w - ys)
    w1 = w - a * g
    gq = 2 / len(Xq) * Xq.T @ (Xq @ w1 - yq)
    np.testing.assert_allclose(alpha.grad.numpy().T, -g * gq, rtol=1e-10)  # d/dα of L_q(w - α⊙g)
    jacobian = np.eye(3) - np.diag(a[:, 0]) @ (2 / len(Xs) * Xs.T @ Xs)  # dw1/dw
    np.testing.assert_allclose(model.weight.grad.numpy().T, jacobian.T @ gq, rtol=1e-10)


def test_adapt_rejects_non_scalar_loss():
    learner = gbml_ext.GBML(torch.nn.Linear(3, 1), lr=0.1).clone()
    x = torch.randn(4, 3)
    with pytest.raises(ValueError, match="scalar loss.*mean"):
        learner.adapt((learner(x) ** 2).squeeze())


def test_adapt_rejects_detached_loss():
    learner = gbml_ext.GBML(torch.nn.Linear(3, 1), lr=0.1).clone()
    with pytest.raises(ValueError, match="does not require grad"):
        learner.adapt(torch.tensor(1.0))


def test_gbml_matches_learn2learn_maml_on_a_cnn():
    from gbml_ext.algorithms import Learn2LearnMAML
    from gbml_ext.nn import cifarfs_cnn4

    def build():
        torch.manual_seed(0)
        return cifarfs_cnn4(ways=3, hidden=4).double()

    g = torch.Generator().manual_seed(0)
    y = torch.arange(3).repeat(2)
    task = gbml_ext.Task(torch.randn(6, 3, 32, 32, generator=g, dtype=torch.float64), y,
                         torch.randn(6, 3, 32, 32, generator=g, dtype=torch.float64), y)
    ours, reference = gbml_ext.GBML(build(), lr=0.3), Learn2LearnMAML(build(), lr=0.3)
    for algorithm in (ours, reference):
        gbml_ext.run_task(algorithm, task, steps=2).loss.backward()
    for a, b in zip(ours.parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-10, atol=1e-12)
