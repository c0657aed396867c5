"""Paths as registry entries: one interface with the closed-form numbers, chunking as a wrapper
of any path, the "auto" rule (never a path that cannot run the learner, never compiling a run
too short to pay for it), and the compile notice and first_call_s through the runner."""
from __future__ import annotations

import json
from pathlib import Path as FilePath
from typing import Any, List, cast

import numpy as np
import pytest
import torch

import gbml_ext
from gbml_ext.fast import PATHS, Chunked, Path, choose_path, select
from gbml_ext.fast.select import CompileEstimate
from gbml_ext.fast.step import MetaStep
from gbml_ext.runner import load_config, train
from gbml_ext.runner.build import build_learner
from gbml_ext.runner.evaluate import training_path
from helpers import maml_linear_regression_metagrad, regression_task

REPO = FilePath(__file__).resolve().parents[1]
LR, STEPS = 0.1, 2
# Compiling pays after 2 * 20 / (1e-3 - 1e-4) = 44,445 meta-iterations with these numbers.
PAYS_LATE = CompileEstimate(compile_s=20.0, step_s=1e-3, compiled_step_s=1e-4, source="test")


def _linear_maml() -> gbml_ext.GBML:
    torch.manual_seed(0)
    return gbml_ext.MAML(torch.nn.Linear(3, 1, bias=False).double(), lr=LR)


def _closed_form(learner: gbml_ext.GBML, tasks: List[gbml_ext.Task]) -> np.ndarray:
    w0 = learner.module.weight.detach().numpy().T
    return np.mean([maml_linear_regression_metagrad(task, w0, LR, STEPS)[0] for task in tasks],
                   axis=0).T


def test_the_registry_holds_every_path_with_one_interface() -> None:
    assert PATHS.names() == ["per-task", "batched", "compiled"]
    for name, path in PATHS.items():
        assert isinstance(path, Path) and path.name == name
    with pytest.raises(KeyError, match="unknown algorithm.path 'fast'; choose one of per-task"):
        PATHS["fast"]


@pytest.mark.parametrize("name", ["per-task", "batched"])
def test_each_eager_entry_gives_the_closed_form_meta_gradient(name: str) -> None:
    tasks = [regression_task(seed=seed) for seed in range(3)]
    learner = _linear_maml()
    outcomes = PATHS[name].meta_gradient(learner, tasks, STEPS)
    assert len(outcomes) == 3
    np.testing.assert_allclose(learner.module.weight.grad.numpy(), _closed_form(learner, tasks),
                                rtol=1e-10)
    curves = PATHS[name].curves(learner, tasks, STEPS)
    assert [len(curve) for curve in curves] == [STEPS + 1] * 3


@pytest.mark.parametrize("name", ["per-task", "batched"])
def test_chunking_wraps_any_path_and_keeps_the_gradient_already_there(name: str) -> None:
    tasks = [regression_task(seed=seed) for seed in range(5)]
    learner = _linear_maml()
    before = torch.full_like(learner.module.weight, 0.25)
    learner.module.weight.grad = before.clone()
    path = Chunked(PATHS[name], tasks_per_chunk=2)  # 2 + 2 + 1 tasks
    assert (path.name, path.unsupported(learner, "cpu", True)) == (name, None)
    assert len(path.meta_gradient(learner, tasks, STEPS)) == 5
    np.testing.assert_allclose((learner.module.weight.grad - before).numpy(),
                               _closed_form(learner, tasks), rtol=1e-10)
    assert path.plan is not None and path.plan.to_dict()["tasks_per_chunk"] == 2


def test_chunked_budget_measures_one_task_through_the_wrapped_path() -> None:
    tasks = [regression_task(seed=seed) for seed in range(5)]
    learner = _linear_maml()
    seen: List[Any] = []

    def two_mb_a_task(function: Any, device: torch.device) -> int:
        seen.append(device)
        function()
        return 2 * 2**20

    path = Chunked(PATHS["per-task"], budget_mb=5, measure=two_mb_a_task)
    path.meta_gradient(learner, tasks, STEPS)
    assert seen == [torch.device("cpu")] and path.plan is not None
    assert (path.plan.source, path.plan.tasks_per_chunk) == ("budget", 2)  # 5 MB: 2 tasks
    np.testing.assert_allclose(learner.module.weight.grad.numpy(), _closed_form(learner, tasks),
                               rtol=1e-10)


