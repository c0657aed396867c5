"""The every-algorithm study's grid, which its runs (`experiments.algorithms`), its tables
(`experiments.algorithms_report`) and its timing (`benchmarks.algorithm_costs`) share: the
settings, the rows and their labels, and where the configs and the archived results live."""
from __future__ import annotations

from pathlib import Path
from typing import List

from gbml_ext.runner import load_config

__all__ = ["CONFIG_ROOT", "HERE", "LABELS", "RESULTS", "ROWS", "SETTINGS", "config_folder",
           "rows", "run_name"]

HERE = Path(__file__).resolve().parent
CONFIG_ROOT = HERE / "configs" / "omniglot"
SETTINGS = ("5w1s", "20w1s")
# The table's order: the ten algorithms, then the reference row.
ROWS = ("maml", "fomaml", "anil", "metasgd", "reptile", "imaml", "maml_kfo", "anil_kfo",
        "maml_linnet", "anil_linnet", "l2l_maml")
LABELS = {"maml": "MAML", "fomaml": "FOMAML", "anil": "ANIL", "metasgd": "Meta-SGD",
          "reptile": "Reptile", "imaml": "iMAML", "maml_kfo": "MAML-KFO", "anil_kfo": "ANIL-KFO",
          "maml_linnet": "MAML-LinNet", "anil_linnet": "ANIL-LinNet", "l2l_maml": "l2l-maml"}
RESULTS = HERE / "results" / "algorithms"


def config_folder(setting: str) -> Path:
    """The folder of a setting's row configs, e.g. experiments/configs/omniglot/5w1s-all."""
    if setting not in SETTINGS:
        raise ValueError(f"unknown setting {setting!r}: use one of {', '.join(SETTINGS)}.")
    return CONFIG_ROOT / f"{setting}-all"


def rows(setting: str) -> List[str]:
    """The setting's rows in table order (those with a config file)."""
    return [row for row in ROWS if (config_folder(setting) / f"{row}.toml").is_file()]


def run_name(setting: str, row: str) -> str:
    """The folder name `gbml-compare` gives a row's runs: its config's `name`, made safe."""
    return load_config(config_folder(setting) / f"{row}.toml").run_dir().parent.name
