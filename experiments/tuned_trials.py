"""The tuned grid's trials: a figure of each row's validation accuracy against its inner rate,
with the search range's edges marked, so a row whose best trial sits at an edge (a range that
may be too narrow for it) is visible at a glance; the trials table's lines; and the first
studies of rows searched again over a wider range (`FIRST_RANGE_FOLDER`), with the range each
searched. Drawn from the archived trials.json and space.json only.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Dict, List, NamedTuple, Optional, Tuple

from experiments.algorithms_grid import LABELS
from experiments.algorithms_report import TITLES
from experiments.tuned_grid import FIRST_RANGE_FOLDER, SPACE_FILE, rows, tune_space
from gbml_ext.runner.plots import plain_log_axis, pyplot, save_figure
from gbml_ext.tune.report import edge_of

__all__ = ["KEY", "FirstStudy", "at_an_edge", "best_trial", "first_range_note",
           "first_range_studies", "read_trials", "searched_range", "short_key", "trial_lines",
           "trials_figure", "trials_figure_path", "value_text"]

# The key every row tunes, and the figure's x axis.
KEY = "algorithm.inner_lr"


class FirstStudy(NamedTuple):
    """A row's first study, kept when the row was searched again over a wider range: its trials
    and the inner-rate range it searched (from its space.json)."""

    trials: List[Dict[str, Any]]
    low: float
    high: float
    log: bool

    @property
    def range_text(self) -> str:
        """'0.05..1'."""
        return f"{self.low:g}..{self.high:g}"


def first_range_studies(results_dir: Path, setting: str) -> Dict[str, FirstStudy]:
    """{row: its first study} for the rows searched again (`FIRST_RANGE_FOLDER`)."""
    folder = results_dir / setting / FIRST_RANGE_FOLDER
    found = {}
    for row in rows(setting):
        trials = read_trials(folder / row)
        if trials:
            found[row] = FirstStudy(trials, *searched_range(folder / row))
    return found


def searched_range(study: Path) -> Tuple[float, float, bool]:
    """(low, high, log) of the inner rate in the space a kept study searched: its space.json,
    the store's record of Optuna's distributions (`python -m experiments.tuned again` writes
    it)."""
    path = study / SPACE_FILE
    try:
        attributes = json.loads(path.read_text())[KEY]["attributes"]
        return float(attributes["low"]), float(attributes["high"]), bool(attributes["log"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise SystemExit(f"tuned: {path} does not give the range {study} searched ({error!r}); "
                         f"restore it from the study's store (gbml_ext.tune.study."
                         f"searched_space).") from None


def first_range_note(first: Dict[str, FirstStudy], setting: str) -> List[str]:
    """The lines that say which rows were searched again and why ([] when none was)."""
    if not first:
        return []
    cells = []
    for row, study in first.items():
        best = best_trial(study.trials, "accuracy")
        edge = (at_an_edge(best[KEY], {"low": study.low, "high": study.high, "log": study.log})
                if best is not None else None)
        low, high = _range(setting, row)
        cells.append(f"{LABELS[row]}, first over {study.range_text}" + (
            f" (best: {100 * best['accuracy']:.1f} % at α {best[KEY]:.3g}, the {edge} edge)"
            if best is not None and edge else "") + f", again over {low:g}..{high:g}")
    trials = len(next(iter(first.values())).trials)
    return ["", f"Searched twice: the best trial of each row below fell at an edge of the range "
            f"it was first searched over, so the row was searched again with the same {trials} "
            f"trials over a range past that edge, and its table row is the second study's: "
            f"{'; '.join(cells)}. The first studies are kept in `experiments/results/tuned/"
            f"{setting}/{FIRST_RANGE_FOLDER}/`, each with the range it searched (space.json), "
            f"and listed in the trials table with that range."]


def trial_lines(label: str, trials: List[Dict[str, Any]], keys: List[str]) -> List[List[Any]]:
    """The trials table's lines of one study: label, trial, state, validation accuracy %, the
    tuned keys' values."""
    lines = []
    for trial in trials:
        accuracy = trial.get("accuracy")
        lines.append([label, trial.get("trial", "?"), trial.get("state", "?"),
                      "–" if not isinstance(accuracy, (int, float)) else f"{100 * accuracy:.1f}",
                      ", ".join(f"{short_key(k)} {value_text(trial.get(k))}" for k in keys)])
    return lines


def read_trials(study: Path) -> List[Dict[str, Any]]:
    """A study's trials as gbml-tune's trials.json holds them: one dict per trial with
    `trial`, `state`, the metric and each tuned key ([] when there is none).

    Example:
        >>> read_trials(Path("no-such-study"))
        []
    """
    path = study / "trials.json"
    if not path.is_file():
        return []
    data = json.loads(path.read_text())
    trials = data.get("trials", []) if isinstance(data, dict) else data
    return [t for t in trials if isinstance(t, dict)]


def value_text(value: Any) -> str:
    """A tuned value as the tables show it: 'true', '0.426', '3'."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def short_key(key: str) -> str:
    """'algorithm.inner_lr' -> 'inner_lr'."""
    return key.split(".")[-1]


def trials_figure_path(folder: Path, setting: str) -> Path:
    """Where the setting's trials figure goes: `folder/omniglot-tuned-trials-<setting>.png`."""
    return folder / f"omniglot-tuned-trials-{setting}.png"


