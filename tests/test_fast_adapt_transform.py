"""adapt_transform=True (learn2learn's GBML.adapt, as in the KFO paper's code): the transform's
own inner step, checked against a closed form, a hand-written inner loop, finite differences,
and between the per-task engine and the batched path."""
from __future__ import annotations

import copy
from typing import Dict, Tuple

import pytest
import torch

import gbml_ext
from gbml_ext import Task
from gbml_ext.engine import accumulate_meta_gradient, run_task
from gbml_ext.fast import StackedLearner, batched_meta_gradient
from helpers import classification_task, finite_difference_grad, regression_task

__all__ = []

LR = 0.3


def perturbed(learner: gbml_ext.GBML, scale: float = 0.1) -> gbml_ext.GBML:
    """Moves every transform parameter off its identity start, so a transform used wrongly or
    not adapted at all changes the numbers."""
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for param in learner.compute_update.parameters():
            param.add_(scale * torch.randn(param.shape, generator=generator, dtype=param.dtype))
    return learner


def mlp(outputs: int) -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.Tanh(),
                               torch.nn.Linear(6, outputs)).double()


def learners() -> Dict[str, torch.nn.Module]:
    """(label, algorithm, its GBML learner) for every supported kind of adapted transform."""
    kfo = gbml_ext.KroneckerTransform
    made = {
        "kfo-linear": gbml_ext.GBML(mlp(3), transform=kfo(), lr=LR, adapt_transform=True),
        "kfo-linear-psd": gbml_ext.GBML(mlp(3), transform=kfo(psd=True), lr=LR,
                                        adapt_transform=True),
        "kfo-mlp": gbml_ext.GBML(mlp(3), transform=kfo(nonlinear=True, hidden_layers=1), lr=LR,
                                 adapt_transform=True),
        "alpha-maml": gbml_ext.GBML(mlp(3), transform=gbml_ext.MetaSGDTransform(LR), lr=1.0,
                                    adapt_transform=True),
    }
    body = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.Tanh()).double()
    made["anil-kfo"] = gbml_ext.ANIL(body, torch.nn.Linear(6, 3).double(), lr=LR,
                                     transform=kfo(psd=True), adapt_transform=True)
    body = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.Tanh()).double()
    made["anil-kfo-mlp"] = gbml_ext.ANIL(body, torch.nn.Linear(6, 3).double(), lr=LR,
                                         transform=kfo(nonlinear=True), adapt_transform=True)
    for algorithm in made.values():
        head = algorithm.head if isinstance(algorithm, gbml_ext.ANIL) else algorithm
        perturbed(head)
    return made


@pytest.mark.parametrize("steps", [2, 3])
@pytest.mark.parametrize("label", sorted(learners()))
def test_batched_meta_gradient_equals_per_task(label: str, steps: int) -> None:
    algorithm = learners()[label]
    twin = copy.deepcopy(algorithm)
    tasks = [classification_task(seed=seed) for seed in range(3)]
    expected = accumulate_meta_gradient(algorithm, tasks, steps)
    actual = batched_meta_gradient(twin, tasks, steps)
    for want, got in zip(expected, actual, strict=True):
        torch.testing.assert_close(got.loss, want.loss, rtol=1e-5, atol=1e-12)
    transform_grads = 0
    for (name, want), got in zip(algorithm.named_parameters(), twin.parameters(), strict=True):
        torch.testing.assert_close(got.grad, want.grad, rtol=1e-5, atol=1e-10, msg=name)
        transform_grads += "compute_update" in name and bool(want.grad.abs().sum() > 0)
    assert transform_grads > 0


def linear_kfo() -> gbml_ext.GBML:
    """Linear(3, 1) with a Kronecker linear map on its weight (L: 1x1, R: 3x3) and bias."""
    return perturbed(gbml_ext.GBML(torch.nn.Linear(3, 1).double(),
                                   transform=gbml_ext.KroneckerTransform(), lr=LR,
                                   adapt_transform=True), scale=0.3)


