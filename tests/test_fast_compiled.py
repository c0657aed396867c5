"""The compiled path: which learners it takes, how it caches and times its compiled functions,
and (slow: compiling takes tens of seconds on a CPU) the compiled step against the per-task
engine for a few representative learners, with no recompiles once compiled. The step's
numbers for every algorithm are checked eagerly in tests/test_compiled_step.py."""
from __future__ import annotations

import copy
import dataclasses
import gc
import json
from typing import Any, Callable, List

import learn2learn as l2l
import pytest
import torch

import gbml_ext
from gbml_ext import Task
from gbml_ext.engine import accumulate_meta_gradient, adaptation_curve
from gbml_ext.fast import (
    CompiledPathUnsupported,
    choose_path,
    compile_cache,
    compiled_adaptation_curves,
    compiled_meta_gradient,
    first_call_seconds,
    needs_compiling,
)
from gbml_ext.fast import compiled as compiled_module
from helpers import classification_task, regression_task

__all__: List[str] = []


def _regression_tasks(count: int, seed: int = 0) -> List[Task]:
    return [regression_task(n_support=6, n_query=5, dim=3, seed=seed + i) for i in range(count)]


def test_every_learner_with_a_batched_form_takes_the_path_and_the_rest_are_named() -> None:
    maml = gbml_ext.MAML(torch.nn.Linear(3, 1), lr=0.1)
    kfo = gbml_ext.GBML(torch.nn.Linear(3, 2), transform=gbml_ext.KroneckerTransform(), lr=0.1)
    anil = gbml_ext.ANIL(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2), lr=0.1)
    for learner in (maml, kfo, anil):
        assert choose_path("compiled", learner, training=True) == "compiled"
        assert choose_path("compiled", learner, training=False) == "compiled"
    assert choose_path("auto", maml, "cpu") == "batched"  # "auto" never compiles
    running = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    frozen = torch.nn.Linear(3, 1)
    frozen.bias.requires_grad_(False)
    refused = [(gbml_ext.Reptile(torch.nn.Linear(3, 1)), "Reptile forms its own"),
               (gbml_ext.IMAML(torch.nn.Linear(3, 1)), "IMAML forms its own"),
               (l2l.algorithms.MAML(torch.nn.Linear(3, 1), lr=0.1), "MAML does not"),
               (gbml_ext.MAML(running, lr=0.1), "running statistics"),
               (gbml_ext.MAML(frozen, lr=0.1, allow_nograd=True), "do not require grad")]
    for learner, reason in refused:
        with pytest.raises(CompiledPathUnsupported, match=reason) as error:
            choose_path("compiled", learner, training=True)
        assert "\n" not in str(error.value) and "algorithm.path = 'per-task'" in str(error.value)
        with pytest.raises(CompiledPathUnsupported, match=reason):
            compiled_meta_gradient(learner, _regression_tasks(1), 1)


def test_an_encoding_without_an_encoder_module_is_refused() -> None:
    class Encoded(gbml_ext.GBML):
        def batched_form(self) -> Any:
            return dataclasses.replace(super().batched_form(), encode=lambda s, q: (s, q))

    with pytest.raises(CompiledPathUnsupported, match="BatchedForm.encoder"):
        compiled_adaptation_curves(Encoded(torch.nn.Linear(3, 1)), _regression_tasks(1), 1)


def test_a_step_torch_compile_cannot_trace_is_refused_in_one_line() -> None:
    class Untraceable(torch.nn.Linear):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            torch._dynamo.graph_break()  # no-op when eager; dynamo stops here
            return super().forward(x)

    maml = gbml_ext.MAML(Untraceable(3, 1), lr=0.1)
    tasks = _regression_tasks(2)
    with pytest.raises(CompiledPathUnsupported, match="cannot trace MAML's meta-gradient") as error:
        compiled_meta_gradient(maml, tasks, 1)
    assert "'batched'" in str(error.value) and "\n" not in str(error.value)
    assert needs_compiling(maml, tasks, 1) and first_call_seconds(maml) is None
    assert all(p.grad is None for p in maml.parameters())


class _FakeCompile:
    """Stands in for torch.compile: counts the functions built and runs them eagerly, the
    first call of each raising `first_error` once if set."""

    def __init__(self, first_error: type | None = None):
        self.built = 0
        self.first_error = first_error

    def __call__(self, function: Callable, **options: Any) -> Callable:
        assert options == {"fullgraph": True, "dynamic": False}
        self.built += 1
        failures = [self.first_error] if self.first_error else []

        def run(*args: Any) -> Any:
            if failures:
                raise failures.pop()()
            return function(*args)

        return run