def _range(setting: str, row: str) -> Tuple[float, float]:
    space = tune_space(setting, row).get("space", {}).get(KEY, {})
    return float(space.get("low", math.nan)), float(space.get("high", math.nan))


def at_an_edge(value: float, spec: Dict[str, Any]) -> Optional[str]:
    """'low' or 'high' when `value` lies at that edge of a `[tune.space]` entry's range, by
    gbml-tune's rule (`gbml_ext.tune.report.edge_of`); None inside it or for a choice.

    Example:
        >>> at_an_edge(0.875, {"low": 0.05, "high": 1.0, "log": True})
        'high'
        >>> at_an_edge(4, {"low": 2, "high": 4}), at_an_edge(3, {"low": 2, "high": 4})
        ('high', None)
    """
    if "low" not in spec or "high" not in spec:
        return None
    edge = edge_of(float(value), float(spec["low"]), float(spec["high"]), bool(spec.get("log")))
    return {"bottom": "low", "top": "high"}.get(edge or "")


def best_trial(trials: List[Dict[str, Any]], metric: str = "accuracy") -> Optional[Dict[str, Any]]:
    """The complete trial with the highest finite `metric`; None when there is none."""
    complete = [t for t in trials if t.get("state") == "complete"
                and isinstance(t.get(metric), (int, float)) and math.isfinite(t[metric])]
    return max(complete, key=lambda t: t[metric]) if complete else None


def _scatter(ax: Any, trials: List[Dict[str, Any]], metric: str, color: str,
             label: str) -> None:
    """Complete trials as dots, pruned ones (their last record) as crosses, in `color`."""
    for state, marker in (("complete", "o"), ("pruned", "x")):
        points = [(t[KEY], 100 * t[metric]) for t in trials if t.get("state") == state
                  and isinstance(t.get(metric), (int, float)) and KEY in t]
        if points:
            ax.scatter(*zip(*points, strict=True), marker=marker, color=color, s=22,
                       label=f"{label}, {state}")


def trials_figure(studies: Dict[str, List[Dict[str, Any]]], setting: str, path: Path,
                  first: Optional[Dict[str, FirstStudy]] = None,
                  metric: str = "accuracy") -> bool:
    """One panel per row with trials: validation `metric` (%) against the inner rate (log),
    complete trials as dots, pruned ones (their last record) as crosses, the best ringed, the
    search range's edges dashed; a row's first study (`first`) in orange, its range's edges
    dotted. False (and no file) when no row has a trial.

    Arguments:
        studies: {row: its trials.json's trials} (rows without trials are left out).
        setting: "5w1s" or "20w1s" (the title, and each row's range from its config).
        path: the PNG to write.
        first: {row: its first study}, for rows searched again.
    """
    first = first or {}
    present = [row for row in rows(setting) if studies.get(row) or first.get(row)]
    if not present:
        return False
    plt = pyplot()
    columns = min(5, max(3, len(present)))  # at least 3 wide, so the title and legend fit
    lines = math.ceil(len(present) / columns)
    fig, axes = plt.subplots(lines, columns, figsize=(3.1 * columns, 2.8 * lines),
                             squeeze=False, sharey=True)
    for ax, row in zip(axes.flat, present, strict=False):
        low, high = _range(setting, row)
        kept = first.get(row)
        if kept is not None:
            _scatter(ax, kept.trials, metric, "C1", "first study")
            for edge in (kept.low, kept.high):
                ax.axvline(edge, color="C1", linestyle=":", linewidth=0.8)
            low, high = min(low, kept.low), max(high, kept.high)
        _scatter(ax, studies.get(row, []), metric, "C0", "search")
        best = best_trial(studies.get(row, []), metric)
        if best is not None:
            ax.scatter([best[KEY]], [100 * best[metric]], s=130, facecolors="none",
                       edgecolors="C3", label="best")
        for edge in _range(setting, row):
            if math.isfinite(edge):
                ax.axvline(edge, color="0.5", linestyle="--", linewidth=0.8)
        if math.isfinite(low) and math.isfinite(high):
            plain_log_axis(ax, low, high)
        ax.set_title(LABELS[row], fontsize=10)
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(present):]:
        ax.set_visible(False)
    for ax in axes[:, 0]:
        ax.set_ylabel(f"validation {metric} %")
    for ax in axes[-1]:
        ax.set_xlabel("inner rate α")
    legend: Dict[str, Any] = {}  # one entry per label, across the panels
    for ax in axes.flat:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            legend.setdefault(label, handle)
    fig.legend(legend.values(), legend.keys(), loc="upper center", ncol=len(legend),
               fontsize=8, bbox_to_anchor=(0.5, 0.955), frameon=False)
    fig.suptitle(f"{TITLES[setting]}: every trial (dashed: the search range; dotted: "
                 f"a first study's range)" if first else
                 f"{TITLES[setting]}: every trial (dashed: the search range)")
    return save_figure(fig, path, dpi=110, rect=(0, 0, 1, 0.93))
