"""A saved run's config as an evaluation reads it: the run folder's config.json (or, if that is
damaged, the copy in its checkpoint), with overrides and gbml-eval's flags applied
(`read_run_config`); which settings an evaluation changed (`changed_settings`), and the
overrides it refuses because an evaluation never reads them (`refuse_unread_overrides`).
"""
from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

from .checkpoint import load_latest_checkpoint
from .compat import flatten
from .config import (
    Config,
    ConfigError,
    apply_overrides,
    check_override_keys,
    config_from_dict,
    config_to_dict,
)
from .errors import CheckpointError, DamagedFileError
from .rundir import CONFIG_FILE, stored_config

__all__ = ["NAMED_SETTINGS", "UNREAD_BY_EVALUATION", "changed_settings", "read_run_config",
           "refuse_unread_overrides", "saved_config", "saved_values"]

# The settings an evaluation's file name states as they are: split, steps and tasks.
NAMED_SETTINGS = ("evaluation.split", "algorithm.test_steps", "evaluation.tasks")
# Keys (or, ending in ".", sections) an evaluation never reads: meta-training's own settings
# (but the divergence threshold, which it checks too), and where a run writes and runs, which
# gbml-eval's --out and --device say.
UNREAD_BY_EVALUATION = ("train.", "algorithm.train_steps", "algorithm.tasks_per_chunk",
                        "output_dir", "device")
_READ_ANYWAY = ("train.explode_factor",)


def saved_config(run_dir: Path, trust: Optional[bool] = None) -> Dict[str, Any]:
    """The config a run folder holds: its config.json, or, if that file is damaged, the copy
    in its newest checkpoint (saying so; `trust` as in `checkpoint.read_checkpoint`)."""
    try:
        data = stored_config(run_dir)
    except DamagedFileError as error:
        found = load_latest_checkpoint(run_dir, trust)
        if found is None or not isinstance(found[0].get("config"), dict):
            raise
        print(f"gbml_ext: {error.path} is damaged; using the config saved in {found[1]} "
              f"instead. `gbml-train CONFIG --resume` with the run's config writes it again.",
              file=sys.stderr)
        return found[0]["config"]
    if data is None:
        raise CheckpointError(f"{run_dir} holds no gbml_ext run ({CONFIG_FILE} is missing); "
                              f"give the folder a training run wrote, e.g. runs/<name>/seed0.")
    return data


def read_run_config(run_dir: str | Path, overrides: Sequence[str] = (),
                    tasks: Optional[int] = None, steps: Optional[int] = None,
                    split: Optional[str] = None, data: Optional[Dict[str, Any]] = None) -> Config:
    """A run folder's config with `overrides` and the evaluation settings applied.

    A config error names its source: the saved config, an override, or an argument (`tasks`:
    gbml-eval's --tasks, `steps`: --steps, `split`: --split).

    Arguments:
        run_dir: the run folder.
        overrides: `key=value` changes to its saved config.
        tasks, steps, split: evaluation.tasks, algorithm.test_steps, evaluation.split (None:
            the run's).
        data: the saved config if already read (`saved_config`), else read from `run_dir`.

    Returns:
        The resulting `Config`.

    Example:
        >>> read_run_config("runs/experiment/seed0", tasks=1)  # doctest: +SKIP
        ConfigError: --tasks 1: config key 'evaluation.tasks' must be >= 2, got 1.
    """
    run_dir = Path(run_dir)
    data = saved_config(run_dir) if data is None else data
    try:
        config_from_dict(copy.deepcopy(data))
    except ConfigError as error:
        raise ConfigError(f"{error} (in {run_dir / CONFIG_FILE}, the config the run was "
                          f"trained with)") from error
    config = config_from_dict(apply_overrides(copy.deepcopy(data), overrides))
    check_override_keys(config, overrides)
    flags = {"--tasks": ("evaluation.tasks", tasks), "--steps": ("algorithm.test_steps", steps),
             "--split": ("evaluation.split", None if split is None else repr(split))}
    for flag, (key, value) in flags.items():
        if value is None:
            continue
        try:
            config = config_from_dict(apply_overrides(config_to_dict(config), [f"{key}={value}"]))
        except ConfigError as error:
            raise ConfigError(f"{flag} {value}: {error}") from error
    return config


def _before(saved: Dict[str, Any]) -> Dict[str, Any]:
    """The saved config flat, with the keys added since it was written at their defaults (as
    `read_run_config` reads it)."""
    try:
        return flatten(config_to_dict(config_from_dict(copy.deepcopy(saved))))
    except ConfigError:
        return flatten(saved)


def changed_settings(saved: Dict[str, Any], config: Config) -> Dict[str, Any]:
    """{key: value} of the settings `config` changed from the run's saved config, other than
    those an evaluation's file name already says (`NAMED_SETTINGS`).

    Example:
        >>> changed_settings({"algorithm": {"inner_lr": 0.1}},
        ...                  config_from_dict({"algorithm": {"inner_lr": 0.05}}))
        {'algorithm.inner_lr': 0.05}
    """
    before, after = _before(saved), flatten(config_to_dict(config))
    return {key: after[key] for key in sorted(after)
            if key not in NAMED_SETTINGS and before.get(key) != after[key]}


def saved_values(saved: Dict[str, Any], keys: Sequence[str]) -> Dict[str, Any]:
    """{key: the run's own value} of `keys` in the saved config."""
    before = _before(saved)
    return {key: before.get(key) for key in keys}


def refuse_unread_overrides(saved: Dict[str, Any], config: Config) -> None:
    """Refuses changes to keys an evaluation never reads (`UNREAD_BY_EVALUATION`): accepted,
    they would name an evaluation after a change that changed nothing.

    Raises:
        ConfigError: naming the keys and what to do instead (--device, --out, or drop them).

    Example:
        >>> refuse_unread_overrides({}, config_from_dict({"train": {"lr": 0.5}}))
        ...                                              # doctest: +ELLIPSIS
        Traceback (most recent call last):
        gbml_ext.runner.configfile.ConfigError: train.lr=0.5 cannot change an evaluation (only ...
    """
    changed = changed_settings(saved, config)
    unread = {key: value for key, value in changed.items() if key not in _READ_ANYWAY
              and any(key == u or (u.endswith(".") and key.startswith(u))
                      for u in UNREAD_BY_EVALUATION)}
    if "device" in unread:
        raise ConfigError(f"device={unread['device']}: an evaluation runs on the device of "
                          f"--device (in Python: device=...); write --device {unread['device']}.")
    if "output_dir" in unread:
        raise ConfigError("output_dir: an evaluation is written beside the run, or under --out "
                          "DIR (in Python: out=DIR); drop output_dir=... .")
    if unread:
        words = ", ".join(f"{key}={value}" for key, value in unread.items())
        one = len(unread) == 1
        raise ConfigError(f"{words} cannot change an evaluation (only meta-training reads "
                          f"{'it' if one else 'them'}); drop {'it' if one else 'them'}. An "
                          f"evaluation reads the model, algorithm (inner_lr, test_steps, ...), "
                          f"data, evaluation and seed keys.")