def test_compiled_functions_are_cached_per_learner_shapes_steps_and_mode(monkeypatch) -> None:
    fake = _FakeCompile()
    monkeypatch.setattr(compiled_module.torch, "compile", fake)
    maml = gbml_ext.MAML(torch.nn.Linear(3, 1).double(), lr=0.1)
    tasks = _regression_tasks(3)
    assert needs_compiling(maml, tasks, 2)
    compiled_meta_gradient(maml, tasks, 2)
    assert not needs_compiling(maml, tasks, 2) and first_call_seconds(maml) is not None
    compiled_meta_gradient(maml, _regression_tasks(3, seed=7), 2)  # new tasks, same shapes
    assert fake.built == 1
    compiled_meta_gradient(maml, tasks, 3)                          # more steps
    compiled_meta_gradient(maml, tasks[:2], 2)                      # fewer tasks
    compiled_adaptation_curves(maml, tasks, 2)                      # evaluation
    maml.first_order = True                                         # FOMAML now
    compiled_meta_gradient(maml, tasks, 2)
    assert fake.built == 5
    twin = copy.deepcopy(maml)
    compiled_meta_gradient(twin, tasks, 2)
    assert fake.built == 6
    gc.collect()
    learners = len(compile_cache._CACHE)
    del twin
    gc.collect()
    assert len(compile_cache._CACHE) == learners - 1  # weakly keyed: entries go with a learner


@pytest.mark.parametrize("error", [KeyboardInterrupt, RuntimeError])
def test_an_interrupted_first_call_propagates_and_records_nothing(monkeypatch, error) -> None:
    monkeypatch.setattr(compiled_module.torch, "compile", _FakeCompile(first_error=error))
    maml = gbml_ext.MAML(torch.nn.Linear(3, 1).double(), lr=0.1)
    tasks = _regression_tasks(2)
    with pytest.raises(error):
        compiled_meta_gradient(maml, tasks, 1)
    assert needs_compiling(maml, tasks, 1) and first_call_seconds(maml) is None
    assert all(p.grad is None for p in maml.parameters())
    compiled_meta_gradient(maml, tasks, 1)  # the next call compiles (here: runs) afresh
    assert not needs_compiling(maml, tasks, 1)


def _assert_gradients_close(algorithm: torch.nn.Module, twin: torch.nn.Module,
                            relative: float) -> float:
    """Every meta-gradient within `relative` of the whole gradient's norm; returns the largest
    relative difference."""
    total = torch.cat([p.grad.flatten() for p in algorithm.parameters()]).norm()
    worst = 0.0
    for (name, want), got in zip(algorithm.named_parameters(), twin.parameters(), strict=True):
        difference = float((got.grad - want.grad).norm() / total)
        assert difference <= relative, (name, difference)
        worst = max(worst, difference)
    return worst


def _unique_graphs() -> int:
    return int(torch._dynamo.utils.counters["stats"]["unique_graphs"])


@pytest.mark.slow
def test_compiled_maml_equals_the_engine_and_does_not_recompile() -> None:
    """Second-order MAML, 2 steps, float64: one graph, then none for new tasks of the same
    shapes or after the meta-parameters change."""
    torch.manual_seed(0)
    maml = gbml_ext.MAML(torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(),
                                             torch.nn.Linear(4, 1)).double(), lr=0.3)
    twin = copy.deepcopy(maml)
    tasks = _regression_tasks(4)
    accumulate_meta_gradient(maml, tasks, 2)
    before = _unique_graphs()
    outcomes = compiled_meta_gradient(twin, tasks, 2)
    assert _unique_graphs() == before + 1 and first_call_seconds(twin) > 0
    assert _assert_gradients_close(maml, twin, 1e-10) <= 1e-10
    assert len(outcomes) == 4 and outcomes[0].accuracy is None
    optimizer = torch.optim.SGD(twin.parameters(), lr=0.1)
    for seed in (10, 20):
        optimizer.step()
        optimizer.zero_grad()
        compiled_meta_gradient(twin, _regression_tasks(4, seed=seed), 2)
    assert _unique_graphs() == before + 1 and not needs_compiling(twin, tasks, 2)


@pytest.mark.slow
def test_compiled_kfo_with_an_adapted_transform_and_its_curves_equal_the_engine() -> None:
    """Second-order Meta-KFO, PSD factors adapting per task from the second step on."""
    torch.manual_seed(0)
    transform = gbml_ext.KroneckerTransform(psd=True)
    kfo = gbml_ext.GBML(torch.nn.Linear(4, 3).double(), transform=transform, lr=0.3,
                        adapt_transform=True)
    with torch.no_grad():
        for param in kfo.compute_update.parameters():
            param.add_(0.1 * torch.randn_like(param))
    twin = copy.deepcopy(kfo)
    tasks = [classification_task(seed=seed) for seed in range(3)]
    expected = accumulate_meta_gradient(kfo, tasks, 2)
    actual = compiled_meta_gradient(twin, tasks, 2)
    _assert_gradients_close(kfo, twin, 1e-10)
    for want, got in zip(expected, actual, strict=True):
        torch.testing.assert_close(got.loss, want.loss, rtol=1e-10, atol=1e-12)
        assert float(got.accuracy) == float(want.accuracy)
    curves = compiled_adaptation_curves(twin, tasks, 2)
    for task, curve in zip(tasks, curves, strict=True):
        for got, want in zip(curve, adaptation_curve(kfo, task, 2), strict=True):
            torch.testing.assert_close(got.loss, want.loss, rtol=1e-10, atol=1e-12)


