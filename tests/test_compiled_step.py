"""The compiled path's pure step, run eagerly (the same function torch.compile takes): its
meta-gradients, outcomes and adaptation curves equal the per-task engine's in float64 for every
algorithm it runs, and central finite differences for Meta-KFO with an adapted transform."""
from __future__ import annotations

import copy
from typing import Callable, Dict, List, Optional

import pytest
import torch

import gbml_ext
from gbml_ext import Task, TaskBatch
from gbml_ext.engine import accumulate_meta_gradient, adaptation_curve, run_task
from gbml_ext.fast import compiled_adaptation_curves, compiled_meta_gradient
from gbml_ext.runner import load_config
from gbml_ext.runner.build import build_learner
from helpers import classification_task, finite_difference_grad, regression_task

__all__: List[str] = []

LR = 0.3
WAYS = 3
KFO = gbml_ext.KroneckerTransform


def tiny_cnn() -> gbml_ext.nn.CNN4:
    """Two blocks of 4 filters (conv, batch-norm on the batch's statistics, max-pool) on 8x8."""
    return gbml_ext.nn.CNN4(WAYS, in_channels=1, hidden=4, layers=2, image_size=8).double()


def mlp(outputs: int = WAYS) -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.Tanh(),
                               torch.nn.Linear(6, outputs)).double()


def perturbed(algorithm: torch.nn.Module, scale: float = 0.1) -> torch.nn.Module:
    """Moves every transform parameter off its start, so a transform used wrongly shows."""
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, param in algorithm.named_parameters():
            if "compute_update" in name:
                param.add_(scale * torch.randn(param.shape, generator=generator,
                                               dtype=param.dtype))
    return algorithm


def image_tasks(count: int = 3, size: int = 8) -> List[Task]:
    generator = torch.Generator().manual_seed(0)

    def images(n: int) -> torch.Tensor:
        return torch.randn(n, 1, size, size, generator=generator, dtype=torch.float64)

    return [Task(images(2 * WAYS), torch.arange(WAYS).repeat(2), images(3 * WAYS),
                 torch.arange(WAYS).repeat(3)) for _ in range(count)]


def linnet(name: str) -> torch.nn.Module:
    """A LinNet head (3 linear layers) whose hidden layers are meta-learned but frozen."""
    config = load_config(None, ["data.source=omniglot", "model.name=omniglot_cnn4",
                                "model.options={hidden=4, layers=2}", "model.linnet_depth=3",
                                "model.linnet_adapt_hidden=false", f"algorithm.name={name}",
                                f"algorithm.inner_lr={LR}"])
    return build_learner(config).double()


LEARNERS: Dict[str, Callable[[], torch.nn.Module]] = {
    "maml-cnn": lambda: gbml_ext.MAML(tiny_cnn(), lr=LR),
    "fomaml-cnn": lambda: gbml_ext.MAML(tiny_cnn(), lr=LR, first_order=True),
    "meta-sgd": lambda: perturbed(gbml_ext.MetaSGD(mlp(), lr=LR), 0.05),
    "kfo-linear-cnn": lambda: perturbed(gbml_ext.GBML(tiny_cnn(), transform=KFO(), lr=LR)),
    "kfo-linear-first-order": lambda: perturbed(
        gbml_ext.GBML(mlp(), transform=KFO(), lr=LR, first_order=True)),
    "kfo-mlp-psd-some-parameters": lambda: perturbed(gbml_ext.GBML(
        mlp(), transform=KFO(params=["2.weight", "2.bias"], nonlinear=True, psd=True), lr=LR)),
    "kfo-adapt-transform": lambda: perturbed(
        gbml_ext.GBML(mlp(), transform=KFO(psd=True), lr=LR, adapt_transform=True)),
    "kfo-mlp-adapt-transform-first-order": lambda: perturbed(gbml_ext.GBML(
        mlp(), transform=KFO(nonlinear=True, hidden_layers=1), lr=LR, adapt_transform=True,
        first_order=True)),
    "maml-adapt-transform-without-transform": lambda: gbml_ext.GBML(
        mlp(), lr=LR, adapt_transform=True),
    "maml-layer-norm": lambda: gbml_ext.MAML(torch.nn.Sequential(
        torch.nn.Linear(4, 6), torch.nn.LayerNorm(6), torch.nn.Tanh(),
        torch.nn.Linear(6, WAYS)).double(), lr=LR),
    "anil-cnn": lambda: gbml_ext.ANIL(tiny_cnn().features, tiny_cnn().classifier, lr=LR),
    "anil-kfo-adapt-transform": lambda: perturbed(gbml_ext.ANIL(
        torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.Tanh()).double(),
        torch.nn.Linear(6, WAYS).double(), lr=LR, transform=KFO(psd=True),
        adapt_transform=True)),
    "maml-linnet-frozen": lambda: linnet("maml"),
    "anil-linnet-frozen": lambda: linnet("anil"),
}


