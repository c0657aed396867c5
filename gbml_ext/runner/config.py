"""Experiment configs: plain TOML files, one per table row, overridable from the command line.

A config file holds only what differs from the defaults below. Every key is checked: an unknown
key or a value of the wrong type or outside its allowed set is a `ConfigError` that names the
key and lists what is allowed.

Every numeric key has a valid range (`describe_config` lists them; `gbml-train --print-config`
prints them), so nonsense such as `inner_lr=inf` or `shots=0` is refused before anything runs.

An `[algorithm]` key the chosen algorithm does not read (`AlgorithmSpec.keys_read`: iMAML's
`imaml_lam` for MAML, a transform's keys without a transform) is refused, naming the algorithm
and the keys it reads: by `load_config` when the file, a file it extends or an override gives
it at all, by `config_from_dict` (a complete config such as a run's config.json, where every
key is present) when its value is not the default.

Example (experiments/configs/omniglot/5w1s/maml.toml, which extends base.toml files):

    extends = "base.toml"
    name = "omniglot-5w1s-maml"
    [algorithm]
    name = "maml"

and from the command line:
`gbml-train experiments/configs/omniglot/5w1s/maml.toml train.iterations=100`.
"""
from __future__ import annotations

import dataclasses
import math
import tomllib
from pathlib import Path
from typing import Any, Collection, Dict, List, Optional, Sequence

from ..algorithms import ALGORITHMS
from ..data.synthetic import SYNTHETIC_SOURCES
from ..optim import TRANSFORMS
from .configfile import ConfigError, read_config_data
from .schema import AlgorithmConfig, Config, range_text

__all__ = ["TUNE_TABLE", "Config", "ConfigError", "apply_overrides", "check_override_keys",
           "config_from_dict", "config_to_dict", "describe_config", "is_config_key", "load_config",
           "read_config_data"]

# A config's search space for gbml-tune (`gbml_ext.tune`); every other command ignores it.
TUNE_TABLE = "tune"

def _check_value(path: str, f: dataclasses.Field, value: Any) -> Any:
    expected = f.type if isinstance(f.type, str) else f.type.__name__
    base = expected.split("[")[0]
    items = f.metadata.get("items")
    if items is not None and isinstance(value, str):  # key=a,b on the command line
        value = [word.strip() for word in value.split(",") if word.strip()]
    ok = {
        "int": isinstance(value, int) and not isinstance(value, bool),
        "float": isinstance(value, (int, float)) and not isinstance(value, bool),
        "bool": isinstance(value, bool),
        "str": isinstance(value, str),
        "Dict": isinstance(value, dict),
        "List": isinstance(value, list),
    }.get(base, True)
    if not ok:
        raise ConfigError(f"config key '{path}' must be {expected}, got {value!r} "
                          f"({type(value).__name__}).")
    if base == "float":
        value = float(value)
    if items is not None:
        unknown = [item for item in value if item not in items]
        if unknown or len(set(value)) < len(value):
            problem = f"has {unknown[0]!r}" if unknown else "names one twice"
            raise ConfigError(f"config key '{path}' {problem}; allowed: a list of "
                              f"{', '.join(items)}, each once.")
    choices = f.metadata.get("choices")
    if choices and value not in choices:
        raise ConfigError(f"config key '{path}' is {value!r}; allowed: {', '.join(choices)}.")
    spec = f.metadata.get("range")
    if spec is not None:
        low, high, low_open = spec
        inside = (math.isfinite(value)
                  and (low is None or value > low or (value == low and not low_open))
                  and (high is None or value <= high))
        if not inside:
            finite = " and finite" if base == "float" else ""
            raise ConfigError(f"config key '{path}' must be {range_text(spec)}{finite}, "
                              f"got {value!r}.")
    return value