def test_auto_never_takes_a_path_that_cannot_run_the_learner(
        monkeypatch: pytest.MonkeyPatch) -> None:
    for key in select.COMPILE_ESTIMATES:  # compiling would pay on every device
        monkeypatch.setitem(select.COMPILE_ESTIMATES, key, PAYS_LATE)
    reptile = gbml_ext.Reptile(torch.nn.Linear(3, 1))
    bn = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    running_statistics = gbml_ext.MAML(bn, lr=0.1)  # neither batched nor compiled
    for learner in (reptile, running_statistics):
        for device in ("cpu", "cuda"):
            assert choose_path("auto", learner, device, training=True,
                               iterations=10**6) == "per-task"
    fomaml = gbml_ext.MAML(torch.nn.Linear(3, 1), lr=0.1, first_order=True)
    assert choose_path("auto", fomaml, "cpu", training=True, iterations=10**6) == "compiled"
    for path in ("batched", "compiled"):
        with pytest.raises(PATHS[path].refusal, match="per-task path"):
            choose_path(path, running_statistics)


def test_auto_compiles_only_a_run_long_enough_to_pay_for_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    fomaml = gbml_ext.MAML(torch.nn.Linear(3, 1), lr=0.1, first_order=True)
    # An estimate not measured (None) never compiles, however long the run.
    monkeypatch.setitem(select.COMPILE_ESTIMATES, ("cpu", False), select.CompileEstimate())
    assert choose_path("auto", fomaml, "cpu", training=True, iterations=10**9) == "batched"
    monkeypatch.setitem(select.COMPILE_ESTIMATES, ("cpu", False), PAYS_LATE)
    assert choose_path("auto", fomaml, "cpu", training=True, iterations=300) == "batched"
    assert choose_path("auto", fomaml, "cpu", training=True, iterations=44_000) == "batched"
    assert choose_path("auto", fomaml, "cpu", training=True, iterations=44_445) == "compiled"
    # A time limit caps the expected iterations: 10 s is 10,000 steps of 1 ms at most.
    assert choose_path("auto", fomaml, "cpu", training=True, iterations=60_000,
                       time_limit_s=10.0) == "batched"
    assert choose_path("auto", fomaml, "cpu", training=True) == "batched"  # length unknown
    assert choose_path("auto", fomaml, "cpu", training=False, iterations=10**6) == "batched"
    config = load_config(None, ["algorithm.name=fomaml", "data.options={dim=3}",
                                "train.iterations=60000"])
    assert training_path(config, build_learner(config)) == "compiled"
    short = load_config(None, ["algorithm.name=fomaml", "data.options={dim=3}",
                               "train.iterations=60000", "train.max_minutes=0.5"])
    assert training_path(short, build_learner(short)) == "batched"


def test_make_demo_runs_do_not_compile_with_the_shipped_estimates() -> None:
    """`make demo` trains the synthetic configs for 300 meta-iterations: too short to pay for
    compiling; this holds the estimates in select.COMPILE_ESTIMATES to that."""
    configs = sorted((REPO / "experiments/configs/synthetic").glob("*.toml"))
    assert len(configs) > 5
    for path in configs:
        config = load_config(path, [])
        assert config.train.iterations <= 1000, path
        learner = build_learner(config)
        assert training_path(config, learner) != "compiled", path.name


class _CompilingOnce:
    """A stand-in compiling path: the batched path's numbers, a first call that 'compiles'."""

    name, batches_tasks = "compiled", True
    refusal = PATHS["batched"].refusal

    def __init__(self) -> None:
        self.compiled: List[Any] = []

    def unsupported(self, learner: Any, device: Any, training: bool) -> Any:
        return PATHS["batched"].unsupported(learner, device, training)

    def will_compile(self, learner: Any, batch: Any, steps: int, training: bool) -> bool:
        return learner not in self.compiled

    def first_call_s(self, learner: Any, training: bool = True) -> Any:
        return (12.5 if training else None) if learner in self.compiled else None

    def meta_gradient(self, learner: Any, batch: Any, steps: int, loss_fn: Any = None) -> Any:
        if learner not in self.compiled:
            self.compiled.append(learner)
        return PATHS["batched"].meta_gradient(learner, batch, steps, loss_fn)

    def curves(self, learner: Any, batch: Any, steps: int, loss_fn: Any = None) -> Any:
        return PATHS["batched"].curves(learner, batch, steps, loss_fn)