def closed_form_two_steps(learner: gbml_ext.GBML, task: Task) -> Dict[str, torch.Tensor]:
    """Two inner steps of KFO with an adapted transform on y = x Wᵀ + b, by hand.

    With r = X Wᵀ + b − y, the MSE gradients are G = 2/n rᵀX and g = 2/n Σr. Step 1 is
    W₁ = W₀ − lr L₀G₀R₀, b₁ = b₀ − lr Λ₀g₀. Step 2 first moves the factors along the gradient
    of L(W₁, b₁) through step 1: ∂/∂L₀ = −lr G₁R₀ᵀG₀ᵀ, ∂/∂R₀ = −lr G₀ᵀL₀ᵀG₁, ∂/∂Λ₀ = −lr g₁g₀,
    then W₂ = W₁ − lr L₁G₁R₁, b₂ = b₁ − lr Λ₁g₁.
    """
    X, y = task.support_x, task.support_y
    W, b = (p.detach().clone() for p in learner.module.parameters())
    maps = learner.compute_update.transforms_modules
    L, R = (f.weight.detach().clone() for f in (maps[0].map.left, maps[0].map.right))
    lam = maps[1].map.left.weight.detach().clone()

    def gradients(W: torch.Tensor, b: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        r = X @ W.t() + b - y
        return 2 / len(X) * r.t() @ X, 2 / len(X) * r.sum(0, keepdim=True)

    G0, g0 = gradients(W, b)
    W1, b1 = W - LR * L @ G0 @ R, b - LR * (lam @ g0).reshape(1)
    G1, g1 = gradients(W1, b1)
    L1 = L + LR ** 2 * G1 @ R.t() @ G0.t()
    R1 = R + LR ** 2 * G0.t() @ L.t() @ G1
    lam1 = lam + LR ** 2 * g1 @ g0.t()
    W2, b2 = W1 - LR * L1 @ G1 @ R1, b1 - LR * (lam1 @ g1).reshape(1)
    return {"W": W2, "b": b2, "L": L1, "R": R1, "lam": lam1}


def test_per_task_transform_update_equals_closed_form() -> None:
    kfo, task = linear_kfo(), regression_task(n_support=6, dim=3)
    want = closed_form_two_steps(kfo, task)
    learner = kfo.clone()
    for _ in range(2):
        learner.adapt(torch.nn.functional.mse_loss(learner(task.support_x), task.support_y))
    maps = learner.compute_update.transforms_modules
    got = {"W": learner.module.weight, "b": learner.module.bias, "L": maps[0].map.left.weight,
           "R": maps[0].map.right.weight, "lam": maps[1].map.left.weight}
    assert not torch.allclose(got["R"], kfo.compute_update.transforms_modules[0].map.right.weight)
    for key in want:
        torch.testing.assert_close(got[key], want[key], rtol=1e-10, atol=1e-12, msg=key)


@pytest.mark.parametrize("meta_graph", [True, False])
def test_batched_transform_update_equals_closed_form(meta_graph: bool) -> None:
    kfo, task = linear_kfo(), regression_task(n_support=6, dim=3)
    want = closed_form_two_steps(kfo, task)
    learner = StackedLearner(kfo, 1, torch.nn.functional.mse_loss, meta_graph=meta_graph)
    for _ in range(2):
        learner.step(task.support_x[None], task.support_y[None])
    got = {"W": learner.weights[0][0], "b": learner.weights[1][0],
           "L": learner.psi[0]["map.left.weight"][0], "R": learner.psi[0]["map.right.weight"][0],
           "lam": learner.psi[1]["map.left.weight"][0]}
    for key in want:
        torch.testing.assert_close(got[key], want[key], rtol=1e-10, atol=1e-12, msg=key)


def hand_written_query_loss(kfo: gbml_ext.GBML, task: Task, steps: int,
                            first_order: bool) -> torch.Tensor:
    """The inner loop of learn2learn's GBML.adapt with adapt_transform, written out for a
    Linear model with Kronecker factors: from step 2 on the factors first take a step on the
    current support loss (its graph kept only for second order), then the model steps (model
    gradients always keep their graph when the transform adapts, as in learn2learn)."""
    W, b = kfo.module.weight, kfo.module.bias
    maps = kfo.compute_update.transforms_modules
    L, R, lam = maps[0].map.left.weight, maps[0].map.right.weight, maps[1].map.left.weight

    def loss(W: torch.Tensor, b: torch.Tensor, x: torch.Tensor, y: torch.Tensor
             ) -> torch.Tensor:
        return ((x @ W.t() + b - y) ** 2).mean()

    for step in range(steps):
        support = loss(W, b, task.support_x, task.support_y)
        if step:
            dL, dR, dlam = torch.autograd.grad(support, (L, R, lam), retain_graph=True,
                                               create_graph=not first_order)
            L, R, lam = L - LR * dL, R - LR * dR, lam - LR * dlam
        G, g = torch.autograd.grad(support, (W, b), create_graph=True)
        W, b = W - LR * L @ G @ R, b - LR * (lam @ g[:, None]).reshape(1)
    return loss(W, b, task.query_x, task.query_y)


@pytest.mark.parametrize("steps", [2, 3])
def test_per_task_meta_gradient_equals_finite_differences_and_hand_loop(steps: int) -> None:
    kfo, task = linear_kfo(), regression_task(n_support=6, dim=3)
    params = list(kfo.parameters())
    assert len(params) == 5  # W, b and the factors L, R, Λ
    run_task(kfo, task, steps).loss.backward()
    reference = torch.autograd.grad(hand_written_query_loss(kfo, task, steps, False), params)
    numeric = finite_difference_grad(lambda: run_task(kfo, task, steps).loss.detach(), params)
    for param, want_hand, want_numeric in zip(params, reference, numeric, strict=True):
        torch.testing.assert_close(param.grad, want_hand, rtol=1e-9, atol=1e-12)
        torch.testing.assert_close(param.grad, want_numeric, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("path", ["batched", "per-task"])
@pytest.mark.parametrize("first_order", [False, True])
def test_meta_gradient_equals_hand_loop(first_order: bool, path: str) -> None:
    """Also first-order, where learn2learn 0.2.0's own adapt frees the graph it still needs
    (GBML takes the transform's step itself, keeping it)."""
    kfo = linear_kfo()
    kfo.first_order = first_order
    tasks = [regression_task(n_support=6, dim=3, seed=seed) for seed in range(3)]
    expected = [torch.zeros_like(p) for p in kfo.parameters()]
    for task in tasks:
        loss = hand_written_query_loss(kfo, task, 3, first_order) / len(tasks)
        for total, grad in zip(expected, torch.autograd.grad(loss, list(kfo.parameters())),
                               strict=True):
            total += grad
    if path == "batched":
        batched_meta_gradient(kfo, tasks, 3)
    else:
        accumulate_meta_gradient(kfo, tasks, 3)
    for param, want in zip(kfo.parameters(), expected, strict=True):
        torch.testing.assert_close(param.grad, want, rtol=1e-9, atol=1e-12)


def test_adapting_a_missing_transform_is_a_no_op() -> None:
    """MAML with adapt_transform=True has no transform parameters: steps 2+ must not fail."""
    plain = gbml_ext.GBML(torch.nn.Linear(3, 1).double(), lr=0.1)
    flagged = gbml_ext.GBML(copy.deepcopy(plain.module), lr=0.1, adapt_transform=True)
    task = regression_task(n_support=6, dim=3)
    assert torch.equal(run_task(plain, task, 3).loss, run_task(flagged, task, 3).loss)
