"""iMAML (Rajeswaran et al. 2019): implicit meta-gradient against closed forms, CG convergence,
memory independent of the number of inner steps, and a tiny meta-training run."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

import gbml_ext
from gbml_ext import engine
from gbml_ext.algorithms.imaml import IMAML
from gbml_ext.data.synthetic import LinearRegressionTasks
from helpers import classification_task, regression_task


def imaml_closed_form(task, theta, lam):
    """Exact inner solution, query loss and implicit meta-gradient for y = Xw with MSE (numpy)."""
    Xs, ys, Xq, yq = (t.numpy() for t in
                      (task.support_x, task.support_y, task.query_x, task.query_y))
    n, d = Xs.shape
    hess = 2.0 / n * Xs.T @ Xs
    phi = np.linalg.solve(hess + lam * np.eye(d), lam * theta + 2.0 / n * Xs.T @ ys)
    query_grad = 2.0 / len(Xq) * Xq.T @ (Xq @ phi - yq)
    meta_grad = np.linalg.solve(np.eye(d) + hess / lam, query_grad)
    return meta_grad, float(np.mean((Xq @ phi - yq) ** 2)), query_grad


@pytest.mark.parametrize("lam", [0.5, 3.0])
def test_implicit_metagradient_matches_closed_form_on_linear_regression(lam):
    torch.manual_seed(1)
    model = torch.nn.Linear(3, 1, bias=False).double()
    theta = model.weight.detach().numpy().T.copy()
    tasks = [regression_task(seed=0), regression_task(seed=1)]
    imaml = IMAML(model, lr=0.1, lam=lam, cg_steps=10, cg_tol=1e-12)
    model.weight.grad = torch.ones_like(model.weight)  # accumulate_meta_gradient adds to .grad
    outcomes = imaml.accumulate_meta_gradient(tasks, steps=600, loss_fn=F.mse_loss)

    forms = [imaml_closed_form(task, theta, lam) for task in tasks]
    expected = 1.0 + np.mean([grad for grad, _, _ in forms], axis=0)
    np.testing.assert_allclose(model.weight.grad.numpy().T, expected, rtol=1e-6)
    for outcome, (_, query_loss, _) in zip(outcomes, forms, strict=True):
        assert not outcome.loss.requires_grad and outcome.accuracy is None
        assert outcome.loss.item() == pytest.approx(query_loss, rel=1e-8)
    assert all(result.converged for result in imaml.last_cg_results)
    # The implicit correction matters here: the first-order gradient ∇L_q(φ*) is different.
    grad, _, query_grad = forms[0]
    assert np.abs(grad - query_grad).max() > 1e-2 * np.abs(grad).max()

    # The closed form is the true derivative of θ ↦ L_q(φ*(θ)): central differences.
    eps, numeric = 1e-6, np.zeros_like(theta)
    for i in range(len(theta)):
        step = np.zeros_like(theta)
        step[i] = eps
        plus = imaml_closed_form(tasks[0], theta + step, lam)[1]
        minus = imaml_closed_form(tasks[0], theta - step, lam)[1]
        numeric[i] = (plus - minus) / (2 * eps)
    np.testing.assert_allclose(grad, numeric, rtol=1e-6)

    # Evaluation adapts with the same proximal steps: it reaches the same φ*.
    curve = engine.adaptation_curve(imaml, tasks[0], 600, F.mse_loss)
    assert curve[-1].loss.item() == pytest.approx(forms[0][1], rel=1e-8)
    assert engine.run_task(imaml, tasks[0], 600, F.mse_loss, train=False).loss.item() == \
        pytest.approx(forms[0][1], rel=1e-8)


def _inner_solution(model, task, lr, lam, steps):
    """φ after `steps` steps on CE + λ/2‖φ − θ‖², written independently of gbml_ext."""
    theta = {k: v.detach() for k, v in model.named_parameters()}
    phi = dict(theta)
    for _ in range(steps):
        phi = {k: v.requires_grad_() for k, v in phi.items()}
        loss = F.cross_entropy(functional_call(model, phi, (task.support_x,)), task.support_y)
        grads = torch.autograd.grad(loss, list(phi.values()))
        phi = {k: (v - lr * (g + lam * (v - theta[k]))).detach()
               for (k, v), g in zip(phi.items(), grads, strict=True)}
    return phi


def test_conjugate_gradient_converges_and_solves_the_implicit_system_on_an_mlp():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.Tanh(),
                                torch.nn.Linear(6, 3)).double()
    task, (lr, lam, steps, tol) = classification_task(), (0.3, 2.0, 5, 1e-9)
    imaml = IMAML(model, lr=lr, lam=lam, cg_steps=200, cg_tol=tol)
    imaml.accumulate_meta_gradient([task], steps)
    (result,) = imaml.last_cg_results
    assert result.converged and 1 < result.iterations <= 200

    # Independent check: build H and b explicitly at φ and solve (I + H/λ) g = b directly.
    phi = _inner_solution(model, task, lr, lam, steps)
    names, shapes = list(phi), [v.shape for v in phi.values()]
    sizes = [v.numel() for v in phi.values()]

    def loss_of(flat, x, y):
        parts = dict(zip(names, (t.view(s) for t, s in zip(flat.split(sizes), shapes, strict=True)),
                         strict=True))
        return F.cross_entropy(functional_call(model, parts, (x,)), y)

    flat = torch.cat([v.reshape(-1) for v in phi.values()])
    hess = torch.autograd.functional.hessian(lambda f: loss_of(f, task.support_x, task.support_y),
                                             flat)
    b = torch.autograd.functional.jacobian(lambda f: loss_of(f, task.query_x, task.query_y), flat)
    assert result.tolerance == pytest.approx(tol * b.norm().item(), rel=1e-10)  # tol · ‖b‖
    system = torch.eye(len(flat), dtype=flat.dtype) + hess / lam
    assert torch.linalg.eigvalsh(system).min() > 0  # CG applies: the system is positive definite
    expected = torch.linalg.solve(system, b)
    got = torch.cat([p.grad.reshape(-1) for p in model.parameters()])
    torch.testing.assert_close(got, expected, rtol=1e-7, atol=1e-10)
    assert (system @ got - b).norm() <= 10 * tol * b.norm()

    # With one iteration CG cannot reach the tolerance, and the record says so.
    imaml.cg_steps = 1
    imaml.accumulate_meta_gradient([task], steps)
    assert not imaml.last_cg_results[0].converged


class SavedTensorMeter:
    """Peak bytes of tensors saved for backward that are alive at once, over a `with` block."""

    def __init__(self):
        self.live = self.peak = 0

    def __enter__(self):
        meter = self

        class Held:
            def __init__(self, tensor):
                self.tensor, self.size = tensor, tensor.numel() * tensor.element_size()
                meter.live += self.size
                meter.peak = max(meter.peak, meter.live)

            def __del__(self):
                meter.live -= self.size

        self._hooks = torch.autograd.graph.saved_tensors_hooks(Held, lambda held: held.tensor)
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc):
        self._hooks.__exit__(*exc)


def _peak_saved_bytes(meta_gradient, steps):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(32, 128), torch.nn.ReLU(),
                                torch.nn.Linear(128, 128), torch.nn.ReLU(), torch.nn.Linear(128, 5))
    g = torch.Generator().manual_seed(0)
    y = torch.arange(5).repeat(5)
    task = gbml_ext.Task(torch.randn(25, 32, generator=g), y, torch.randn(25, 32, generator=g), y)
    with SavedTensorMeter() as meter:
        meta_gradient(model, [task], steps)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    return meter.peak


def test_memory_of_the_metagradient_does_not_grow_with_inner_steps():
    def imaml(model, tasks, steps):
        IMAML(model, lr=0.1, lam=1.0, cg_steps=5).accumulate_meta_gradient(tasks, steps)

    def maml(model, tasks, steps):
        engine.accumulate_meta_gradient(gbml_ext.GBML(model, lr=0.1), tasks, steps)

    imaml_1, imaml_20 = _peak_saved_bytes(imaml, 1), _peak_saved_bytes(imaml, 20)
    maml_1, maml_20 = _peak_saved_bytes(maml, 1), _peak_saved_bytes(maml, 20)
    assert imaml_1 > 0 and maml_20 > 5 * maml_1  # the meter sees MAML's graph grow with steps
    assert imaml_20 <= 1.01 * imaml_1


@pytest.mark.slow
def test_meta_training_reduces_the_post_adaptation_query_loss():
    def source(seed):
        return LinearRegressionTasks(dim=6, n_support=4, n_query=16, condition_number=1.0,
                                     seed=seed)

    torch.manual_seed(0)
    model = torch.nn.Linear(6, 1, bias=False)
    with torch.no_grad():
        model.weight.add_(3.0)  # far from the task mean w = 0
    imaml = IMAML(model, lr=0.1, lam=1.0, cg_steps=5)
    held_out = [source(1).sample() for _ in range(32)]

    def held_out_loss():
        return np.mean([imaml.evaluate_task(task, 10).loss.item() for task in held_out])

    before, train = held_out_loss(), source(0)
    optimizer = torch.optim.Adam(imaml.parameters(), lr=0.1)
    for _ in range(30):
        optimizer.zero_grad()
        imaml.accumulate_meta_gradient([train.sample() for _ in range(8)], 10)
        optimizer.step()
    assert held_out_loss() < 0.5 * before


@pytest.mark.parametrize("kwargs, match", [
    ({"lam": 0.0}, "finite lam > 0"), ({"lam": math.inf}, "finite lam > 0"),
    ({"lam": math.nan}, "finite lam > 0"), ({"lr": -0.1}, "finite lr > 0"),
    ({"cg_steps": 0}, "cg_steps >= 1"), ({"cg_tol": -1.0}, "cg_tol >= 0"),
    ({"transform": gbml_ext.KroneckerTransform()}, "drop the transform"),
])
def test_invalid_arguments_are_rejected(kwargs, match):
    with pytest.raises(ValueError, match=match):
        IMAML(torch.nn.Linear(3, 1), **kwargs)


def test_adapt_checks_the_loss_like_gbml():
    learner = IMAML(torch.nn.Linear(3, 1)).clone()
    with pytest.raises(ValueError, match="does not require grad"):
        learner.adapt(torch.tensor(1.0))