def test_a_meta_step_says_when_its_path_compiles() -> None:
    lines: List[str] = []
    step = MetaStep(_CompilingOnce(), _linear_maml(), lines.append)
    tasks = [regression_task(seed=seed) for seed in range(2)]
    step(tasks, 1)
    step(tasks, 1)
    assert len(lines) == 2 and "compiling the meta-step on the compiled path" in lines[0]
    assert lines[1].startswith("compiled and ran the first meta-step in ")


def test_the_runner_says_it_compiles_and_records_first_call_s(
        tmp_path: FilePath, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setitem(cast(Any, PATHS), "compiled", _CompilingOnce())
    settings = ["data.source=linear-regression", "data.options={dim=4, n_support=8, n_query=8}",
                "train.iterations=3", "train.meta_batch=2", "evaluation.tasks=4",
                "train.plot=false", "algorithm.name=fomaml"]
    compiled = train(load_config(None, settings + ["algorithm.path=compiled",
                                                   f"output_dir='{tmp_path / 'c'}'"]),
                     progress=False)
    assert capsys.readouterr().err.count("compiling the meta-step on the compiled path") == 1
    written = json.loads((compiled.run_dir / "results.json").read_text())
    assert (written["train_path"], written["first_call_s"]) == ("compiled", 12.5)
    assert written["evaluation_first_call_s"] is None
    batched = train(load_config(None, settings + [f"output_dir='{tmp_path / 'b'}'"]),
                    progress=False)
    assert "compiling" not in capsys.readouterr().err
    assert (batched.results["train_path"], batched.results["first_call_s"]) == ("batched", None)


@pytest.mark.slow  # torch.compile of a linear FOMAML on a CPU: seconds to tens of seconds
def test_a_compiled_run_records_its_first_call(tmp_path: FilePath,
                                               capsys: pytest.CaptureFixture) -> None:
    config = load_config(None, [
        "data.source=linear-regression", "data.options={dim=4, n_support=8, n_query=8}",
        "train.iterations=2", "train.meta_batch=2", "evaluation.tasks=2", "train.plot=false",
        "algorithm.name=fomaml", "algorithm.path=compiled", f"output_dir='{tmp_path}'"])
    results = train(config, progress=False).results
    assert results["train_path"] == "compiled" and results["path"] == "compiled"
    assert results["first_call_s"] > 0 and results["evaluation_first_call_s"] > 0
    # Training's first call is the meta-gradient's, whatever evaluation compiled after it.
    assert results["first_call_s"] != results["evaluation_first_call_s"]
    assert "compiling the meta-step on the compiled path" in capsys.readouterr().err


def test_the_compiled_entry_keeps_the_first_call_of_each_mode(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The compile cache reports the latest first call of a learner, whichever mode it was;
    the entry keeps training's and evaluation's apart."""
    import gbml_ext.fast.paths as paths

    latest: dict = {}
    compiled: set = set()

    def compiling(seconds: float) -> Any:
        def call(learner: Any, *args: Any) -> List[Any]:
            if (learner, seconds) not in compiled:  # the first call compiles, and is recorded
                compiled.add((learner, seconds))
                latest["now"] = float(seconds)
            return []
        return call

    monkeypatch.setattr(paths, "compiled_meta_gradient", compiling(5))
    monkeypatch.setattr(paths, "compiled_adaptation_curves", compiling(7))
    monkeypatch.setattr(paths, "first_call_seconds", lambda learner: latest.get("now"))
    path, learner = paths.CompiledPath(), _linear_maml()
    assert path.first_call_s(learner) is None
    path.meta_gradient(learner, [], 1)
    path.curves(learner, [], 1)
    path.meta_gradient(learner, [], 1)  # no compiling: nothing new on record
    assert (path.first_call_s(learner), path.first_call_s(learner, training=False)) == (5.0, 7.0)
