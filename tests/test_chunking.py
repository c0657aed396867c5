"""Chunking the meta-batch: the chunk size a memory budget allows (a pure function), the same
meta-gradient chunked or not, and the runner's `algorithm.tasks_per_chunk` and
`train.memory_budget_mb`."""
from __future__ import annotations

import functools
import math
from pathlib import Path

import pytest
import torch

import gbml_ext
from gbml_ext.fast import Chunked, ChunkedMetaGradient, tasks_per_chunk_for_budget
from gbml_ext.runner import load_config, train
from helpers import classification_task

TINY = ["data.source=linear-regression", "data.options={dim=4, n_support=8, n_query=8}",
        "train.iterations=5", "train.meta_batch=7", "train.lr=0.01", "train.log_every=1",
        "evaluation.tasks=6", "algorithm.path=batched", "train.plot=false"]


@pytest.mark.parametrize("tasks", [1, 2, 7, 32, 33])
@pytest.mark.parametrize("per_task", [1, 3, 10, 40, 100])
def test_chosen_chunk_respects_the_budget_with_the_fewest_chunks(tasks, per_task):
    budget = 30
    chunk = tasks_per_chunk_for_budget(tasks, budget, per_task)
    assert 1 <= chunk <= tasks
    if per_task <= budget:
        assert chunk * per_task <= budget  # the budget holds
        fit = min(tasks, budget // per_task)
        assert math.ceil(tasks / chunk) == math.ceil(tasks / fit)  # no more chunks than needed
    else:
        assert chunk == 1  # over budget even alone: one task at a time
    assert chunk == math.ceil(tasks / math.ceil(tasks / chunk))  # no larger than it needs


def test_unknown_cost_or_no_tasks():
    assert tasks_per_chunk_for_budget(8, 100, 0) == 8
    with pytest.raises(ValueError):
        tasks_per_chunk_for_budget(0, 100, 1)


def _maml() -> gbml_ext.GBML:
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
    return gbml_ext.MAML(net.double(), lr=0.3)


def _meta_gradient(step, tasks):
    step.algorithm.zero_grad(set_to_none=True)
    outcomes = step(tasks, 2)
    return [p.grad.clone() for p in step.algorithm.parameters()], outcomes


def test_chunked_and_unchunked_meta_gradients_agree():
    tasks = [classification_task(seed=seed) for seed in range(7)]
    whole, whole_outcomes = _meta_gradient(ChunkedMetaGradient(_maml()), tasks)
    costs = []

    def one_task_costs_3_mb(function, device):
        function()
        costs.append(device)
        return 3 * 2**20

    budgeted = ChunkedMetaGradient(_maml(), budget_mb=10, measure=one_task_costs_3_mb)
    for call in range(2):  # the first call measures (chunks of 1), the second uses the plan
        chunked, outcomes = _meta_gradient(budgeted, tasks)
        for a, b in zip(whole, chunked, strict=True):
            assert torch.allclose(a, b, rtol=1e-6, atol=1e-9), call
        assert ([o.loss.item() for o in outcomes]
                == pytest.approx([o.loss.item() for o in whole_outcomes]))
    assert costs == [torch.device("cpu")]  # measured once
    plan = budgeted.plan
    assert plan is not None and plan.source == "budget" and plan.one_task_peak_mb == 3
    assert plan.tasks_per_chunk == 3 and plan.tasks_per_chunk * 3 <= 10  # 7 tasks: 3 + 3 + 1
    fixed, _ = _meta_gradient(ChunkedMetaGradient(_maml(), tasks_per_chunk=2), tasks)
    for a, b in zip(whole, fixed, strict=True):
        assert torch.allclose(a, b, rtol=1e-6, atol=1e-9)


def _run(tmp_path: Path, name: str, *extra: str):
    config = load_config(None, TINY + [f"output_dir='{tmp_path / name}'", *extra])
    return train(config, progress=False)


def test_runner_chunks_by_config_or_budget_with_the_same_training(tmp_path, monkeypatch):
    def one_task_costs_a_fifth_of_a_mb(function, device):
        function()
        return 0.2 * 2**20

    # The runner's chunking measures one task's peak; a stand-in with a known cost makes the
    # chunk size the budget allows known: 0.5 MB fits 2 tasks of 0.2 MB, so 7 run as 2+2+2+1.
    monkeypatch.setattr(gbml_ext.fast, "Chunked", functools.partial(
        Chunked, measure=one_task_costs_a_fifth_of_a_mb))
    whole = _run(tmp_path, "whole")
    chunked = _run(tmp_path, "chunked", "algorithm.tasks_per_chunk=2")
    budget = _run(tmp_path, "budget", "train.memory_budget_mb=0.5")
    over = _run(tmp_path, "over", "train.memory_budget_mb=0.1")
    assert whole.results["chunking"] is None
    assert chunked.results["chunking"] == {"tasks_per_chunk": 2, "source": "config",
                                           "budget_mb": 0.0, "one_task_peak_mb": None,
                                           "over_budget": False}
    assert budget.results["chunking"] == {"tasks_per_chunk": 2, "source": "budget",
                                          "budget_mb": 0.5, "one_task_peak_mb": 0.2,
                                          "over_budget": False}
    assert over.results["chunking"] == {"tasks_per_chunk": 1, "source": "budget",
                                        "budget_mb": 0.1, "one_task_peak_mb": 0.2,
                                        "over_budget": True}
    for run in (chunked, budget, over):
        for a, b in zip(whole.algorithm.parameters(), run.algorithm.parameters(), strict=True):
            assert torch.allclose(a, b, rtol=1e-6, atol=1e-7)


def test_chunk_keys_are_implementation_keys():
    from gbml_ext.runner.compat import IMPLEMENTATION_KEYS, config_differences

    plain = {"algorithm": {"tasks_per_chunk": 0}, "train": {"memory_budget_mb": 0.0}}
    other = {"algorithm": {"tasks_per_chunk": 4}, "train": {"memory_budget_mb": 500.0}}
    assert config_differences(plain, other) == []
    assert {"algorithm.tasks_per_chunk", "train.memory_budget_mb"} <= set(IMPLEMENTATION_KEYS)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")
def test_memory_budget_bounds_the_measured_cuda_peak():
    from benchmarks.configs import CONFIGS, make_learner, make_tasks

    config = CONFIGS["a-maml"]
    device = torch.device("cuda")
    learner, tasks = make_learner(config, device), make_tasks(config, device)
    probe = ChunkedMetaGradient(learner, budget_mb=10_000)
    probe(tasks, 1)  # measures one task's peak
    one_task_mb = probe.plan.one_task_peak_mb
    budget_mb = 4.5 * one_task_mb
    step = ChunkedMetaGradient(learner, budget_mb=budget_mb)
    step(tasks, 1)
    assert step.plan.tasks_per_chunk <= 4
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    learner.zero_grad(set_to_none=True)
    step(tasks, 1)
    peak_mb = (torch.cuda.max_memory_allocated(device) - before) / 2**20
    assert peak_mb <= budget_mb, (peak_mb, budget_mb, step.plan)
