"""A new algorithm is one definition and one registration, outside the package: here a toy one
is defined and registered in this file, then trained by `gbml-train`'s main in process."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Iterator, List, Optional

import pytest
import torch
from torch import nn

import gbml_ext
from gbml_ext.algorithms import ALGORITHMS, register_algorithm
from gbml_ext.data.tasks import Task
from gbml_ext.fast import batched_meta_gradient
from gbml_ext.runner.cli import main

TINY = ["data.options={dim=4, n_support=8, n_query=8}", "train.iterations=4",
        "train.meta_batch=4", "train.lr=0.01", "evaluation.tasks=6", "algorithm.test_steps=2",
        "train.plot=false", "--no-progress"]


class HalfStepMAML(gbml_ext.GBML):
    """The toy: MAML that steps half as far as `algorithm.inner_lr` says. It inherits GBML's
    batched form, so the fast path runs it."""


class HalfStepPerTask(HalfStepMAML):
    """The same toy with its own (identity) task encoding, which its inherited batched form
    does not describe: it runs per task only, and the runner says why."""

    def encode_task(self, task: Task) -> Task:
        return task


def _builder(cls: type) -> Callable[[Any, nn.Module, Optional[Callable]], nn.Module]:
    def build(config: Any, model: nn.Module, transform: Optional[Callable]) -> nn.Module:
        return cls(model, transform=transform, lr=config.inner_lr / 2)

    return build


@pytest.fixture
def toys() -> Iterator[None]:
    register_algorithm("toy", doc="MAML at half the step")(_builder(HalfStepMAML))
    register_algorithm("toy-per-task")(_builder(HalfStepPerTask))
    yield
    ALGORITHMS.unregister("toy")
    ALGORITHMS.unregister("toy-per-task")


def train(folder: Path, *words: str) -> dict:
    assert main([*TINY, f"output_dir='{folder}'", *words]) == 0
    return json.loads((folder / "results.json").read_text())


def losses(results: dict) -> List[float]:
    return results["evaluation"]["per_task"]["loss_by_step"][-1]


def test_a_registered_toy_algorithm_trains_through_gbml_train(toys: None, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture
                                                               ) -> None:
    toy = train(tmp_path / "toy", "algorithm.name=toy", "algorithm.inner_lr=0.2")
    maml = train(tmp_path / "maml", "algorithm.name=maml", "algorithm.inner_lr=0.1")
    assert toy["config"]["algorithm"]["name"] == "toy"
    assert toy["path"] == maml["path"] == "batched"  # the inherited batched form
    # The toy at inner_lr 0.2 is MAML at 0.1: same tasks, same start, same trained numbers.
    assert toy["final_train_loss"] == pytest.approx(maml["final_train_loss"], rel=1e-6)
    assert losses(toy) == pytest.approx(losses(maml), rel=1e-6)
    assert toy["final_train_loss"] != pytest.approx(
        train(tmp_path / "maml-0.2", "algorithm.inner_lr=0.2")["final_train_loss"], rel=1e-6)
    capsys.readouterr()
    assert main(["--print-config"]) == 0
    assert "toy | toy-per-task" in capsys.readouterr().out


def test_a_toy_without_a_batched_form_runs_per_task_and_says_why(
        toys: None, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    capsys.readouterr()
    toy = train(tmp_path / "toy", "algorithm.name=toy-per-task", "algorithm.inner_lr=0.2")
    assert toy["path"] == "per-task"
    assert "toy-per-task runs per task: HalfStepPerTask overrides encode_task" in (
        capsys.readouterr().err)
    maml = train(tmp_path / "maml", "algorithm.inner_lr=0.1", "algorithm.path=per-task")
    assert losses(toy) == pytest.approx(losses(maml), rel=1e-6)
    assert main([*TINY, f"output_dir='{tmp_path / 'refused'}'", "algorithm.name=toy-per-task",
                 "algorithm.path=batched"]) == 1
    assert "overrides encode_task" in capsys.readouterr().err


def test_the_fast_path_reads_a_learner_only_through_its_batched_form() -> None:
    """A learner that is no GBML at all reaches the fast path by giving a batched form."""

    class Wrapped(gbml_ext.MetaLearner, nn.Module):
        def __init__(self, inner: gbml_ext.GBML):
            super().__init__()
            self.inner = inner

        def clone(self) -> gbml_ext.GBML:
            return self.inner.clone()

        def batched_form(self) -> Any:
            return self.inner.batched_form()

    torch.manual_seed(0)
    maml = gbml_ext.MAML(nn.Linear(3, 1), lr=0.3)
    wrapped = Wrapped(gbml_ext.MAML(nn.Linear(3, 1), lr=0.3))
    wrapped.inner.load_state_dict(maml.state_dict())
    tasks = [Task(torch.randn(5, 3), torch.randn(5, 1), torch.randn(6, 3), torch.randn(6, 1))
             for _ in range(3)]
    gbml_ext.accumulate_meta_gradient(maml, tasks, 2)
    batched_meta_gradient(wrapped, tasks, 2)
    for want, got in zip(maml.parameters(), wrapped.parameters(), strict=True):
        torch.testing.assert_close(got.grad, want.grad, rtol=1e-5, atol=1e-7)
