"""The runner's path selection (algorithm.path) and the fast path inside whole runs."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, List

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


def test_batched_training_calls_the_batched_path(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import gbml_ext.fast as batched_module

    calls = []
    original = batched_module.batched_meta_gradient

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(len(args[1]))
        return original(*args, **kwargs)

    monkeypatch.setattr(batched_module, "batched_meta_gradient", counting)
    run(tmp_path, "batched", "algorithm.path=batched")
    assert calls == [3] * 8
    calls.clear()
    run(tmp_path, "per-task", "algorithm.path=per-task")
    assert calls == []
