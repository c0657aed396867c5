"""Logging backends without their libraries: the metric names, the `logging` config keys, the
one object the runner logs through (resume without a step twice, a failing backend dropped
with one warning, rank 0 only, a missing library named with its extra), and the grid's group
that a plan gives its runs. The real TensorBoard, MLflow and wandb are in test_trackers_runs.py.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import pytest

from gbml_ext.launch import build_plan
from gbml_ext.runner import load_config, train
from gbml_ext.runner.cli import main
from gbml_ext.runner.config import ConfigError, describe_config
from gbml_ext.trackers import (
    LOGGERS,
    TRACKERS_FILE,
    RunTrackers,
    TrackedRun,
    Tracker,
    record_metrics,
    results_metrics,
)
from run_fixtures import SHALLOW, tiny6

CALLS: List[Tuple[str, Any, Any]] = []


class Recorder(Tracker):
    """Records every call; `start` returns an id that a resumed run must hand back."""

    def start(self, run: TrackedRun, config: Mapping[str, Any]) -> Dict[str, Any]:
        CALLS.append(("start", dict(run.stored), (run.label, run.group)))
        return {"run_id": run.stored.get("run_id", f"id-{len(CALLS)}")}

    def log(self, step: int, metrics: Mapping[str, float]) -> None:
        CALLS.append(("log", step, dict(metrics)))

    def images(self, step: int, figures: Sequence[Path]) -> None:
        CALLS.append(("images", step, [Path(f).name for f in figures]))

    def finish(self, results: Optional[Mapping[str, float]]) -> None:
        CALLS.append(("finish", results is not None, None))


class Flaky(Recorder):
    """Fails on its second `log`."""

    def log(self, step: int, metrics: Mapping[str, float]) -> None:
        if sum(call[0] == "log" for call in CALLS) >= 1:
            raise OSError("database is locked")
        super().log(step, metrics)


class NotInstalled(Tracker):
    library = "gbml_ext_no_such_library"
    extra = "nosuch"


@pytest.fixture
def backends():
    CALLS.clear()
    added = {"recorder": Recorder, "flaky": Flaky, "absent": NotInstalled}
    for name, entry in added.items():
        LOGGERS.register(name, entry)
    yield CALLS
    for name in added:
        LOGGERS.unregister(name)


def _logged(calls, metric: str) -> List[int]:
    return [step for kind, step, metrics in calls if kind == "log" and metric in metrics]


def test_metric_names_are_the_documented_ones() -> None:
    train = {"iteration": 3, "split": "train", "loss": 0.5, "accuracy": 0.75, "seconds": 0.2}
    assert record_metrics(train) == {"train/loss": 0.5, "train/accuracy": 0.75,
                                     "time/seconds_per_iteration": 0.2}
    validation = {"iteration": 3, "split": "validation", "loss": 0.4, "accuracy": 0.8,
                  "loss_by_step": [0.9, 0.6, 0.4], "accuracy_by_step": [0.5, 0.7, 0.8]}
    assert record_metrics(validation) == {
        "val/loss": 0.4, "val/accuracy": 0.8, "val/loss_step0": 0.9, "val/loss_step1": 0.6,
        "val/loss_step2": 0.4, "val/acc_step0": 0.5, "val/acc_step1": 0.7, "val/acc_step2": 0.8}
    results = {"split": "test", "iterations_done": 6, "train_seconds": 3.0,
               "seconds_per_iteration": 0.5, "peak_memory_mb": 12.0,
               "process_peak_memory_mb": None, "evaluation_peak_memory_mb": 1.0,
               "evaluation": {"steps": 1, "loss": {"mean": 0.3, "ci95": 0.05},
                              "accuracy": {"mean": 0.9, "ci95": 0.02},
                              "loss_by_step": [{"mean": 0.7}, {"mean": 0.3}],
                              "accuracy_by_step": [{"mean": 0.5}, {"mean": 0.9}]}}
    assert results_metrics(results) == {
        "test/loss": 0.3, "test/loss_ci95": 0.05, "test/accuracy": 0.9,
        "test/accuracy_ci95": 0.02, "test/steps": 1.0, "test/loss_step0": 0.7,
        "test/loss_step1": 0.3, "test/acc_step0": 0.5, "test/acc_step1": 0.9,
        "time/train_seconds": 3.0, "time/median_seconds_per_iteration": 0.5,
        "memory/peak_mb": 12.0, "memory/evaluation_peak_mb": 1.0}
    assert "final_val/accuracy" in results_metrics({**results, "split": "validation"})


def test_logging_backends_from_a_file_or_the_command_line(tmp_path) -> None:
    assert load_config(None, ["logging.backends=tensorboard,mlflow"]).logging.backends == [
        "tensorboard", "mlflow"]
    assert load_config(None, ['logging.backends=["wandb"]']).logging.backends == ["wandb"]
    path = tmp_path / "c.toml"
    path.write_text('[logging]\nbackends = ["mlflow"]\ngroup = "study"\n')
    assert load_config(path).logging.backends == ["mlflow"]
    assert load_config(None).logging.backends == []
    with pytest.raises(ConfigError) as error:
        load_config(None, ["logging.backends=tensorbord"])
    assert str(error.value) == ("config key 'logging.backends' has 'tensorbord'; allowed: a list "
                                "of mlflow, tensorboard, wandb, each once.")
    with pytest.raises(ConfigError, match="names one twice"):
        load_config(None, ["logging.backends=wandb,wandb"])
    assert "each of: mlflow | tensorboard | wandb" in describe_config(load_config(None))


def test_a_resumed_run_continues_its_backend_runs_without_a_step_twice(tmp_path, backends):
    config = {"name": "toy", "seed": 2, "logging": {"backends": ["recorder"], "group": "grid"}}
    history = [{"iteration": i, "split": "train", "loss": 1 / i} for i in (2, 4, 6)]
    with RunTrackers(config, tmp_path) as trackers:  # killed after iteration 6: no finish
        trackers.sync(history[:2])
        trackers.sync(history)
    assert backends[0] == ("start", {}, ("toy seed 2", "grid"))
    assert _logged(backends, "train/loss") == [2, 4, 6]
    assert backends[-1] == ("finish", False, None)
    stored = json.loads((tmp_path / TRACKERS_FILE).read_text())["recorder"]
    assert stored == {"state": {"run_id": "id-1"}, "logged": {"train": 6}}

    backends.clear()  # resumed from the checkpoint of iteration 4: 6 and 8 run again
    history = history[:2] + [{"iteration": i, "split": "train", "loss": 1 / i} for i in (6, 8)]
    history.append({"iteration": 8, "split": "validation", "loss": 0.1, "loss_by_step": [0.2]})
    results = {"iterations_done": 8, "split": "test",
               "evaluation": {"loss": {"mean": 0.1, "ci95": 0.01}}}
    (tmp_path / "training.png").write_bytes(b"png")
    with RunTrackers(config, tmp_path) as trackers:
        trackers.finish(history, results, [tmp_path / "training.png", tmp_path / "none.png"])
    assert backends[0] == ("start", {"run_id": "id-1"}, ("toy seed 2", "grid"))
    assert _logged(backends, "train/loss") == [8] and _logged(backends, "val/loss") == [8]
    assert _logged(backends, "test/loss") == [8]
    assert ("images", 8, ["training.png"]) in backends
    assert backends[-1] == ("finish", True, None)


def test_only_the_first_process_logs(tmp_path, backends) -> None:
    config = {"name": "toy", "logging": {"backends": ["recorder"]}}
    with RunTrackers(config, tmp_path, enabled=False) as trackers:
        trackers.sync([{"iteration": 1, "split": "train", "loss": 1.0}])
        trackers.finish([], {"iterations_done": 1})
    assert backends == [] and not (tmp_path / TRACKERS_FILE).exists()


def test_a_failing_backend_warns_once_and_the_run_goes_on(tmp_path, backends, capsys) -> None:
    config = tiny6(tmp_path / "run", "logging.backends=flaky,recorder", "train.eval_every=3",
                   "train.eval_tasks=4")
    result = train(config, progress=False)
    warnings = [line for line in capsys.readouterr().err.splitlines() if "logging backend" in line]
    assert warnings == ["gbml_ext: warning: the flaky logging backend failed (OSError: database "
                        "is locked); the run goes on without it, and its run folder keeps every "
                        "metric."]
    lines = [json.loads(x) for x in (tmp_path / "run/metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in lines if r["split"] == "train"] == [1, 2, 3, 4, 5, 6]
    # The recorder logged everything, once; flaky logged its first record and was dropped.
    recorder = backends[backends.index(("log", 1, {
        "train/loss": lines[0]["loss"], "time/seconds_per_iteration": lines[0]["seconds"]})) + 1:]
    assert _logged(recorder, "train/loss") == [1, 2, 3, 4, 5, 6]
    assert _logged(recorder, "val/loss_step1") == [3, 6]
    assert _logged(recorder, "test/loss") == [6]
    assert [c[:2] for c in backends if c[0] == "finish"] == [("finish", False), ("finish", True)]
    assert result.results["evaluation"]["loss"]["mean"] > 0
    kept = json.loads((tmp_path / "run" / TRACKERS_FILE).read_text())
    assert kept["flaky"]["logged"] == {"train": 1} and kept["recorder"]["logged"]["results"] == 6


def test_a_backend_without_its_library_is_one_line_naming_the_extra(tmp_path, backends,
                                                                    capsys) -> None:
    out = tmp_path / "run"
    code = main([str(SHALLOW), f"output_dir='{out}'", "logging.backends=absent", "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and not out.exists()
    assert err == ("gbml-train: error: logging.backends has 'absent', but "
                   "gbml_ext_no_such_library is not installed: pip install 'gbml_ext[nosuch]', "
                   "or remove 'absent' from logging.backends.")


def test_a_plan_groups_its_runs_by_the_comparison(tmp_path) -> None:
    other = tmp_path / "other.toml"
    other.write_text(f'extends = "{SHALLOW}"\nname = "other"\n[logging]\ngroup = "mine"\n')
    plan = build_plan([SHALLOW, other], [0, 1], out=tmp_path / "study")
    assert [run.config.logging.group for run in plan] == ["study", "study", "mine", "mine"]
    alone = build_plan([SHALLOW, other], [0])
    assert [run.config.logging.group for run in alone] == ["Shallow+other", "mine"]


def test_the_guide_lists_every_metric_name() -> None:
    """docs/watching-runs.md's table holds every name a run logs ({k} for the step)."""
    import re

    from run_fixtures import REPO

    guide = (REPO / "docs" / "watching-runs.md").read_text()
    documented = set(re.findall(r"`([a-z_]+/[a-z_0-9{}]+)`", guide))
    records = [{"split": "train", "loss": 1.0, "accuracy": 0.5, "seconds": 0.1},
               {"split": "validation", "loss": 1.0, "accuracy": 0.5, "loss_by_step": [1.0],
                "accuracy_by_step": [0.5]}]
    results = {"split": "test", "train_seconds": 1.0, "seconds_per_iteration": 0.1,
               "peak_memory_mb": 1.0, "process_peak_memory_mb": 1.0,
               "evaluation_peak_memory_mb": 1.0,
               "evaluation": {"steps": 1, "loss": {"mean": 1.0, "ci95": 0.1},
                              "accuracy": {"mean": 0.5, "ci95": 0.1},
                              "loss_by_step": [{"mean": 1.0}],
                              "accuracy_by_step": [{"mean": 0.5}]}}
    names = {name for record in records for name in record_metrics(record)}
    names |= set(results_metrics(results))
    assert {re.sub(r"_step\d+$", "_step{k}", name) for name in names} <= documented
