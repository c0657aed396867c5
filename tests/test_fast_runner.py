"""The runner's path selection (algorithm.path) and the fast path inside whole runs."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, List, cast

import pytest
import torch

import gbml_ext
from gbml_ext.fast import BatchedPathUnsupported, choose_path
from gbml_ext.runner import ConfigError, load_config, train
from gbml_ext.runner.build import build_learner
from gbml_ext.runner.evaluate import run_path
from gbml_ext.runner.loop import RunResult

__all__ = []

TINY = ["data.source=linear-regression", "data.options={dim=4, n_support=8, n_query=8}",
        "train.iterations=8", "train.meta_batch=3", "train.lr=0.01", "train.log_every=1",
        "train.eval_every=4", "train.eval_tasks=6", "evaluation.tasks=10",
        "algorithm.test_steps=2"]


def run(tmp_path: Path, name: str, *extra: str) -> RunResult:
    config = load_config(None, TINY + [f"output_dir='{tmp_path / name}'", *extra])
    return train(config, progress=False)


def validation_losses(run_dir: Path) -> List[float]:
    records = map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())
    return [record["loss"] for record in records if record["split"] == "validation"]


def test_auto_takes_the_batched_path_for_models_without_convolutions_on_cpu() -> None:
    maml = gbml_ext.MAML(torch.nn.Linear(8, 1), lr=0.1)
    assert choose_path("auto", maml, "cpu") == "batched"
    assert choose_path("auto", maml, "cuda") == "batched"
    cnn = gbml_ext.MAML(torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.Flatten()))
    assert choose_path("auto", cnn, "cpu") == "per-task"
    assert choose_path("auto", cnn, "cuda") == "batched"
    assert choose_path("per-task", maml, "cuda") == "per-task"


@pytest.mark.parametrize("name", ["reptile", "imaml", "l2l-maml"])
def test_auto_keeps_other_algorithms_per_task(name: str) -> None:
    config = load_config(None, TINY + [f"algorithm.name={name}"])
    algorithm = build_learner(config)
    assert run_path(config.algorithm, algorithm) == "per-task"
    with pytest.raises(BatchedPathUnsupported, match="per-task path"):
        choose_path("batched", algorithm)


@pytest.mark.parametrize("extra", [["algorithm.name=fomaml"], ["algorithm.name=metasgd"],
                                   ["algorithm.transform=kronecker",
                                    "algorithm.adapt_transform=true"]])
def test_auto_takes_the_batched_path_for_supported_algorithms(extra: List[str]) -> None:
    config = load_config(None, TINY + extra)
    assert run_path(config.algorithm, build_learner(config)) == "batched"


def test_path_key_and_its_synonym() -> None:
    maml = gbml_ext.MAML(torch.nn.Linear(4, 1), lr=0.1)
    assert load_config(None, []).algorithm.path == "auto"
    old_style = load_config(None, ["algorithm.batched=true"]).algorithm
    assert run_path(old_style, maml) == "batched"
    assert run_path(load_config(None, ["algorithm.path=per-task"]).algorithm, maml) == "per-task"
    with pytest.raises(ConfigError, match="allowed: auto, per-task, batched"):
        load_config(None, ["algorithm.path=fast"])
    both = load_config(None, ["algorithm.batched=true", "algorithm.path=per-task"]).algorithm
    with pytest.raises(ConfigError, match="contradicts"):
        run_path(both, maml)


@pytest.mark.parametrize("extra", [
    [],
    ["algorithm.transform=kronecker", "algorithm.adapt_transform=true",
     "algorithm.train_steps=2"],
])
def test_runs_on_both_paths_give_the_same_numbers(tmp_path: Path, extra: List[str]) -> None:
    """Training, validation and the final evaluation take the chosen path (recorded as
    results["path"]) and give the per-task numbers up to float rounding."""
    per_task = run(tmp_path, "per-task", "algorithm.path=per-task", *extra).results
    auto = run(tmp_path, "auto", *extra).results
    assert (per_task["path"], auto["path"]) == ("per-task", "batched")
    written = json.loads((tmp_path / "auto" / "results.json").read_text())
    assert written["path"] == "batched"
    for want, got in zip(per_task["evaluation"]["per_task"]["loss_by_step"],
                         auto["evaluation"]["per_task"]["loss_by_step"], strict=True):
        torch.testing.assert_close(torch.tensor(got), torch.tensor(want), rtol=1e-5, atol=1e-7)
    assert auto["final_train_loss"] == pytest.approx(per_task["final_train_loss"], rel=1e-5)
    validation = [validation_losses(tmp_path / name) for name in ("per-task", "auto")]
    assert len(validation[0]) == 2
    assert validation[1] == pytest.approx(validation[0], rel=1e-5)


class CountingPath:
    """A stand-in registry entry that counts the runner's calls and passes them on."""

    def __init__(self, path: Any) -> None:
        self.path, self.name, self.batches_tasks = path, path.name, path.batches_tasks
        self.refusal = path.refusal
        self.calls: List[tuple] = []

    def unsupported(self, learner: Any, device: Any, training: bool) -> Any:
        return self.path.unsupported(learner, device, training)

    def will_compile(self, *args: Any, **kwargs: Any) -> bool:
        return False

    def first_call_s(self, learner: Any, training: bool = True) -> None:
        return None

    def meta_gradient(self, learner: Any, batch: Any, steps: int, loss_fn: Any = None) -> Any:
        self.calls.append(("meta_gradient", len(batch), steps))
        return self.path.meta_gradient(learner, batch, steps, loss_fn)

    def curves(self, learner: Any, batch: Any, steps: int, loss_fn: Any = None) -> Any:
        self.calls.append(("curves", len(batch), steps))
        return self.path.curves(learner, batch, steps, loss_fn)


@pytest.mark.parametrize("name", ["batched", "per-task"])
def test_the_runner_trains_and_evaluates_through_the_registry_entry(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """Training, validation and the final evaluation all call the chosen entry of PATHS, and no
    other: swapping the entry swaps what runs."""
    from gbml_ext.fast import PATHS

    counting = {key: CountingPath(PATHS[key]) for key in PATHS}
    for key, entry in counting.items():
        monkeypatch.setitem(cast(Any, PATHS), key, entry)
    run(tmp_path, name, f"algorithm.path={name}")
    calls = counting[name].calls
    # 8 meta-batches of 3, 2 validations of 6 tasks and the final evaluation of 10 tasks.
    assert [c for c in calls if c[0] == "meta_gradient"] == [("meta_gradient", 3, 1)] * 8
    assert [c for c in calls if c[0] == "curves"] == [("curves", 6, 2)] * 2 + [("curves", 10, 2)]
    assert all(not entry.calls for key, entry in counting.items() if key != name)
