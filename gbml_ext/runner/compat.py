"""Config compatibility: how a config stored by an older version reads today, which keys
differ between two configs, and which may differ when a run resumes.

- `upgrade_stored`: keys whose default changed since a config was written are set to what
  that run used, and `[algorithm]` keys its algorithm does not read (stored before such keys
  were refused) read as their defaults, since the run never used them; `with_defaults` then
  fills keys added since with today's defaults.
- `config_differences(old, new)`: the keys whose values differ, ignoring those that never
  change the trained numbers (`FREE_KEYS`: `IMPLEMENTATION_KEYS`, the name, evaluation).
- `ALLOWED_CHANGES`: keys a user may change on purpose when resuming (`--allow-change KEY`).

A new config key goes into `schema.py`; it goes here too when it changes nothing that a run
computes (add it to `IMPLEMENTATION_KEYS` or `FREE_KEYS`), or when runs stored before it
existed behaved differently from its default (set the old behaviour in `upgrade_stored`).
"""
from __future__ import annotations

import copy
import dataclasses
from typing import Any, Dict, List, Sequence

from ..algorithms import ALGORITHMS
from .config import ConfigError, config_from_dict, config_to_dict
from .schema import AlgorithmConfig

__all__ = ["ALLOWED_CHANGES", "FREE_KEYS", "IMPLEMENTATION_KEYS", "config_differences",
           "flatten", "upgrade_stored", "with_defaults"]

# Keys that change neither a run's numbers (beyond ~1e-6 of float rounding) nor its results:
# where files go, logging, checkpointing, how each step is computed (path, threads, memory
# format, chunks of the meta-batch, the optimizer's fused kernel) and whether training.png is drawn.
IMPLEMENTATION_KEYS = ("output_dir", "data.root", "data.options.cache_dir", "train.log_every",
                       "train.checkpoint_every", "train.checkpoint_minutes", "algorithm.path",
                       "algorithm.batched", "threads", "model.channels_last", "train.plot",
                       "algorithm.tasks_per_chunk", "train.memory_budget_mb",
                       "logging.backends", "logging.group", "train.fused_optimizer")
# Keys that never change the trained numbers: the above, the name, and evaluation settings;
# and the time limit, which like train.iterations only says where training stops.
FREE_KEYS = IMPLEMENTATION_KEYS + (
    "name", "train.eval_every", "train.eval_tasks", "train.explode_factor",
    "algorithm.test_steps", "evaluation.tasks", "evaluation.split", "train.max_minutes",
    "evaluation.max_steps", "evaluation.choose_steps", "evaluation.choice_tasks")
# Keys a user may change on purpose when resuming (`--allow-change KEY`).
ALLOWED_CHANGES = ("algorithm.inner_lr", "train.lr", "device")


def flatten(data: Dict[str, Any], prefix: str = "") -> Dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}; lists and scalars are leaves."""
    flat: Dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[prefix + key] = value
    return flat


def upgrade_stored(saved: Dict[str, Any]) -> Dict[str, Any]:
    """A stored run config with the keys whose default changed since it was written set to what
    that run used: runs stored before `data.sampler` existed drew their tasks one at a time
    ("learn2learn"). An `[algorithm]` key the run's algorithm does not read
    (`AlgorithmSpec.keys_read`), stored with a value other than its default before such keys
    were refused, is set to its default: the run computed without it, and a config that gives
    it is refused today, so resuming and comparing read it as absent.

    Arguments:
        saved: a config as a run folder stores it (config.json, or a checkpoint's copy).

    Returns:
        A copy, upgraded; `saved` is left as it is.

    Example:
        >>> upgrade_stored({"data": {"source": "omniglot"}})["data"]["sampler"]
        'learn2learn'
        >>> upgrade_stored({"algorithm": {"name": "maml", "transform_psd": True}})
        {'algorithm': {'name': 'maml', 'transform_psd': False}}
    """
    saved = copy.deepcopy(saved)
    if isinstance(saved.get("data"), dict):
        saved["data"].setdefault("sampler", "learn2learn")
    if isinstance(saved.get("algorithm"), dict):
        _reset_unread(saved["algorithm"])
    return saved


def _reset_unread(section: Dict[str, Any]) -> None:
    """Sets the keys of a stored `[algorithm]` section that its algorithm does not read to
    their defaults; a section naming an algorithm no longer registered is left as it is."""
    defaults = dataclasses.asdict(AlgorithmConfig())
    name, transform = section.get("name", defaults["name"]), section.get("transform", "none")
    if not isinstance(name, str) or name not in ALGORITHMS or not isinstance(transform, str):
        return
    read = ALGORITHMS[name].keys_read(transform)
    for key in list(section):
        if key in defaults and key not in read:
            section[key] = defaults[key]


def with_defaults(saved: Dict[str, Any]) -> Dict[str, Any]:
    """A stored config with the keys added since it was written filled in with their defaults
    (after `upgrade_stored`), so that a newer gbml_ext still resumes and reuses older runs."""
    saved = upgrade_stored(saved)
    try:
        return config_to_dict(config_from_dict(copy.deepcopy(saved)))
    except ConfigError:  # a key that no longer exists: compare as stored
        return saved


def config_differences(saved: Dict[str, Any], current: Dict[str, Any],
                       ignore: Sequence[str] = FREE_KEYS) -> List[str]:
    """Sorted flat keys whose values differ between two config dicts, ignoring `ignore` and,
    since a run may be extended, `train.iterations`.

    Example:
        >>> config_differences({"train": {"lr": 1.0, "log_every": 1}},
        ...                    {"train": {"lr": 2.0, "log_every": 5}})
        ['train.lr']
    """
    saved_flat, current_flat = flatten(with_defaults(saved)), flatten(with_defaults(current))
    skip = set(ignore) | {"train.iterations"}
    return sorted(k for k in saved_flat.keys() | current_flat.keys()
                  if k not in skip and saved_flat.get(k) != current_flat.get(k))
