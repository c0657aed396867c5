"""A run that reaches a limit of its machine: memory that ran out (`out_of_memory`), worded
with the size asked for, the keys that set it and advice that works."""
from __future__ import annotations

import torch

from .config import Config
from .errors import OutOfMemory

__all__ = ["out_of_memory"]


def out_of_memory(error: BaseException, config: Config, device: torch.device, stage: str,
                  last_checkpoint: int) -> OutOfMemory:
    """The one-line error for memory that ran out during `stage` ("meta-training" or "the final
    evaluation"): which memory, at which settings, what to lower, and the checkpoint kept.

    Example:
        >>> from gbml_ext.runner.config import load_config
        >>> str(out_of_memory(MemoryError(), load_config(None), torch.device("cpu"),
        ...                   "meta-training", 0))[:57]
        'out of CPU memory in meta-training at train.meta_batch=16'
    """
    what = "GPU" if isinstance(error, torch.OutOfMemoryError) or device.type == "cuda" else "CPU"
    data, algorithm = config.data, config.algorithm
    at = (f"train.meta_batch={config.train.meta_batch}, model.name={config.model.name}, "
          f"data.ways={data.ways}, data.shots={data.shots}, data.queries={data.queries}")
    if stage == "meta-training":
        at += f", algorithm.train_steps={algorithm.train_steps}"
        fix = ("lower train.meta_batch, or set algorithm.tasks_per_chunk (e.g. "
               f"{max(1, config.train.meta_batch // 4)}) or train.memory_budget_mb")
    else:
        at = f"algorithm.test_steps={algorithm.test_steps}, model.name={config.model.name}"
        fix = "lower algorithm.test_steps (gbml-eval RUN_DIR --steps K re-evaluates a trained run)"
        if device.type == "cuda":
            fix += ", or evaluate on the CPU with gbml-eval RUN_DIR --device cpu"
    kept = (f"the checkpoint of iteration {last_checkpoint} is kept; continue with the same "
            f"command, the change and --resume" if last_checkpoint
            else "no checkpoint was written yet; start again with the change and --overwrite")
    return OutOfMemory(f"out of {what} memory in {stage} at {at}: {fix}; {kept}.")

