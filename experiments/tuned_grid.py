"""What `experiments.tuned` (the runs) and `experiments.tuned_report` (the page) share: where
the tuned rows' configs, studies and results live, and how they are named."""
from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any, Dict, List, Optional

from experiments.algorithms import CHEAPEST_FIRST
from experiments.algorithms_grid import ROWS as TABLE_ORDER
from experiments.algorithms_grid import SETTINGS

__all__ = ["BEST_FILE", "CONFIG_ROOT", "ENDED", "FIRST_RANGE_FOLDER", "HEADLINE",
           "HEADLINE_EVAL_EVERY", "HEADLINE_FACTOR", "HEADLINE_SETTING", "KEEP", "RESULTS", "ROWS",
           "RUNS", "SPACE_FILE", "STUDY_FILES", "STUDY_FOLDERS", "TRIALS", "best_config",
           "config_folder", "headline_name", "row_config", "rows", "run_name", "study_folder",
           "tune_space"]

HERE = Path(__file__).resolve().parent
CONFIG_ROOT = HERE / "configs" / "omniglot"
RESULTS = HERE / "results" / "tuned"
RUNS = Path("runs/tuned")
# Every row of the grid but l2l-maml, the reference of the MAML implementation (not an
# algorithm to tune): cheapest first.
ROWS = tuple(row for row in CHEAPEST_FIRST if row != "l2l_maml")
TRIALS = 8
# The states of a trial that has ended, as gbml-tune's trials.json writes them.
ENDED = ("complete", "pruned", "fail")
HEADLINE = ("maml", "anil", "maml_kfo", "anil_kfo")
HEADLINE_SETTING, HEADLINE_FACTOR, HEADLINE_EVAL_EVERY = "5w1s", 10, 100
KEEP = ("config.json", "results.json", "results.md", "metrics.jsonl")
# What a study keeps (gbml-tune's report files and best config; a first study, the range it
# searched), archived without its trials' run folders or its store.
SPACE_FILE = "space.json"
STUDY_FILES = ("best.toml", "trials.md", "trials.csv", "trials.json", "trials.png", SPACE_FILE)
BEST_FILE = "best.toml"
# Where a row's first study goes when its best trial fell at an edge of the range searched and
# the row is searched again over a range past that edge (`python -m experiments.tuned again`):
# `<setting>/first-range/<row>/`, beside `<setting>/studies/<row>/`, with its space.json.
FIRST_RANGE_FOLDER = "first-range"
STUDY_FOLDERS = ("studies", FIRST_RANGE_FOLDER)


def config_folder(setting: str) -> Path:
    """A setting's tuned rows, e.g. experiments/configs/omniglot/5w1s-tuned."""
    if setting not in SETTINGS:
        raise ValueError(f"unknown setting {setting!r}: use one of {', '.join(SETTINGS)}.")
    return CONFIG_ROOT / f"{setting}-tuned"


def row_config(setting: str, row: str) -> Path:
    return config_folder(setting) / f"{row}.toml"


def rows(setting: str) -> List[str]:
    """The setting's tuned rows in table order (`experiments.algorithms.ROWS`).

    Example:
        >>> rows("20w1s")[:3]
        ['maml', 'fomaml', 'anil']
    """
    return [row for row in TABLE_ORDER if row in ROWS and row_config(setting, row).is_file()]


def run_name(setting: str, row: str) -> str:
    """The name (and folder) of a tuned row's final runs: its config's `name`.

    Example:
        >>> run_name("5w1s", "maml_kfo")
        'omniglot-5w1s-tuned-maml_kfo'
    """
    return str(tomllib.loads(row_config(setting, row).read_text())["name"])


def headline_name(row: str) -> str:
    return f"omniglot-{HEADLINE_SETTING}-headline-{row}"


def study_folder(runs: Path, setting: str, row: str) -> Path:
    return runs / setting / "studies" / row


def best_config(study: Path, trials: Optional[int] = None) -> Optional[Path]:
    """The study's best config once the study has ended (`trials`, default `TRIALS`, trials
    complete, pruned or failed, as its trials.json says), else None: gbml-tune writes best.toml
    after every batch, and a final run must not start from a study half done.

    Example:
        >>> best_config(Path("runs/tuned/5w1s/studies/no-such-row")) is None
        True
    """
    trials = TRIALS if trials is None else trials
    best, table = study / BEST_FILE, study / "trials.json"
    if not best.is_file() or not table.is_file():
        return None
    data = json.loads(table.read_text())
    ended = [t for t in (data.get("trials", []) if isinstance(data, dict) else [])
             if isinstance(t, dict) and t.get("state") in ENDED]
    return best if len(ended) >= trials else None


def tune_space(setting: str, row: str) -> Dict[str, Any]:
    """The row's `[tune]` table as its file holds it (read as data, never run).

    Example:
        >>> list(tune_space("5w1s", "reptile")["space"])
        ['algorithm.inner_lr', 'train.lr']
    """
    return dict(tomllib.loads(row_config(setting, row).read_text()).get("tune", {}))
