"""One experiment runner for every experiment: configs in, results.json / tables / plots out."""
from .checkpoint import UnsafeCheckpoint, trust_checkpoints
from .config import Config, ConfigError, load_config
from .errors import (
    CheckpointError,
    DeviceError,
    NonFiniteLossError,
    RunError,
    RunFolderError,
    RunInterrupted,
)
from .evaluate import confidence_interval, evaluate
from .loop import RunResult, train
from .saved import LoadedRun, load_run, reevaluate

__all__ = ["CheckpointError", "Config", "ConfigError", "DeviceError", "LoadedRun",
           "NonFiniteLossError", "RunError", "RunFolderError", "RunInterrupted", "RunResult",
           "UnsafeCheckpoint", "confidence_interval", "evaluate", "load_config", "load_run",
           "reevaluate", "train", "trust_checkpoints"]
