"""The logging backends for real, each read back with its own tool: TensorBoard's event files
with tensorboard's EventAccumulator, MLflow's SQLite store with MlflowClient, wandb's offline
run files (nothing leaves the machine: WANDB_MODE=offline). A run killed outright and resumed
is one series in each, without a step twice; a store locked mid-run costs one warning.
"""
from __future__ import annotations

import json
import os
import sqlite3
import struct
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping

import pytest

from gbml_ext.runner import load_config, train
from gbml_ext.trackers import LOGGERS, TRACKERS_FILE, Tracker

# Outside CI a backend's missing library skips these tests; CI installs every extra.
if os.environ.get("CI", "").lower() != "true":
    for _library in ("tensorboard", "mlflow", "wandb"):
        pytest.importorskip(_library)

REPO = Path(__file__).resolve().parents[1]
LOGREG = ["data.source=logistic-regression", "data.options={dim=4, n_support=8, n_query=16}",
          "train.meta_batch=2", "train.lr=0.01", "train.log_every=1", "evaluation.tasks=4",
          "algorithm.test_steps=1", "train.eval_tasks=4", "device=cpu", "name=tracked"]


@pytest.fixture(autouse=True)
def offline_wandb(tmp_path, monkeypatch):
    """wandb offline, its own files in the test's folder; no MLflow store from outside."""
    for key, value in {"WANDB_MODE": "offline", "WANDB_SILENT": "true",
                       "WANDB_CONFIG_DIR": tmp_path / "wandb-config",
                       "WANDB_CACHE_DIR": tmp_path / "wandb-cache",
                       "WANDB_DATA_DIR": tmp_path / "wandb-data"}.items():
        monkeypatch.setenv(key, str(value))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("WANDB_PROJECT", raising=False)


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    """One SQLite MLflow store for the tests that name theirs (creating one takes seconds)."""
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


def tensorboard_scalars(log_dir: Path) -> Any:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    return events


def wandb_records(run_dir: Path) -> Iterator[Any]:
    """Every record of the run's offline wandb files, oldest file first (the files are a
    LevelDB-style log of protobuf records: 32 KiB blocks, each record a 7-byte header)."""
    from wandb.proto import wandb_internal_pb2

    for path in sorted(run_dir.glob("wandb/offline-run-*/run-*.wandb")):
        data, pos, parts = path.read_bytes(), 7, b""
        assert data[:4] == b":W&B"
        while pos + 7 <= len(data):
            left = 32768 - pos % 32768
            _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
            if left < 7 or (length == 0 and kind == 0):
                pos += left
                continue
            parts += data[pos + 7:pos + 7 + length]
            pos += 7 + length
            if kind in (1, 4):  # a full record, or the last piece of one
                record = wandb_internal_pb2.Record()
                record.ParseFromString(parts)
                parts = b""
                yield record


def wandb_history(run_dir: Path) -> List[Dict[str, Any]]:
    return [{"/".join(item.nested_key) or item.key: json.loads(item.value_json)
             for item in record.history.item}
            for record in wandb_records(run_dir) if record.WhichOneof("record_type") == "history"]


def _series(rows: List[Dict[str, Any]], name: str) -> Dict[int, float]:
    steps = [row["_step"] for row in rows if name in row]
    assert len(steps) == len(set(steps)), f"{name}: a step twice in {steps}"
    return {row["_step"]: row[name] for row in rows if name in row}


def _jsonl(run_dir: Path, split: str, key: str = "loss") -> Dict[int, float]:
    lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {r["iteration"]: r[key] for r in lines if r["split"] == split}


def _mlflow_run(uri: str, experiment: str) -> Any:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    assert len(runs) == 1, "one MLflow run per (config, seed), resumed or not"
    return client, runs[0]


def _mlflow_series(client: Any, run_id: str, name: str) -> Dict[int, float]:
    history = client.get_metric_history(run_id, name)
    steps = [m.step for m in history]
    assert len(steps) == len(set(steps)), f"{name}: a step twice in {steps}"
    return {m.step: m.value for m in history}


