"""The `mlflow` backend: one MLflow run per (config, seed), in the experiment named by
`logging.group` (a grid's name, or the config's name), logged through `MlflowClient`.

The tracking store is `MLFLOW_TRACKING_URI` when it is set, else a SQLite store in the run
folder (`mlflow.db`, artifacts beside it in `mlflow-artifacts/`); a resumed run continues the
same MLflow run in the store it started in. For a grid in one store, point
`MLFLOW_TRACKING_URI` at one, e.g. `sqlite:///runs/cmp/mlflow.db`.
"""
from __future__ import annotations

import contextlib
import logging
import os
import time
from pathlib import Path
from typing import Any, Dict, Iterator, Mapping, Optional, Sequence

from .base import LOGGERS, TrackedRun, Tracker
from .names import hyperparameters

__all__ = ["STORE", "MLflowTracker"]

STORE = "mlflow.db"  # the default store, inside the run folder


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """MLflow's own log lines held back (its store's setup, a traceback for every failed
    call): a failure reaches the user as the runner's one warning."""
    logger = logging.getLogger("mlflow")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


@LOGGERS.register("mlflow", doc="an MLflow run per (config, seed); the experiment groups a grid")
class MLflowTracker(Tracker):
    """Metrics, the config as parameters (a new run only), tags (seed, group, run folder) and
    the figures as artifacts under `figures/`; the run ends FINISHED, or FAILED when it ended
    before its results (it is RUNNING again when resumed).

    Example:
        >>> tracker = MLflowTracker()
        >>> state = tracker.start(TrackedRun("toy", 0, Path("runs/toy/seed0"), "toy"),
        ...                       {"name": "toy"})  # doctest: +SKIP
        >>> state["run_id"]  # doctest: +SKIP
        '3f0c...'
    """

    library = "mlflow"
    extra = "mlflow"

    def __init__(self) -> None:
        self._client: Any = None
        self._run_id = ""

    @_quiet()
    def start(self, run: TrackedRun, config: Mapping[str, Any]) -> Dict[str, Any]:
        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient

        # A resumed run stays in its store; "" is the run folder's own (which may have moved).
        given = run.stored.get("tracking_uri", os.environ.get("MLFLOW_TRACKING_URI", ""))
        uri = given or f"sqlite:///{(run.run_dir / STORE).resolve()}"
        self._client = client = MlflowClient(tracking_uri=uri)
        if run.stored.get("run_id"):
            self._run_id = run.stored["run_id"]
            client.update_run(self._run_id, status="RUNNING")
            return {"tracking_uri": given, "run_id": self._run_id}
        experiment = client.get_experiment_by_name(run.group)
        if experiment is not None:
            experiment_id = experiment.experiment_id
        else:
            artifacts = None
            if uri.startswith("sqlite:///"):  # beside the store, not in the working folder
                artifacts = (Path(uri[len("sqlite:///"):]).parent / "mlflow-artifacts").as_uri()
            experiment_id = client.create_experiment(run.group, artifact_location=artifacts)
        created = client.create_run(experiment_id, run_name=run.label, tags={
            "seed": str(run.seed), "group": run.group, "run_dir": str(run.run_dir.resolve())})
        self._run_id = created.info.run_id
        params = [Param(k, str(v)[:6000]) for k, v in hyperparameters(config).items()]
        for first in range(0, len(params), 100):  # MLflow takes 100 parameters a call
            client.log_batch(self._run_id, params=params[first:first + 100])
        return {"tracking_uri": given, "run_id": self._run_id}

    @_quiet()
    def log(self, step: int, metrics: Mapping[str, float]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self._client.log_batch(self._run_id, metrics=[
            Metric(name, value, now, step) for name, value in metrics.items()])

    @_quiet()
    def images(self, step: int, figures: Sequence[Path]) -> None:
        for path in figures:
            self._client.log_artifact(self._run_id, str(path), "figures")

    @_quiet()
    def finish(self, results: Optional[Mapping[str, float]]) -> None:
        if self._client is not None and self._run_id:
            self._client.set_terminated(self._run_id,
                                        "FINISHED" if results is not None else "FAILED")
            self._client = None
