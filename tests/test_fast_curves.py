"""Batched evaluation: the adaptation curves of many tasks at once equal the per-task ones."""
from __future__ import annotations

import importlib
from typing import Callable, Dict, List

import pytest
import torch

import gbml_ext
from gbml_ext.data.synthetic import LogisticRegressionTasks
from gbml_ext.engine import TaskOutcome, adaptation_curve, run_task
from gbml_ext.fast import batched_adaptation_curves
from helpers import classification_task, regression_task
from test_batched import image_tasks, perturb_transforms, tiny_cnn

__all__ = []

# The module, not the `evaluate` function that gbml_ext.runner re-exports under the same name.
evaluate_module = importlib.import_module("gbml_ext.runner.evaluate")


def assert_same_curves(actual: List[List[TaskOutcome]],
                       expected: List[List[TaskOutcome]]) -> None:
    assert len(actual) == len(expected)
    for got_curve, want_curve in zip(actual, expected, strict=True):
        assert len(got_curve) == len(want_curve)
        for got, want in zip(got_curve, want_curve, strict=True):
            assert not got.loss.requires_grad
            torch.testing.assert_close(got.loss, want.loss, rtol=1e-5, atol=1e-12)
            if want.accuracy is None:
                assert got.accuracy is None
            else:
                torch.testing.assert_close(got.accuracy, want.accuracy)


def algorithms() -> Dict[str, torch.nn.Module]:
    kfo = gbml_ext.GBML(tiny_cnn(), transform=gbml_ext.KroneckerTransform(nonlinear=True),
                        lr=0.3)
    perturb_transforms(kfo)
    meta_sgd = gbml_ext.MetaSGD(tiny_cnn(), lr=0.3)
    perturb_transforms(meta_sgd, scale=0.05)
    model = tiny_cnn()
    return {"maml": gbml_ext.MAML(tiny_cnn(), lr=0.3), "kfo-mlp": kfo, "meta-sgd": meta_sgd,
            "anil": gbml_ext.ANIL(model.features, model.classifier, lr=0.3)}


@pytest.mark.parametrize("label", sorted(algorithms()))
def test_curves_equal_per_task_curves(label: str) -> None:
    algorithm = algorithms()[label]
    tasks = image_tasks(count=5)
    expected = [adaptation_curve(algorithm, task, 3) for task in tasks]
    actual = batched_adaptation_curves(algorithm, tasks, 3, tasks_per_chunk=2)
    assert_same_curves(actual, expected)
    assert all(p.grad is None for p in algorithm.parameters())
    # The curve moves: a wrong (e.g. skipped) inner step would show.
    assert actual[0][3].loss < actual[0][0].loss


def test_regression_curves_with_custom_loss() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.Tanh(),
                                torch.nn.Linear(5, 1)).double()
    maml = gbml_ext.MAML(model, lr=0.1)
    tasks = [regression_task(seed=seed) for seed in range(4)]

    def loss_fn(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return (outputs - targets).abs().mean()

    expected = [adaptation_curve(maml, task, 2, loss_fn) for task in tasks]
    assert_same_curves(batched_adaptation_curves(maml, tasks, 2, loss_fn), expected)


def adapted_kfo() -> gbml_ext.GBML:
    model = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.Tanh(),
                                torch.nn.Linear(6, 3)).double()
    kfo = gbml_ext.GBML(model, transform=gbml_ext.KroneckerTransform(psd=True), lr=0.3,
                        adapt_transform=True)
    perturb_transforms(kfo)
    return kfo


def test_adapted_transform_curves_equal_per_task_losses() -> None:
    """With adapt_transform the curve after k steps is run_task's (second-order) loss after k
    steps, and the engine's first-order `adaptation_curve` gives the same."""
    kfo = adapted_kfo()
    tasks = [classification_task(seed=seed) for seed in range(3)]
    expected = [[run_task(kfo, task, k) for k in range(4)] for task in tasks]
    expected = [[TaskOutcome(o.loss.detach(), o.accuracy) for o in curve] for curve in expected]
    actual = batched_adaptation_curves(kfo, tasks, 3)
    assert_same_curves(actual, expected)
    per_task = [adaptation_curve(kfo, task, 3) for task in tasks]
    assert_same_curves(per_task, expected)


@pytest.mark.parametrize("make", [lambda: gbml_ext.MAML(torch.nn.Linear(4, 2), lr=0.5),
                                  lambda: gbml_ext.GBML(torch.nn.Linear(4, 2), lr=0.5,
                                                        transform=gbml_ext.KroneckerTransform(),
                                                        adapt_transform=True)])
def test_evaluate_draws_the_same_tasks_on_both_paths(make: Callable[[], torch.nn.Module],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunks of 4 over 10 tasks: the batched evaluation sees the per-task one's tasks, in
    order, and gives its per-task numbers."""
    monkeypatch.setattr(evaluate_module, "EVAL_TASKS_PER_CHUNK", 4)
    algorithm = make()

    def source() -> LogisticRegressionTasks:
        return LogisticRegressionTasks(dim=4, n_support=8, n_query=8, seed=3)

    per_task = evaluate_module.evaluate(algorithm, source(), 10, 2, path="per-task")
    batched = evaluate_module.evaluate(algorithm, source(), 10, 2, path="batched")
    for key in ("loss_by_step", "accuracy"):
        want, got = per_task["per_task"][key], batched["per_task"][key]
        torch.testing.assert_close(torch.tensor(got), torch.tensor(want), rtol=1e-5, atol=1e-7)
    assert batched["loss"]["n"] == 10