@pytest.mark.slow
def test_a_run_logs_the_same_metrics_to_tensorboard_mlflow_and_wandb(tmp_path) -> None:
    run_dir = tmp_path / "run"
    config = load_config(None, LOGREG + [f"output_dir='{run_dir}'", "train.iterations=4",
                                         "train.eval_every=2", "evaluation.max_steps=2",
                                         "logging.backends=tensorboard,mlflow,wandb"])
    result = train(config, progress=False)
    train_loss, val_acc = _jsonl(run_dir, "train"), _jsonl(run_dir, "validation", "accuracy")
    test = result.results["evaluation"]
    assert list(train_loss) == [1, 2, 3, 4] and list(val_acc) == [2, 4]

    events = tensorboard_scalars(run_dir / "tensorboard")
    scalars = {tag: {e.step: e.value for e in events.Scalars(tag)}
               for tag in events.Tags()["scalars"]}
    assert scalars["train/loss"] == pytest.approx(train_loss)
    assert scalars["val/accuracy"] == pytest.approx(val_acc)
    assert set(scalars["val/acc_step2"]) == {2, 4}
    assert scalars["test/accuracy"] == pytest.approx({4: test["accuracy"]["mean"]})
    assert scalars["test/accuracy_ci95"] == pytest.approx({4: test["accuracy"]["ci95"]})
    assert "memory/peak_mb" in scalars and "time/seconds_per_iteration" in scalars
    assert events.Tags()["images"] == ["figures/training"]

    client, run = _mlflow_run(f"sqlite:///{run_dir / 'mlflow.db'}", "tracked")
    assert run.info.status == "FINISHED" and run.info.run_name == "tracked seed 0"
    assert run.data.params["train.lr"] == "0.01" and run.data.params["seed"] == "0"
    assert _mlflow_series(client, run.info.run_id, "train/loss") == pytest.approx(train_loss)
    assert run.data.metrics["test/accuracy"] == pytest.approx(test["accuracy"]["mean"])
    assert [a.path for a in client.list_artifacts(run.info.run_id, "figures")] == [
        "figures/training.png"]

    rows = wandb_history(run_dir)
    assert _series(rows, "train/loss") == pytest.approx(train_loss)
    assert _series(rows, "val/accuracy") == pytest.approx(val_acc)
    assert _series(rows, "test/accuracy") == pytest.approx({4: test["accuracy"]["mean"]})
    header = next(r.run for r in wandb_records(run_dir) if r.WhichOneof("record_type") == "run")
    config_items = {item.key: json.loads(item.value_json) for item in header.config.update}
    assert (header.run_group, header.display_name) == ("tracked", "tracked seed 0")
    assert config_items["train"]["lr"] == 0.01
    summary = {"/".join(i.nested_key) or i.key: i.value_json for r in wandb_records(run_dir)
               if r.WhichOneof("record_type") == "summary" for i in r.summary.update}
    assert json.loads(summary["test/accuracy"]) == pytest.approx(test["accuracy"]["mean"])


# Kills its own process (SIGKILL: nothing is closed or flushed) during meta-iteration 7.
_KILLED_AT_7 = textwrap.dedent("""
    import os, signal, sys
    from gbml_ext.runner import loop, train
    check = loop.check_meta_loss
    def check_or_die(loss, iteration, *args):
        if iteration == 7:
            os.kill(os.getpid(), signal.SIGKILL)
        return check(loss, iteration, *args)
    loop.check_meta_loss = check_or_die
    train(None, sys.argv[1:], progress=False)
""")