@pytest.mark.slow
def test_compiled_anil_cnn_in_float32_agrees_with_the_engine() -> None:
    """ANIL on a CNN (convolutions, batch-norm on the batch's statistics, max-pool; the body
    inside the graph) in float32: within 1e-5 of the meta-gradient's norm."""
    torch.manual_seed(0)
    cnn = gbml_ext.nn.CNN4(3, in_channels=1, hidden=4, layers=2, image_size=8)
    anil = gbml_ext.ANIL(cnn.features, cnn.classifier, lr=0.3)
    twin = copy.deepcopy(anil)
    tasks = [Task(torch.randn(6, 1, 8, 8), torch.arange(6) % 3, torch.randn(9, 1, 8, 8),
                  torch.arange(9) % 3) for _ in range(4)]
    accumulate_meta_gradient(anil, tasks, 2)
    compiled_meta_gradient(twin, tasks, 2)
    assert all(p.grad is not None for p in twin.body.parameters())
    _assert_gradients_close(anil, twin, 1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("extra", [
    ["algorithm.name=maml"],
    ["algorithm.name=fomaml"],
    ["algorithm.name=metasgd"],
    ["algorithm.name=maml", "algorithm.transform=kronecker", "algorithm.adapt_transform=true",
     "algorithm.transform_psd=true"],
    ["algorithm.name=maml", "model.linnet_depth=2"],
], ids=["maml", "fomaml", "metasgd", "kfo-psd-adapted", "linnet"])
def test_runner_trains_on_the_compiled_path_as_on_the_per_task_path(tmp_path,
                                                                    extra: list) -> None:
    """gbml-train on the compiled path gives the per-task path's training losses, validation
    and final evaluation, up to float32 rounding (ANIL, whose models are CNNs, is checked
    against the engine above: compiling a CNN takes minutes on a CPU)."""
    from gbml_ext.runner import load_config, train

    overrides = ["data.options={dim=3, n_support=6, n_query=6}", "train.iterations=4",
                 "train.meta_batch=2", "evaluation.tasks=4", "train.plot=false",
                 "algorithm.train_steps=2", "train.log_every=1", "train.lr=0.05", *extra]
    results = {path: train(load_config(None, overrides + [
        f"algorithm.path={path}", f"output_dir='{tmp_path}/{path}'"]), progress=False).results
        for path in ("compiled", "per-task")}
    assert results["compiled"]["path"] == "compiled"
    losses = {path: [json.loads(line)["loss"] for line in
                     (tmp_path / path / "metrics.jsonl").read_text().splitlines()]
              for path in results}
    assert len(losses["compiled"]) == 4 and len(set(losses["per-task"])) > 1
    assert losses["compiled"] == pytest.approx(losses["per-task"], rel=1e-4)
    for key in ("loss_by_step",):
        torch.testing.assert_close(
            torch.tensor(results["compiled"]["evaluation"]["per_task"][key]),
            torch.tensor(results["per-task"]["evaluation"]["per_task"][key]),
            rtol=1e-4, atol=1e-6)


@pytest.mark.slow
def test_an_evaluation_s_short_last_chunk_reuses_the_compiled_graph() -> None:
    """70 tasks are a chunk of 64 and one of 6: the 6 are padded with copies of the last task
    to 64, so the curves compile once, and every task's curve is the per-task path's."""
    from gbml_ext.data import LinearRegressionTasks
    from gbml_ext.runner.evaluate import EVAL_TASKS_PER_CHUNK, evaluate

    assert EVAL_TASKS_PER_CHUNK == 64
    torch.manual_seed(0)
    maml = gbml_ext.MAML(torch.nn.Linear(3, 1), lr=0.3)

    def tasks() -> LinearRegressionTasks:
        return LinearRegressionTasks(dim=3, n_support=5, n_query=5, seed=4)

    compiled = evaluate(maml, tasks(), 70, 2, path="compiled")
    kinds = [key[0] for key in compile_cache._CACHE[maml]]
    assert kinds.count("curves") == 1
    reference = evaluate(maml, tasks(), 70, 2, path="per-task")
    got = torch.tensor(compiled["per_task"]["loss_by_step"])
    assert got.shape == (3, 70)
    torch.testing.assert_close(got, torch.tensor(reference["per_task"]["loss_by_step"]),
                               rtol=1e-5, atol=1e-7)


@pytest.mark.slow
@pytest.mark.parametrize("rank0", [True, False])
def test_only_rank_0_says_the_step_is_compiling(capsys, rank0: bool) -> None:
    from gbml_ext.data import LinearRegressionTasks
    from gbml_ext.runner import load_config
    from gbml_ext.runner.build import build_learner
    from gbml_ext.runner.evaluate import training_step

    config = load_config(None, ["data.options={dim=3, n_support=5, n_query=5}",
                                "algorithm.path=compiled"])
    step = training_step(config, build_learner(config), says=rank0)
    step(LinearRegressionTasks(dim=3, n_support=5, n_query=5).sample_batch(2), 1)
    said = capsys.readouterr().err
    assert ("compiling the meta-step" in said) == rank0
