"""The tables and the figure of `python -m experiments.algorithms`, rebuilt from run folders.

A setting's runs sit in `<results>/<setting>/<config name>/seed<N>/` (results.json,
metrics.jsonl, config.json). A row that is not run on purpose can say why in
`<results>/<setting>/not-run.json`, `{"<row>": "<reason>"}`; the table prints the reason.
Seconds per meta-iteration come from benchmarks/algorithm_costs.py's
`docs/data/algorithm-costs-<setting>.json` where it has the row, else from the runs' own
`seconds_per_iteration`, marked as measured in the sweep (contended).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from experiments.algorithms_grid import LABELS, SETTINGS, config_folder, rows, run_name
from experiments.sweep import seed_folders, seed_number, seed_results
from gbml_ext.fileio import atomic_write_text
from gbml_ext.runner.plots import pyplot, save_figure
from gbml_ext.runner.report import format_metric, markdown_table
from gbml_ext.runner.rundir import read_history
from gbml_ext.runner.summaries import median_of, pooled_summary, validation_accuracy

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "omniglot-algorithms.md"
FIGURE = REPO / "docs" / "img" / "omniglot-algorithms.png"
TIMING = REPO / "docs" / "data"
BEGIN = "<!-- begin: tables by `python -m experiments.algorithms report`; do not edit -->"
END = "<!-- end: tables -->"
TITLES = {"5w1s": "Omniglot 5-way 1-shot", "20w1s": "Omniglot 20-way 1-shot"}
CONTENDED = "*"


def timing_file(setting: str, folder: Path = TIMING) -> Path:
    """Where benchmarks/algorithm_costs.py writes a setting's seconds per meta-iteration."""
    return folder / f"algorithm-costs-{setting}.json"


def _read(path: Path) -> Optional[Dict[str, Any]]:
    return json.loads(path.read_text()) if path.is_file() else None


def _unfinished(folder: Path) -> str:
    """'seed 1 unfinished (iteration 120 of 300)' for a seed folder without results.json."""
    done = max((r.get("iteration", 0) for r in read_history(folder)), default=0)
    config = _read(folder / "config.json")
    asked = config["train"]["iterations"] if config else "?"
    return f"seed {seed_number(folder)} unfinished (iteration {done} of {asked})"


def _iterations(results: List[Dict[str, Any]]) -> str:
    cells = [f"{r['iterations_done']}/{r['config']['train']['iterations']}" for r in results]
    return cells[0] if len(set(cells)) == 1 else ", ".join(cells)


def _seconds(row: str, results: List[Dict[str, Any]], timing: Optional[Dict[str, Any]]) -> str:
    measured = (timing or {}).get("rows", {}).get(row, {}).get("seconds_per_iteration")
    if measured is not None:
        return f"{measured:.3f}"
    seconds = median_of(results, "seconds_per_iteration")
    return "–" if seconds is None else f"{seconds:.3f}{CONTENDED}"


def _memory(results: List[Dict[str, Any]]) -> str:
    peak = median_of(results, "peak_memory_mb")
    return "–" if peak is None else f"{peak:.0f} ({results[0]['peak_memory_kind']})"


def row_cells(folder: Path, row: str, seeds: Sequence[int], reason: Optional[str],
              timing: Optional[Dict[str, Any]]) -> List[str]:
    """One table row: label, seeds, test accuracy % pooled and per seed, meta-iterations done
    / asked, seconds per meta-iteration, peak memory, and what is missing and why."""
    folders = seed_folders(folder)
    results = [r for p in folders if (r := _read(p / "results.json")) is not None]
    notes = [_unfinished(p) for p in folders if not (p / "results.json").is_file()]
    found = {seed_number(p) for p in folders}
    missing = [str(s) for s in seeds if s not in found]
    if missing:
        notes.append(f"seed{'s' if len(missing) > 1 else ''} {', '.join(missing)} not run")
    notes += [f"seed {r['seed']} stopped by train.max_minutes" for r in results
              if r.get("stopped_by_time_limit")]
    if reason:
        notes.insert(0, reason)
    note = "; ".join(notes) or "–"
    if not results:
        return [LABELS[row], "–", "not run", "–", "–", "–", "–", note]
    per_seed = "; ".join(f"{r['seed']}: {format_metric(pooled_summary([r], 'accuracy'), 100, 1)}"
                         for r in results)
    return [LABELS[row], ", ".join(str(r["seed"]) for r in results),
            format_metric(pooled_summary(results, "accuracy"), 100, 1), per_seed,
            _iterations(results), _seconds(row, results, timing), _memory(results), note]


def _setting_results(folder: Path, setting: str) -> List[Dict[str, Any]]:
    return [r for row in rows(setting) for r in seed_results(folder / run_name(setting, row))]


def _shown(path: Path) -> Path:
    """`path` relative to the repository when it is inside it."""
    path = path.resolve()
    return path.relative_to(REPO) if path.is_relative_to(REPO) else path


def _values(results: List[Dict[str, Any]], key: str) -> str:
    found = sorted({str(r["environment"].get(key)) for r in results
                    if r["environment"].get(key) is not None})
    return ", ".join(found) or "not recorded"