def _build(cls: Any, data: Dict[str, Any], prefix: str = "") -> Any:
    """An instance of the config dataclass `cls` from `data`, every key checked."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        where = f"section [{prefix.rstrip('.')}]" if prefix else "the top level"
        raise ConfigError(f"unknown config key(s) {[prefix + k for k in unknown]} in {where}; "
                          f"known keys there: {', '.join(sorted(fields))}.")
    kwargs = {}
    for name, value in data.items():
        f = fields[name]
        factory = f.default_factory if f.default_factory is not dataclasses.MISSING else None
        if dataclasses.is_dataclass(factory):
            if not isinstance(value, dict):
                raise ConfigError(f"config key '{prefix}{name}' is a section; "
                                  f"write [{prefix}{name}].")
            kwargs[name] = _build(f.default_factory, value, f"{prefix}{name}.")
        else:
            kwargs[name] = _check_value(prefix + name, f, value)
    return cls(**kwargs)


def config_from_dict(data: Dict[str, Any]) -> Config:
    """Builds and validates a `Config` from nested plain data (as read from TOML).

    An `[algorithm]` key the algorithm does not read is refused when its value is not the
    default (`data` may be a complete config, which holds every key).

    Arguments:
        data: {section: {key: value}} and top-level keys; keys left out take their defaults.

    Returns:
        The checked `Config`.

    Example:
        >>> config_from_dict({"algorithm": {"name": "imaml", "imaml_lam": 2.0}}).algorithm.imaml_lam
        2.0
    """
    return _from_dict(data, strict=False)


def _from_dict(data: Dict[str, Any], strict: bool) -> Config:
    """`config_from_dict`; with `strict`, every `[algorithm]` key `data` gives counts as set."""
    config = _build(Config, data)
    _check_consistency(config)
    section = data.get("algorithm", {})
    defaults = AlgorithmConfig()
    given = [key for key in section
             if strict or getattr(config.algorithm, key) != getattr(defaults, key)]
    _check_algorithm_keys(config.algorithm, given)
    return config


def check_override_keys(config: Config, overrides: Sequence[str]) -> None:
    """Refuses an `algorithm.KEY=value` override whose key `config`'s algorithm does not read,
    even when the value is the default (a complete stored config is checked leniently, but a
    key someone typed is meant to do something).

    Example:
        >>> try:
        ...     check_override_keys(load_config(None), ["algorithm.imaml_lam=1.0"])
        ... except ConfigError as error:
        ...     print(str(error).split(";")[0])
        maml does not read algorithm.imaml_lam
    """
    given = [key.split("=", 1)[0].strip().split(".", 1)[1] for key in overrides
             if key.split("=", 1)[0].strip().startswith("algorithm.")]
    _check_algorithm_keys(config.algorithm, [key for key in given if "." not in key])


def _check_algorithm_keys(section: AlgorithmConfig, given: Collection[str]) -> None:
    """Refuses the keys of `given` that the algorithm of `section` does not read."""
    spec = ALGORITHMS[section.name]
    read = spec.keys_read(section.transform)
    unread = sorted(key for key in given if key not in read)
    if not unread:
        return
    hint = ""
    transforms = [name for name in TRANSFORMS.names() if name != "none"]
    if section.transform == "none" and transforms:
        later = [key for key in unread if key in spec.keys_read(transforms[0])]
        if later:
            hint = (f" ({', '.join(later)} only with a transform: algorithm.transform = "
                    f"{' | '.join(transforms)})")
    raise ConfigError(f"{section.name} does not read "
                      f"{', '.join(f'algorithm.{key}' for key in unread)}; remove "
                      f"{'it' if len(unread) == 1 else 'them'}. The [algorithm] keys "
                      f"{section.name} reads: "
                      f"{', '.join(f'algorithm.{key}' for key in read)}{hint}.")


def config_to_dict(config: Config) -> Dict[str, Any]:
    return dataclasses.asdict(config)


def describe_config(config: Config) -> str:
    """The resolved config as TOML-like lines, each key with its type and allowed values.

    Example:
        >>> print(describe_config(load_config(None)).splitlines()[1])
        name = 'experiment'  # str
    """
    lines: List[str] = []

    def walk(obj: Any, prefix: str) -> None:
        fields = dataclasses.fields(obj)
        scalars = [f for f in fields if not dataclasses.is_dataclass(getattr(obj, f.name))]
        sections = [f for f in fields if dataclasses.is_dataclass(getattr(obj, f.name))]
        lines.append(f"[{prefix.rstrip('.')}]" if prefix else "# top level")
        for f in scalars:
            kind = f.type if isinstance(f.type, str) else f.type.__name__
            allowed = ""
            if "choices" in f.metadata:
                allowed = ", one of: " + " | ".join(map(str, f.metadata["choices"]))
            elif "items" in f.metadata:
                allowed = ", each of: " + " | ".join(map(str, f.metadata["items"]))
            elif "range" in f.metadata:
                allowed = ", " + range_text(f.metadata["range"])
            lines.append(f"{f.name} = {getattr(obj, f.name)!r}  # {kind}{allowed}")
        for f in sections:
            walk(getattr(obj, f.name), f"{prefix}{f.name}.")

    walk(config, "")
    return "\n".join(lines) + "\n"


def _check_consistency(config: Config) -> None:
    """Refuses combinations of valid values that cannot run together."""
    source = SYNTHETIC_SOURCES.get(config.data.source)  # a synthetic task has its own classes
    classes = config.data.ways if source is None else source.classes
    if classes is not None and classes < 2:
        what = f"data.ways = {classes}" if source is None else f"{config.data.source!r}"
        raise ConfigError(f"{what}: a task of one class is classified 100% right whatever the "
                          f"model learns; use data.ways >= 2.")
    spec = ALGORITHMS[config.algorithm.name]
    if not config.model.linnet_adapt_hidden and not spec.takes_transform:
        takers = [name for name, entry in ALGORITHMS.items() if entry.takes_transform]
        raise ConfigError(f"model.linnet_adapt_hidden = false works with {', '.join(takers)} "
                          f"only, not {config.algorithm.name!r}.")
    if not config.model.linnet_adapt_hidden and config.algorithm.transform != "none":
        raise ConfigError("model.linnet_adapt_hidden = false cannot be combined with a transform; "
                          "set algorithm.transform = 'none'.")
    if config.algorithm.transform != "none" and not spec.takes_transform:
        raise ConfigError(spec.no_transform)


def is_config_key(key: str) -> bool:
    """Whether `key` names a config key: a dotted path through the sections to a key, or
    inside a table key such as `data.options` (whose own keys the source checks).

    Example:
        >>> is_config_key("train.lr"), is_config_key("data.options.dim"), is_config_key("runs/a")
        (True, True, False)
    """
    node: Any = Config
    for part in key.strip().split("."):
        if not dataclasses.is_dataclass(node):
            return False
        fields = {f.name: f for f in dataclasses.fields(node)}
        if part not in fields:
            return False
        f = fields[part]
        factory = f.default_factory if f.default_factory is not dataclasses.MISSING else None
        if dataclasses.is_dataclass(factory):
            node = factory
        elif str(f.type).startswith("Dict"):
            return True
        else:
            node = None
    return not dataclasses.is_dataclass(node)


def _parse_override_value(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text  # a bare word such as `algorithm.name=anil` is a string


def apply_overrides(data: Dict[str, Any], overrides: Sequence[str]) -> Dict[str, Any]:
    """Applies `section.key=value` overrides (values in TOML syntax; bare words are strings)."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form section.key=value "
                              f"(for example train.iterations=200).")
        key, text = item.split("=", 1)
        node = data
        *parents, leaf = key.strip().split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: '{part}' is not a section.")
        node[leaf] = _parse_override_value(text.strip())
    return data


def load_config(path: Optional[str | Path] = None, overrides: Sequence[str] = ()) -> Config:
    """Reads a TOML config (or starts from the defaults), applies overrides, validates. A
    `[tune]` table (gbml-tune's search space) is ignored here.

    Example:
        >>> load_config(None, ["algorithm.name=anil", "train.iterations=5"]).algorithm.name
        'anil'
    """
    data = apply_overrides(read_config_data(path), overrides)
    data.pop(TUNE_TABLE, None)
    return _from_dict(data, strict=True)
