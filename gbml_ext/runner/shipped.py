"""The experiment configs that ship with gbml_ext, wherever it is installed.

In a clone they are experiments/configs/; an installed wheel carries the same files as package
data in gbml_ext/configs/ (setup.py maps one onto the other). A config is named by its path
under that folder, e.g. `synthetic/linreg_shallow.toml`: `gbml-train` and `gbml-compare` take
such a name where no file of that name exists (also spelled `experiments/configs/<name>`, as
the documentation writes it), and `gbml-train --list-configs` lists them all.
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

__all__ = ["list_shipped_configs", "resolve_config_path", "shipped_configs_dir"]

_PACKAGE = Path(__file__).resolve().parents[1]
# An installed wheel's copy first, then a clone's (editable installs and PYTHONPATH checkouts).
_CANDIDATES = (_PACKAGE / "configs", _PACKAGE.parent / "experiments" / "configs")


def shipped_configs_dir() -> Optional[Path]:
    """The folder holding the shipped configs, or None if this installation has none.

    Returns:
        gbml_ext/configs/ in an installed wheel, experiments/configs/ in a clone.

    Example:
        >>> (shipped_configs_dir() / "synthetic" / "linreg_shallow.toml").is_file()
        True
    """
    return next((folder for folder in _CANDIDATES if folder.is_dir()), None)


def list_shipped_configs() -> List[str]:
    """The shipped configs' names (paths under `shipped_configs_dir()`), sorted; the
    `base.toml` files that others extend are left out.

    Returns:
        names such as "omniglot/5w1s/maml.toml"; empty if none are installed.

    Example:
        >>> "synthetic/linreg_shallow.toml" in list_shipped_configs()
        True
    """
    folder = shipped_configs_dir()
    if folder is None:
        return []
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.toml")
                  if p.name != "base.toml" and not p.stem.endswith("_base"))


def resolve_config_path(path: str | Path) -> Path:
    """`path` itself when it exists (or is absolute), else the shipped config of that name
    when there is one, else `path` unchanged (the reader then says that it does not exist).

    Arguments:
        path: a config file, or a shipped config's name such as "synthetic/logreg.toml"
            (or "experiments/configs/synthetic/logreg.toml", its path in a clone).

    Returns:
        the file to read.

    Example:
        >>> resolve_config_path("synthetic/logreg.toml").parts[-2:]
        ('synthetic', 'logreg.toml')
    """
    path = Path(path)
    folder = shipped_configs_dir()
    if path.exists() or path.is_absolute() or folder is None:
        return path
    parts = path.parts[2:] if path.parts[:2] == ("experiments", "configs") else path.parts
    shipped = folder.joinpath(*parts)
    return shipped if parts and shipped.is_file() else path