@pytest.mark.slow
def test_a_killed_run_resumes_as_one_series_in_each_backend(tmp_path, store, monkeypatch):
    run_dir = tmp_path / "run"
    overrides = LOGREG + [f"output_dir='{run_dir}'", "train.iterations=10", "train.eval_every=5",
                          "train.checkpoint_every=4", "train.checkpoint_minutes=0",
                          "logging.backends=tensorboard,mlflow,wandb", "logging.group=killed"]
    env = {key: value for key, value in os.environ.items()
           if key != "WANDB_SERVICE"}  # its own wandb service, which dies with it
    killed = subprocess.run([sys.executable, "-c", _KILLED_AT_7, *overrides], cwd=REPO,
                            env={**env, "MLFLOW_TRACKING_URI": store, "PYTHONPATH": str(REPO)},
                            capture_output=True, text=True, timeout=600)
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert json.loads((run_dir / TRACKERS_FILE).read_text())["mlflow"]["logged"] == {
        "train": 6, "validation": 5}
    # Resumed from iteration 4's checkpoint, without the variable: the run keeps its store.
    train(load_config(None, overrides), resume=True, progress=False)
    train_loss = _jsonl(run_dir, "train")
    assert list(train_loss) == list(range(1, 11))

    events = tensorboard_scalars(run_dir / "tensorboard")
    assert [e.step for e in events.Scalars("train/loss")] == list(range(1, 11))
    assert [e.step for e in events.Scalars("val/loss")] == [5, 10]
    later = {e.step: e.value for e in events.Scalars("train/loss") if e.step > 6}
    assert later == pytest.approx({k: v for k, v in train_loss.items() if k > 6})

    client, run = _mlflow_run(store, "killed")
    assert run.info.status == "FINISHED"
    assert sorted(_mlflow_series(client, run.info.run_id, "train/loss")) == list(range(1, 11))
    assert sorted(_mlflow_series(client, run.info.run_id, "val/loss")) == [5, 10]

    rows = wandb_history(run_dir)
    assert len(list(run_dir.glob("wandb/offline-run-*"))) == 2  # the killed and the resumed
    ids = {r.run.run_id for r in wandb_records(run_dir) if r.WhichOneof("record_type") == "run"}
    assert len(ids) == 1
    assert sorted(_series(rows, "train/loss")) == list(range(1, 11))
    assert sorted(_series(rows, "val/loss")) == [5, 10]


LOCKS: List[sqlite3.Connection] = []


class Locker(Tracker):
    """Locks the MLflow store (an exclusive SQLite transaction) at step 3, as another writer
    holding it would."""

    def log(self, step: int, metrics: Mapping[str, float]) -> None:
        if step == 3 and not LOCKS:
            path = os.environ["MLFLOW_TRACKING_URI"][len("sqlite:///"):]
            LOCKS.append(sqlite3.connect(path, isolation_level=None, timeout=30))
            LOCKS[0].execute("BEGIN EXCLUSIVE")


@pytest.mark.slow
def test_a_store_locked_mid_run_costs_one_warning(tmp_path, store, monkeypatch, capsys):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    LOGGERS.register("locker", Locker)
    run_dir = tmp_path / "run"
    try:
        result = train(load_config(None, LOGREG + [
            f"output_dir='{run_dir}'", "train.iterations=5", "logging.group=locked",
            "logging.backends=locker,mlflow,tensorboard"]), progress=False)
    finally:
        LOGGERS.unregister("locker")
        for lock in LOCKS:
            lock.rollback()
            lock.close()
        LOCKS.clear()
    err = capsys.readouterr().err
    warnings = [line for line in err.splitlines() if "backend" in line]
    assert len(warnings) == 1 and "the mlflow logging backend failed (" in warnings[0]
    assert "database is locked" in warnings[0] and "Traceback" not in err
    assert result.results["iterations_done"] == 5 and (run_dir / "results.json").is_file()
    assert list(_jsonl(run_dir, "train")) == [1, 2, 3, 4, 5]
    events = tensorboard_scalars(run_dir / "tensorboard")
    assert [e.step for e in events.Scalars("train/loss")] == [1, 2, 3, 4, 5]
    client, run = _mlflow_run(store, "locked")
    assert sorted(_mlflow_series(client, run.info.run_id, "train/loss")) == [1, 2]
