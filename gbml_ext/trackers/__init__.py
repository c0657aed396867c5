"""Copies of a run's metrics in the tools researchers watch: TensorBoard, MLflow and Weights &
Biases, chosen with `logging.backends`; the run folder (metrics.jsonl, results.json) stays
the record.

Each backend is a `Tracker` in a module of its own, registered in `LOGGERS`, and imports its
library only when it starts (`pip install 'gbml_ext[tensorboard]'`, `[mlflow]`, `[wandb]`).
The runner logs through one `RunTrackers`; the metric names are in `gbml_ext.trackers.names`.

Example:
    >>> LOGGERS.names()
    ['mlflow', 'tensorboard', 'wandb']
"""
from . import mlflow, tensorboard, wandb  # noqa: F401  (each registers its backend)
from .base import LOGGERS, TrackedRun, Tracker, TrackerUnavailable, check_installed
from .names import hyperparameters, record_metrics, results_metrics
from .run import TRACKERS_FILE, RunTrackers

__all__ = ["LOGGERS", "TRACKERS_FILE", "RunTrackers", "TrackedRun", "Tracker",
           "TrackerUnavailable", "check_installed", "hyperparameters", "record_metrics",
           "results_metrics"]
