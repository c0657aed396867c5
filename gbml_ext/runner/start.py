"""How a run starts, before its first meta-iteration: the request checked, the device picked,
the other processes joined (`join_run`); the run folder claimed, the run built or restored from
its checkpoint, and its config recorded (`start_run`)."""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from ..fileio import atomic_write_json
from .build import precision_warning
from .compat import ALLOWED_CHANGES
from .config import Config, config_to_dict
from .distributed import DistributedContext, broadcast_parameters, init_distributed
from .errors import RunFolderError
from .report import write_metrics
from .rundir import CONFIG_FILE, claim_folder, refuse_shortening
from .seeds import process_seed
from .state import TrainingState, build_run, resolve_device, restore_state, seed_everything

__all__ = ["RunContext", "join_run", "start_run"]


@dataclass
class RunContext:
    """What every step of one run reads: its config, device, processes, folder and whether to
    show progress bars.

    Example:
        >>> from gbml_ext.runner.config import load_config
        >>> join_run(load_config(None), (), progress=False).dist.world_size
        1
    """

    config: Config
    device: torch.device
    dist: DistributedContext
    run_dir: Path
    progress: bool


def join_run(config: Config, allow_change: Sequence[str], progress: bool) -> RunContext:
    """Checks the request, picks the device and joins the other processes of a distributed
    run (one GPU per process on each node).

    Raises:
        RunFolderError: a key in `allow_change` that may not change, or a meta-batch that the
            processes cannot share equally.
    """
    bad = sorted(set(allow_change) - set(ALLOWED_CHANGES))
    if bad:
        raise RunFolderError(f"--allow-change {' '.join(bad)}: only {', '.join(ALLOWED_CHANGES)} "
                             f"may change on resume.")
    device = resolve_device(config.device)
    warning = precision_warning(config)
    if warning is not None:
        print(f"gbml_ext: warning: {warning}", file=sys.stderr)
    dist = init_distributed(device)
    if dist.enabled and device.type == "cuda":
        device = torch.device("cuda", dist.local_rank)
        torch.cuda.set_device(device)
    if dist.enabled and config.train.meta_batch % dist.world_size:
        raise RunFolderError(f"train.meta_batch={config.train.meta_batch} must be divisible by "
                             f"the {dist.world_size} processes.")
    return RunContext(config, device, dist, config.run_dir(), progress)


def start_run(run: RunContext, resume: bool, overwrite: bool,
              allow_change: Sequence[str]) -> TrainingState:
    """Claims the run folder (`rundir.claim_folder`), builds the run, restores its checkpoint
    when resuming, and (rank 0) records the config and the history so far."""
    config, dist = run.config, run.dist
    checkpoint = claim_folder(run.run_dir, resume, overwrite, dist.is_main)
    refuse_shortening(checkpoint, config.train.iterations, run.run_dir)
    state = build_run(config, run.device, dist.rank)
    if dist.enabled:
        broadcast_parameters(state.algorithm)
    # Each rank draws its own stream of training tasks from the global generators too.
    seed_everything(process_seed(config.seed, dist.rank))
    if checkpoint is not None:
        restore_state(state, checkpoint, config, allow_change)
    if dist.is_main:
        atomic_write_json(run.run_dir / CONFIG_FILE, config_to_dict(config))
        write_metrics(run.run_dir, state.history)
    return state
