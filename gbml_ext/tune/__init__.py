"""gbml-tune: hyperparameter search on validation tasks with Optuna, above the launchers.

A config's `[tune]` table gives the space (`space.read_setup`); the study lives in a store
next to the trials (`study.open_study`); each trial is a run folder of the runner, launched
locally or on Slurm, whose validation records feed Optuna's pruner (`trials`, `driver`); the
report is a table of the trials, a figure and best.toml (`report`). `cli.main` is the command.

Example:
    >>> from pathlib import Path
    >>> setup = read_setup("experiments/configs/synthetic/linreg_tune.toml")
    >>> setup.trials, list(setup.space)
    (8, ['algorithm.inner_lr', 'train.lr'])
    >>> study = run_study(setup, Path("runs/tune"), jobs=2)  # doctest: +SKIP
    >>> write_report(study, setup, Path("runs/tune"))        # doctest: +SKIP
"""
from .driver import run_study
from .report import best_config, write_report
from .space import TuneError, TuneSetup, read_setup

__all__ = ["TuneError", "TuneSetup", "best_config", "read_setup", "run_study",
           "write_report"]
