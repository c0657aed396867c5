"""A config's `[tune]` table: the search space, the number of trials, the metric, and the
Optuna sampler and pruner that gbml-tune uses, each checked before anything runs.

    [tune]
    trials = 8
    metric = "loss"              # or "accuracy": on the validation split, after test_steps
    [tune.space]
    "algorithm.inner_lr" = { distribution = "float", low = 0.05, high = 2.0, log = true }
    "train.lr" = { distribution = "float", low = 1e-3, high = 0.1, log = true }

A key of the space is a config key (`gbml-train --print-config` lists them), its range lies
inside the schema's (`runner/schema.py`), and its distribution is one of Optuna's: `float`
(`low`, `high`, `log`, `step`), `int` (the same) or `categorical` (`choices`).
"""
from __future__ import annotations

import dataclasses
import difflib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ..runner.compat import IMPLEMENTATION_KEYS, flatten
from ..runner.config import (
    TUNE_TABLE,
    Config,
    ConfigError,
    apply_overrides,
    config_to_dict,
    is_config_key,
    load_config,
    read_config_data,
)

__all__ = ["METRICS", "PRUNERS", "SAMPLERS", "TuneError", "TuneSetup", "read_setup",
           "settings_dict", "setup_notes", "toml_value"]

# metric -> the study's direction.
METRICS = {"loss": "minimize", "accuracy": "maximize"}
# The names a [tune] table uses -> Optuna's classes (optuna.samplers / optuna.pruners).
SAMPLERS = {"tpe": "TPESampler", "random": "RandomSampler"}
PRUNERS = {"median": "MedianPruner", "percentile": "PercentilePruner",
           "successive-halving": "SuccessiveHalvingPruner", "hyperband": "HyperbandPruner",
           "threshold": "ThresholdPruner", "none": "NopPruner"}
_DISTRIBUTIONS = {"float": ("low", "high", "log", "step"), "int": ("low", "high", "log", "step"),
                  "categorical": ("choices",)}
_SETTINGS = ("trials", "metric", "sampler", "sampler_options", "pruner", "pruner_options",
             "seed", "space")
# Keys a search must not vary: what the metric is measured on, or what names the run.
_FIXED = {"seed": "tuning the seed fits the noise of one draw of tasks",
          "name": "it only names the run", "evaluation": "trials evaluate on validation tasks",
          "device": "it changes no number a run computes"}


class TuneError(ConfigError):
    """A `[tune]` table, a `--trials` or a study store that gbml-tune cannot use: the message
    names the key or file and the fix (exit 2)."""


@dataclass
class TuneSetup:
    """A config's tuning, checked: the config (`config_path` with `overrides`, its `[tune]`
    table removed), the space as Optuna distributions, and the study's settings.

    Attributes:
        config_path, overrides: the config and its `key=value` changes (none of them `tune.`).
        config: the resolved config, as `gbml-train` would run it.
        space: {config key: optuna distribution}, in the table's order.
        trials, metric, direction: how many trials; "loss" or "accuracy"; minimize or maximize.
        sampler, sampler_options, pruner, pruner_options: Optuna's, by the names above.
        seed: the sampler's seed (default: the config's seed).
    """

    config_path: str
    overrides: List[str]
    config: Config
    space: Dict[str, Any]
    trials: int = 8
    metric: str = "loss"
    direction: str = "minimize"
    sampler: str = "tpe"
    sampler_options: Dict[str, Any] = field(default_factory=dict)
    pruner: str = "median"
    pruner_options: Dict[str, Any] = field(default_factory=dict)
    seed: int = 0

    def space_json(self) -> Dict[str, Any]:
        """The space as Optuna's JSON, which a study's store keeps to recognise its space."""
        import optuna

        return {key: json.loads(optuna.distributions.distribution_to_json(d))
                for key, d in self.space.items()}