def tasks_for(label: str) -> List[Task]:
    if "linnet" in label:
        return [Task(t.support_x.repeat(1, 1, 4, 4)[..., :28, :28],
                     t.support_y.remainder(5), t.query_x.repeat(1, 1, 4, 4)[..., :28, :28],
                     t.query_y.remainder(5)) for t in image_tasks(2)]
    if "cnn" in label:
        return image_tasks()
    return [classification_task(ways=WAYS, seed=seed) for seed in range(3)]


def assert_same_as_engine(algorithm: torch.nn.Module, tasks: List[Task], steps: int,
                          loss_fn: Optional[Callable] = None) -> None:
    twin = copy.deepcopy(algorithm)
    expected = accumulate_meta_gradient(algorithm, tasks, steps, loss_fn)
    actual = compiled_meta_gradient(twin, TaskBatch.stack(tasks), steps, loss_fn, eager=True)
    assert len(actual) == len(expected)
    for want, got in zip(expected, actual):
        torch.testing.assert_close(got.loss, want.loss, rtol=1e-10, atol=1e-12)
        assert not got.loss.requires_grad
        torch.testing.assert_close(got.accuracy, want.accuracy)
    for (name, want), got in zip(algorithm.named_parameters(), twin.parameters()):
        assert want.grad is not None and got.grad is not None, name
        # atol: biases feeding batch-norm have a zero meta-gradient, up to ~1e-17 of rounding.
        torch.testing.assert_close(got.grad, want.grad, rtol=1e-9, atol=1e-12, msg=name)
    curves = compiled_adaptation_curves(twin, tasks, steps, loss_fn, eager=True)
    for task, curve in zip(tasks, curves):
        reference = adaptation_curve(algorithm, task, steps, loss_fn)
        assert len(curve) == steps + 1
        for got, want in zip(curve, reference):
            torch.testing.assert_close(got.loss, want.loss, rtol=1e-10, atol=1e-12)
            torch.testing.assert_close(got.accuracy, want.accuracy)


@pytest.mark.parametrize("steps", [1, 3])
@pytest.mark.parametrize("label", sorted(LEARNERS))
def test_meta_gradient_and_curves_equal_the_per_task_engine(label: str, steps: int) -> None:
    assert_same_as_engine(LEARNERS[label](), tasks_for(label), steps)


def test_transforms_and_the_body_get_their_meta_gradient() -> None:
    """The parameters that only the compiled graph can reach: ANIL's body (through the
    encoding) and an adapted transform's factors (through every step)."""
    anil = LEARNERS["anil-kfo-adapt-transform"]()
    compiled_meta_gradient(anil, tasks_for("anil"), 3, eager=True)
    for name, param in anil.named_parameters():
        assert param.grad is not None and float(param.grad.abs().sum()) > 0, name


def test_regression_with_a_custom_loss() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Tanh(),
                                torch.nn.Linear(8, 1)).double()
    tasks = [regression_task(seed=seed) for seed in range(3)]

    def loss_fn(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return (outputs - targets).abs().mean()

    assert_same_as_engine(gbml_ext.MAML(model, lr=0.2), tasks, 2, loss_fn)
    curves = compiled_adaptation_curves(gbml_ext.MAML(model, lr=0.2), tasks, 1, loss_fn,
                                        eager=True)
    assert all(outcome.accuracy is None for curve in curves for outcome in curve)


def test_meta_gradient_equals_central_finite_differences() -> None:
    """Second-order Meta-KFO, PSD factors adapting per task, 3 steps: every meta-parameter."""
    model = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.Tanh(),
                                torch.nn.Linear(3, 2)).double()
    kfo = perturbed(gbml_ext.GBML(model, transform=KFO(params=["2.weight", "2.bias"], psd=True),
                                  lr=LR, adapt_transform=True), scale=0.3)
    tasks = [classification_task(ways=2, dim=3, seed=seed) for seed in range(2)]
    compiled_meta_gradient(kfo, tasks, 3, eager=True)
    params = list(kfo.parameters())

    def mean_query_loss() -> torch.Tensor:
        return sum(run_task(kfo, task, 3).loss.detach() for task in tasks) / len(tasks)

    numeric = finite_difference_grad(mean_query_loss, params)
    for (name, param), want in zip(kfo.named_parameters(), numeric):
        torch.testing.assert_close(param.grad, want, rtol=1e-6, atol=1e-9, msg=name)


def test_float32_agrees_with_the_engine() -> None:
    """Float32 on a CNN with batch-norm: the per-task engine's meta-gradient to 1e-4."""
    cnn = gbml_ext.MAML(tiny_cnn().float(), lr=LR)
    twin = copy.deepcopy(cnn)
    tasks = [Task(t.support_x.float(), t.support_y, t.query_x.float(), t.query_y)
             for t in image_tasks()]
    accumulate_meta_gradient(cnn, tasks, 2)
    compiled_meta_gradient(twin, tasks, 2, eager=True)
    total = torch.cat([p.grad.flatten() for p in cnn.parameters()]).norm()
    for (name, want), got in zip(cnn.named_parameters(), twin.parameters()):
        assert float((got.grad - want.grad).norm()) <= 1e-4 * float(total), name
