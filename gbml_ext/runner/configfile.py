"""Reading a config file: TOML, its `extends` chain, and a shipped config given by its name.
What it reads is plain data, checked by `gbml_ext.runner.config`; a file that cannot be read
is a `ConfigError` naming the file and the fix."""
from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Dict, Optional

from .shipped import resolve_config_path, shipped_configs_dir

__all__ = ["ConfigError", "read_config_data"]


class ConfigError(ValueError):
    """A config file or override that cannot be used; the message names the key and the fix."""


def read_config_data(path: Optional[str | Path]) -> Dict[str, Any]:
    """A config file's plain data as TOML reads it, `extends` resolved and nothing checked
    ({} for None): what `load_config` validates, and the `[tune]` table that gbml-tune reads.

    Example:
        >>> read_config_data("experiments/configs/synthetic/linreg_shallow.toml")["name"]
        'Shallow'
    """
    return _read_toml(resolve_config_path(path)) if path is not None else {}


def _shipped_hint() -> str:
    """Where the configs that ship with gbml_ext are, for a message about a missing config."""
    folder = shipped_configs_dir()
    if folder is None:
        return "give the path of a TOML config file."
    return (f"the configs shipped with gbml_ext are in {folder} (gbml-train --list-configs "
            f"lists them; give one by its name there, e.g. synthetic/linreg_shallow.toml).")


def _deep_merge(base: Dict[str, Any], update: Dict[str, Any]) -> Dict[str, Any]:
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            value = _deep_merge(merged[key], value)
        merged[key] = value
    return merged


def _read_toml(path: Path, seen: tuple = ()) -> Dict[str, Any]:
    """Reads a config; `extends = "base.toml"` (relative to the file) inherits from another."""
    if path.is_dir():
        tomls = sorted(p.name for p in path.glob("*.toml") if "base" not in p.stem) or sorted(
            p.name for p in path.glob("*.toml"))
        example = f" such as {path / tomls[0]}" if tomls else ""
        raise ConfigError(f"config {path} is a folder, not a file; give one of its TOML "
                          f"files{example}.")
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist; {_shipped_hint()}")
    if path.resolve() in seen:
        raise ConfigError(f"config file {path} extends itself through {list(map(str, seen))}.")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"config file {path} is not valid TOML: {error}") from error
    parent = data.pop("extends", None)
    if parent is None:
        return data
    if not isinstance(parent, str):
        raise ConfigError(f"config file {path}: extends must be a file name in quotes, "
                          f"got {parent!r}.")
    target = path.parent / parent
    if not target.exists():
        raise ConfigError(f"config file {path} extends {parent!r}, which does not exist "
                          f"({target}); fix its extends line.")
    base = _read_toml(target, seen + (path.resolve(),))
    return _deep_merge(base, data)