def setting_section(results_dir: Path, setting: str, seeds: Sequence[int],
                    timing_dir: Path = TIMING) -> str:
    """The markdown of one setting: a header traced to the runs, and the table."""
    folder = results_dir / setting
    reasons = _read(folder / "not-run.json") or {}
    timing = _read(timing_file(setting, timing_dir))
    body = [row_cells(folder / run_name(setting, row), row, seeds, reasons.get(row), timing)
            for row in rows(setting)]
    results = _setting_results(folder, setting)
    dates = sorted(r["environment"]["date"] for r in results if r["environment"].get("date"))
    configs = _shown(config_folder(setting))
    lines = [f"### {TITLES[setting]}", "",
             f"Rows: `{configs}/<row>.toml`, each run by `gbml-compare <row>.toml --seeds N "
             f"--out runs/algorithms/{setting} data.root=<Omniglot>` (the grid of "
             f"`experiments.algorithms.plan`), archived to `{_shown(folder)}`; "
             f"table by `python -m experiments.algorithms report`.",
             f"Run from {dates[0]} to {dates[-1]}" if dates else "No finished runs yet.",
             ]
    if results:
        lines[-1] += (f"; commit {_values(results, 'commit')}; {_values(results, 'hardware')}; "
                      f"torch {_values(results, 'torch')}; seeds "
                      f"{', '.join(str(s) for s in sorted({r['seed'] for r in results}))} "
                      f"(asked: {', '.join(str(s) for s in seeds)}).")
    header = ["row", "seeds", "test accuracy %", "per seed", "meta-iterations done/asked",
              "s / meta-iteration", "peak memory MB (kind)", "missing, and why"]
    notes = ["Test accuracy: mean ± 95% CI over every test task of every seed (600 per seed); "
             "per seed: the same over that seed's tasks. Peak memory: training's, median over "
             "seeds."]
    if timing:
        env = timing.get("environment", {})
        notes.append(f"s / meta-iteration: median of benchmarks/algorithm_costs.py "
                     f"({timing.get('repeats')} repeats of {timing.get('iterations')} "
                     f"meta-iterations, rows interleaved; {env.get('hardware', '?')}, "
                     f"{env.get('date', '?')}).")
    if any(row[5].endswith(CONTENDED) for row in body):
        notes.append(f"{CONTENDED} median over the run's own meta-iterations, in the sweep, "
                     f"contended: other jobs shared the machine.")
    return "\n".join(lines) + "\n\n" + markdown_table(header, body) + "\n" + " ".join(notes) + "\n"


def report_text(results_dir: Path, seeds: Sequence[int], timing_dir: Path = TIMING) -> str:
    """Every setting's section, in `SETTINGS` order."""
    return "\n".join(setting_section(results_dir, s, seeds, timing_dir) for s in SETTINGS)


def write_report(results_dir: Path, doc: Path = DOC, seeds: Sequence[int] = (0, 1),
                 timing_dir: Path = TIMING) -> None:
    """Replaces the text between `BEGIN` and `END` in `doc` with `report_text`; the rest of
    the page is kept. A page without the two markers is left as it is: SystemExit says so."""
    empty = f"# Every algorithm on Omniglot\n\n{BEGIN}\n{END}\n"
    text = doc.read_text() if doc.is_file() else empty
    if BEGIN not in text or END not in text or text.index(BEGIN) > text.index(END):
        raise SystemExit(f"algorithms: {doc} lacks the lines {BEGIN!r} and {END!r} (in that "
                         f"order); put them where the tables go.")
    head, rest = text.split(BEGIN, 1)
    tail = rest.split(END, 1)[1]
    doc.parent.mkdir(parents=True, exist_ok=True)
    tables = report_text(results_dir, seeds, timing_dir)
    if FIGURE.is_file() and doc.resolve() == DOC:  # drawn by the `figure` command
        tables += (f"\n![validation accuracy against meta-iteration]"
                   f"({FIGURE.relative_to(DOC.parent)})\n")
    atomic_write_text(doc, f"{head}{BEGIN}\n\n{tables}\n{END}{tail}")


def validation_curve(folder: Path) -> Dict[int, float]:
    """Validation accuracy % against meta-iteration, the mean over the seeds that logged it."""
    by_iteration: Dict[int, List[float]] = {}
    for seed in seed_folders(folder):
        for iteration, accuracy in validation_accuracy(read_history(seed)).items():
            by_iteration.setdefault(iteration, []).append(100 * accuracy)
    return {i: sum(v) / len(v) for i, v in sorted(by_iteration.items())}


def figure(results_dir: Path, path: Path = FIGURE) -> bool:
    """One panel per setting, one line per row; False (and no file) when no run logged any
    validation accuracy."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(SETTINGS), figsize=(12, 4.5))
    colors = plt.get_cmap("tab20").colors
    drawn = False
    for ax, setting in zip(axes, SETTINGS, strict=True):
        for i, row in enumerate(rows(setting)):
            curve = validation_curve(results_dir / setting / run_name(setting, row))
            if curve:
                drawn = True
                ax.plot(list(curve), list(curve.values()), "--" if "anil" in row else "-",
                        marker="o", markersize=3, color=colors[i % len(colors)],
                        label=LABELS[row])
        ax.set_title(TITLES[setting])
        ax.set_xlabel("meta-iteration")
        ax.set_ylabel("validation accuracy % (mean over seeds)")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize="small", ncol=2)
    return save_figure(fig, path, drawn)
