"""One experiment runner for every experiment: configs in, results.json / tables / plots out."""
from .config import Config, ConfigError, load_config
from .evaluate import confidence_interval, evaluate
from .loop import NonFiniteLossError, RunResult, train

__all__ = ["train", "evaluate", "confidence_interval", "load_config", "Config", "ConfigError",
           "RunResult", "NonFiniteLossError"]