def toml_value(value: Any) -> str:
    """A value as TOML writes it, for a `key=value` override or a config file.

    Example:
        >>> [toml_value(v) for v in (0.25, 3, True, "maml", [1, 2], {"dim": 4})]
        ['0.25', '3', 'true', '"maml"', '[1, 2]', '{dim = 4}']
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_bare_key(k)} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise TuneError(f"{value!r} ({type(value).__name__}) cannot be written as a TOML value.")


def _bare_key(key: str) -> str:
    return key if key.replace("_", "").replace("-", "").isalnum() else json.dumps(key)


def _space_entries(table: Any, prefix: str = "") -> List[Tuple[str, Any]]:
    """[(flat key, spec)]: a spec is a table with a `distribution`, quoted keys
    ("algorithm.inner_lr") and nested tables (algorithm.inner_lr) alike."""
    if not isinstance(table, dict):
        raise TuneError(f"tune.space{'.' + prefix.rstrip('.') if prefix else ''} must be a table "
                        f"of key = {{distribution = ..., ...}}.")
    entries: List[Tuple[str, Any]] = []
    for key, value in table.items():
        if isinstance(value, dict) and "distribution" not in value:
            entries.extend(_space_entries(value, f"{prefix}{key}."))
        else:
            entries.append((prefix + key, value))
    return entries


def _refuse_key(key: str) -> None:
    if not is_config_key(key):
        known = list(flatten(config_to_dict(Config())))
        close = difflib.get_close_matches(key, known, n=1)
        hint = f"did you mean {close[0]}? " if close else ""
        raise TuneError(f"tune.space: {key} is not a config key; {hint}gbml-train "
                        f"--print-config lists them.")
    why = _FIXED.get(key.split(".")[0]) or _FIXED.get(key)
    if key in IMPLEMENTATION_KEYS:
        why = "it changes no number a run computes"
    if why:
        raise TuneError(f"tune.space: {key} cannot be tuned ({why}); remove it from the space.")


def _distribution(key: str, spec: Any) -> Any:
    """The Optuna distribution of one entry of the space."""
    import optuna.distributions as od

    where = f"tune.space: {key}"
    if not isinstance(spec, dict) or "distribution" not in spec:
        raise TuneError(f"{where} needs a table such as {{distribution = \"float\", low = 0.01, "
                        f"high = 1.0, log = true}}.")
    kind = spec["distribution"]
    if kind not in _DISTRIBUTIONS:
        raise TuneError(f"{where}: distribution {kind!r} is not one Optuna knows here; use "
                        f"{', '.join(_DISTRIBUTIONS)} (log = true for a log scale).")
    extra = sorted(set(spec) - {"distribution", *_DISTRIBUTIONS[kind]})
    if extra:
        raise TuneError(f"{where}: {', '.join(extra)} is not a setting of a {kind} distribution; "
                        f"it takes {', '.join(_DISTRIBUTIONS[kind])}.")
    arguments = {k: v for k, v in spec.items() if k != "distribution"}
    try:
        if kind == "categorical":
            choices = arguments.get("choices")
            if not isinstance(choices, list) or not choices:
                raise ValueError("give choices = [...], a list of one or more values")
            return od.CategoricalDistribution(choices)
        if "low" not in arguments or "high" not in arguments:
            raise ValueError("give both low and high")
        cls = od.FloatDistribution if kind == "float" else od.IntDistribution
        return cls(**arguments)
    except (TypeError, ValueError) as error:
        raise TuneError(f"{where}: {str(error).splitlines()[0].rstrip('.')}.") from None


def _inside_schema(config_path: str, overrides: Sequence[str], key: str,
                   distribution: Any) -> None:
    """Every value the distribution can take loads as a config (its bounds, or each choice)."""
    values = (distribution.choices if hasattr(distribution, "choices")
              else (distribution.low, distribution.high))
    for value in values:
        try:
            load_config(config_path, [*overrides, f"{key}={toml_value(value)}"])
        except ConfigError as error:
            raise TuneError(f"tune.space: {key} = {value!r} is outside what the config allows: "
                            f"{error}") from None


def _choice(name: str, value: Any, allowed: Dict[str, str]) -> str:
    if value not in allowed:
        raise TuneError(f"tune.{name} = {value!r}: choose one of {', '.join(allowed)}.")
    return str(value)


def _options(name: str, value: Any) -> Dict[str, Any]:
    if not isinstance(value, dict):
        raise TuneError(f"tune.{name} must be a table of the Optuna class's keyword arguments, "
                        f"e.g. {name} = {{n_startup_trials = 4}}.")
    return dict(value)


def read_setup(config_path: str | Path, overrides: Sequence[str] = (),
               trials: Optional[int] = None) -> TuneSetup:
    """Reads and checks a config's `[tune]` table.

    Arguments:
        config_path: a TOML config with a `[tune]` table.
        overrides: `key=value` changes; those of `tune.` keys change the table.
        trials: `--trials`, which takes precedence over `tune.trials`.

    Raises:
        ConfigError: the config does not load.
        TuneError: no `[tune]` table or no space, an unknown setting, a key that is not a
            config key or cannot be tuned, a distribution Optuna does not know or that Optuna
            refuses, a range outside the schema's, an unknown metric, sampler or pruner, or
            fewer than one trial.

    Example:
        >>> setup = read_setup("experiments/configs/synthetic/linreg_tune.toml")
        >>> list(setup.space), setup.metric, setup.direction
        (['algorithm.inner_lr', 'train.lr'], 'loss', 'minimize')
        >>> read_setup("experiments/configs/synthetic/linreg_tune.toml",
        ...            ["tune.trials=0"])  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        gbml_ext.tune.space.TuneError: tune.trials = 0: a study needs 1 or more trials ...
    """
    config_path = str(config_path)
    tune_words = [w for w in overrides if w.split("=", 1)[0].strip().startswith(TUNE_TABLE + ".")]
    rest = [w for w in overrides if w not in tune_words]
    config = load_config(config_path, rest)
    table = apply_overrides(read_config_data(config_path), tune_words).get(TUNE_TABLE)
    if not isinstance(table, dict) or not table.get("space"):
        raise TuneError(f"{config_path} has no [tune.space] table; add one, e.g. [tune.space] "
                        f"\"algorithm.inner_lr\" = {{distribution = \"float\", low = 0.01, "
                        f"high = 1.0, log = true}}.")
    unknown = sorted(set(table) - set(_SETTINGS))
    if unknown:
        raise TuneError(f"unknown [tune] setting(s) {', '.join(unknown)}; known: "
                        f"{', '.join(_SETTINGS)}.")
    space: Dict[str, Any] = {}
    for key, spec in _space_entries(table["space"]):
        _refuse_key(key)
        space[key] = _distribution(key, spec)
        _inside_schema(config_path, rest, key, space[key])
    count = table.get("trials", 8) if trials is None else trials
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise TuneError(f"{'--trials' if trials is not None else 'tune.trials'} = {count}: a "
                        f"study needs 1 or more trials (e.g. --trials 8).")
    metric = _choice("metric", table.get("metric", "loss"), METRICS)
    seed = table.get("seed", config.seed)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise TuneError(f"tune.seed = {seed!r}: give a whole number >= 0.")
    return TuneSetup(config_path, rest, config, space, count, metric, METRICS[metric],
                     _choice("sampler", table.get("sampler", "tpe"), SAMPLERS),
                     _options("sampler_options", table.get("sampler_options", {})),
                     _choice("pruner", table.get("pruner", "median"), PRUNERS),
                     _options("pruner_options", table.get("pruner_options", {})), seed)


def settings_dict(setup: TuneSetup) -> Dict[str, Any]:
    """The settings a study is recognised by, as plain data (the space as Optuna's JSON)."""
    data = {f.name: getattr(setup, f.name) for f in dataclasses.fields(setup)
            if f.name not in ("config_path", "overrides", "config", "space", "trials")}
    return {**data, "space": setup.space_json()}


def setup_notes(setup: TuneSetup) -> List[str]:
    """What a user should know before a study starts: a pruner without a validation curve to
    read (`train.eval_every = 0`).

    Example:
        >>> setup = read_setup("experiments/configs/synthetic/linreg_tune.toml",
        ...                    ["train.eval_every=0"])
        >>> setup_notes(setup)  # doctest: +ELLIPSIS
        ['train.eval_every = 0: the trials log no validation curve, so none is pruned ...']
    """
    if not setup.config.train.eval_every and setup.pruner != "none":
        return ["train.eval_every = 0: the trials log no validation curve, so none is pruned "
                "(set train.eval_every=N to prune)"]
    return []
