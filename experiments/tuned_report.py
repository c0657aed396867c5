"""The tables and the figure of `python -m experiments.tuned report`, rebuilt from the archived
results only.

Under the results folder (experiments/results/tuned): a row's study in
`<setting>/studies/<row>/` (gbml-tune's best.toml and trials.json), its final runs in
`<setting>/<config name>/seed<N>/` and the headline runs in `headline/<name>/seed<N>/`
(results.json, metrics.jsonl, config.json). The untuned rows come from the every-algorithm
grid's results (experiments/results/algorithms).
"""
from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Dict, List, Sequence

from experiments import algorithms_grid
from experiments.algorithms_grid import LABELS, SETTINGS
from experiments.algorithms_report import TITLES
from experiments.sweep import seed_results
from experiments.tuned_grid import (
    BEST_FILE,
    ENDED,
    HEADLINE,
    HEADLINE_FACTOR,
    HEADLINE_SETTING,
    TRIALS,
    headline_name,
    rows,
    run_name,
    tune_space,
)
from experiments.tuned_headline import PUBLISHED_TASKS, curve_table, headline_figure, published_text
from experiments.tuned_trials import (
    at_an_edge,
    best_trial,
    first_range_note,
    first_range_studies,
    read_trials,
    short_key,
    trial_lines,
    trials_figure,
    trials_figure_path,
    value_text,
)
from gbml_ext.fileio import atomic_write_text
from gbml_ext.runner.compat import flatten
from gbml_ext.runner.plots import draw_steps, pyplot, save_figure
from gbml_ext.runner.report import format_metric, markdown_table
from gbml_ext.runner.summaries import pooled_curve, pooled_summary, reported_steps

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "omniglot-tuned.md"
FIGURE = REPO / "docs" / "img" / "omniglot-tuned-steps.png"
# The headline rows' learning curves, beside FIGURE.
HEADLINE_FIGURE = "omniglot-tuned-headline-curves.png"
UNTUNED = algorithms_grid.RESULTS
BEGIN = "<!-- begin: tables by `python -m experiments.tuned report`; do not edit -->"
END = "<!-- end: tables -->"


def tuned_settings(study: Path, setting: str, row: str) -> str:
    """The best config's value of every tuned key, e.g. 'inner_lr 0.231, imaml_lam 1.5'."""
    best = study / BEST_FILE
    if not best.is_file():
        return "–"
    values = flatten(tomllib.loads(best.read_text()))
    space = tune_space(setting, row).get("space", {})
    cells = []
    for key, spec in space.items():
        cell = f"{short_key(key)} {value_text(values.get(key))}"
        edge = (at_an_edge(values[key], spec) if isinstance(values.get(key), (int, float))
                and not isinstance(values.get(key), bool) else None)
        cells.append(cell + (f" (at the {edge} edge of {spec['low']:g}..{spec['high']:g})"
                             if edge else ""))
    return ", ".join(cells)


def _trial_counts(trials: List[Dict[str, Any]]) -> str:
    if not trials:
        return "–"
    count = {state: sum(t.get("state") == state for t in trials)
             for state in ENDED}
    return f"{count['complete']} / {count['pruned']} / {count['fail']}"


def _best_validation(trials: List[Dict[str, Any]]) -> str:
    best = best_trial(trials)
    return "–" if best is None else f"{100 * best['accuracy']:.1f}"


def steps_cell(results: List[Dict[str, Any]]) -> str:
    """The steps each seed reports, '3' when they agree, '3, 5' when not.

    Example:
        >>> steps_cell([{"evaluation": {"steps": 3, "per_task": {}}},
        ...             {"evaluation": {"steps": 5, "per_task": {}}}])
        '3, 5'
    """
    cells = [str(reported_steps(r["evaluation"])) for r in results]
    return "–" if not cells else cells[0] if len(set(cells)) == 1 else ", ".join(cells)


def _accuracy(results: List[Dict[str, Any]]) -> str:
    return format_metric(pooled_summary(results, "accuracy"), 100, 1) if results else "–"


def _by_seed(results: List[Dict[str, Any]]) -> str:
    """Each seed's test accuracy %, in seed order: '95.3, 94.6'."""
    means = [pooled_summary([r], "accuracy") for r in results]
    return ", ".join(f"{100 * m['mean']:.1f}" for m in means if m is not None) or "–"


def _delta(a: List[Dict[str, Any]], b: List[Dict[str, Any]]) -> str:
    if not a or not b:
        return "–"
    first, second = pooled_summary(a, "accuracy"), pooled_summary(b, "accuracy")
    return "–" if first is None or second is None else (
        f"{100 * (first['mean'] - second['mean']):+.1f}")


def _missing(results: List[Dict[str, Any]], seeds: Sequence[int], what: str) -> List[str]:
    done = {r["seed"] for r in results}
    absent = [str(s) for s in seeds if s not in done]
    return [f"{what} {', '.join(absent)}"] if absent else []


def setting_section(results_dir: Path, setting: str, seeds: Sequence[int],
                    untuned_dir: Path = UNTUNED) -> str:
    """One setting's table (tuned next to untuned), its accuracy after 0..K steps, and its
    trials."""
    body: List[List[Any]] = []
    curves: List[List[Any]] = []
    lines: List[List[Any]] = []
    first_range = first_range_studies(results_dir, setting)
    for row in rows(setting):
        study = results_dir / setting / "studies" / row
        trials = read_trials(study)
        tuned = seed_results(results_dir / setting / run_name(setting, row))
        untuned = seed_results(untuned_dir / setting / algorithms_grid.run_name(setting, row))
        ended = sum(t.get("state") in ENDED for t in trials)
        notes = ([] if ended >= TRIALS else [f"{TRIALS - ended} trials" if trials else "study"]
                 ) + _missing(tuned, seeds, "seeds")
        body.append([LABELS[row], tuned_settings(study, setting, row), _trial_counts(trials),
                     _best_validation(trials), _accuracy(tuned), steps_cell(tuned),
                     _accuracy(untuned), steps_cell(untuned), _delta(tuned, untuned),
                     "; ".join(notes) or "–"])
        curve = pooled_curve(tuned, "accuracy") if tuned else None
        if curve:
            chosen = {reported_steps(r["evaluation"]) for r in tuned}
            curves.append([LABELS[row], *(f"**{100 * v:.1f}**" if k in chosen else f"{100 * v:.1f}"
                                          for k, v in enumerate(curve))])
        space = list(tune_space(setting, row).get("space", {}))
        kept = first_range.get(row)
        lines += (trial_lines(f"{LABELS[row]}, {kept.range_text}", kept.trials, space)
                  if kept else []) + trial_lines(LABELS[row], trials, space)
    header = ["row", "tuned settings (best trial)", "trials done / pruned / failed",
              "best validation %", "test %, tuned", "steps, tuned", "test %, untuned",
              "steps, untuned", "Δ", "still to run"]
    text = [f"### {TITLES[setting]}", "",
            f"Rows: `experiments/configs/omniglot/{setting}-tuned/<row>.toml`; {TRIALS} trials "
            f"each (`python -m experiments.tuned tune`), then the best trial's config with "
            f"seeds {', '.join(map(str, seeds))} on 600 test tasks (`final`). Untuned: "
            f"the every-algorithm grid's rows (docs/omniglot-algorithms.md).", "",
            markdown_table(header, body),
            "Test accuracy: mean ± 95% CI over every test task of every seed. Inner steps: "
            "those the accuracy is read after, per seed; tuned rows choose them among 1..10 on "
            "200 validation tasks, untuned rows use their config's. Best validation accuracy: "
            "the best complete trial's, after the steps chosen on its own validation tasks."]
    text += first_range_note(first_range, setting)
    if curves:
        width = max(len(c) for c in curves) - 1
        text += ["", f"Test accuracy % after 0..{width - 1} inner steps, tuned, pooled over "
                 f"seeds (bold: the steps a seed reports):", "",
                 markdown_table(["row", *map(str, range(width))],
                                [c + [""] * (width + 1 - len(c)) for c in curves]).rstrip()]
    if lines:
        text += ["", "Trials (validation accuracy after the steps chosen on the trial's own "
                 "validation tasks; a pruned trial's last validation record):", "",
                 markdown_table(["row", "trial", "state", "validation accuracy %", "settings"],
                                lines).rstrip()]
    return "\n".join(text) + "\n"


def headline_section(results_dir: Path, seeds: Sequence[int]) -> str:
    """The headline rows at `HEADLINE_FACTOR` times the grid's meta-iterations against the same
    rows tuned at the grid's budget."""
    body = []
    tasks = set()
    for row in HEADLINE:
        long = seed_results(results_dir / "headline" / headline_name(row))
        tasks |= {r["iterations_done"] * r["config"]["train"]["meta_batch"] for r in long}
        grid = seed_results(results_dir / HEADLINE_SETTING / run_name(HEADLINE_SETTING, row))
        iterations = ", ".join(sorted({f"{r['iterations_done']}/"
                                       f"{r['config']['train']['iterations']}" for r in long}))
        body.append([LABELS[row], iterations or "–", _accuracy(long), _by_seed(long),
                     steps_cell(long), _accuracy(grid), _by_seed(grid), _delta(long, grid),
                     "; ".join(_missing(long, seeds, "headline")) or "–"])
    header = ["row", "meta-iterations done/asked", f"test accuracy %, {HEADLINE_FACTOR}x",
              "by seed", "inner steps", "test accuracy %, grid budget (tuned)", "by seed", "Δ",
              "missing"]
    return "\n".join([
        f"### {TITLES[HEADLINE_SETTING]} at {HEADLINE_FACTOR}x the budget", "",
        f"The tuned {HEADLINE_SETTING} settings of each row (its study's best config) trained "
        f"for {HEADLINE_FACTOR}x the grid's meta-iterations with the same tasks per "
        f"meta-iteration (`python -m experiments.tuned headline`).", "",
        markdown_table(header, body).rstrip(), "",
        f"Published for MAML on this setting: {published_text()}"
        + (f", {_times(PUBLISHED_TASKS, min(tasks))} the {min(tasks):,} tasks of a headline run."
           if len(tasks) == 1 else "."),
        *(["", "Validation accuracy % during training (each record's tasks, after the config's "
           "test steps), mean over seeds, averaged over each 500 meta-iterations:", "", curves]
          if (curves := curve_table(results_dir)) else [])]) + "\n"


def _times(big: int, small: int) -> str:
    """'80x' when `small` divides `big`, else 'about 79x'.

    Example:
        >>> _times(1_920_000, 24_000), _times(1_920_000, 24_200)
        ('80x', 'about 79x')
    """
    return f"{big // small}x" if big % small == 0 else f"about {round(big / small)}x"


def report_text(results_dir: Path, seeds: Sequence[int], untuned_dir: Path = UNTUNED) -> str:
    """Every setting's section, then the headline rows."""
    return "\n".join([*(setting_section(results_dir, s, seeds, untuned_dir) for s in SETTINGS),
                      headline_section(results_dir, seeds)])


def row_colors() -> Dict[str, str]:
    """One matplotlib colour per row label, the same in every panel and figure."""
    every_row = dict.fromkeys(r for s in SETTINGS for r in rows(s))
    return {LABELS[r]: f"C{i % 10}" for i, r in enumerate(every_row)}


def figure(results_dir: Path, path: Path = FIGURE) -> bool:
    """Test accuracy against inner steps, one panel per setting and one for the headline rows,
    one line per row (pooled over seeds, a ring at the steps reported); False (and no file)
    when no final run has it."""
    plt = pyplot()
    panels = [(TITLES[s], {LABELS[r]: seed_results(results_dir / s / run_name(s, r))
                           for r in rows(s)}) for s in SETTINGS]
    panels.append((f"{TITLES[HEADLINE_SETTING]}, {HEADLINE_FACTOR}x budget",
                   {LABELS[r]: seed_results(results_dir / "headline" / headline_name(r))
                    for r in HEADLINE}))
    colors = row_colors()
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4.5))
    drawn = False
    for ax, (title, runs) in zip(axes, panels, strict=True):
        present = {name: results for name, results in runs.items() if results}
        drawn |= bool(present) and draw_steps(ax, present, colors=colors)
        ax.set_title(title)
        ax.grid(alpha=0.3)
        if not present:
            ax.text(0.5, 0.5, "no final run yet", ha="center", va="center", color="0.4",
                    transform=ax.transAxes)
            ax.set_xticks([])
            ax.set_yticks([])
    return save_figure(fig, path, drawn)


def _link(png: Path, doc: Path) -> Path:
    """`png` as the page `doc` links it: relative when it lies under the page's folder."""
    folder, png = doc.resolve().parent, png.resolve()
    return png.relative_to(folder) if png.is_relative_to(folder) else png


def write_report(results_dir: Path, doc: Path = DOC, png: Path = FIGURE,
                 seeds: Sequence[int] = (0, 1), untuned_dir: Path = UNTUNED) -> bool:
    """Replaces the text between `BEGIN` and `END` in `doc` with `report_text` (and a link to
    the figure, when there is one to draw); the rest of the page is kept. Returns whether the
    figure was drawn. A page without the two markers is left as it is: SystemExit says so."""
    empty = f"# Every algorithm on Omniglot, tuned\n\n{BEGIN}\n{END}\n"
    text = doc.read_text() if doc.is_file() else empty
    if BEGIN not in text or END not in text or text.index(BEGIN) > text.index(END):
        raise SystemExit(f"tuned: {doc} lacks the lines {BEGIN!r} and {END!r} (in that "
                         f"order); put them where the tables go.")
    head, rest = text.split(BEGIN, 1)
    tail = rest.split(END, 1)[1]
    tables = report_text(results_dir, seeds, untuned_dir)
    for setting in SETTINGS:
        studies = {row: read_trials(results_dir / setting / "studies" / row)
                   for row in rows(setting)}
        trials_png = trials_figure_path(png.parent, setting)
        if trials_figure(studies, setting, trials_png,
                         first_range_studies(results_dir, setting)):
            tables += f"\n![{TITLES[setting]}: every trial]({_link(trials_png, doc)})\n"
    drawn = figure(results_dir, png)
    if drawn:
        tables += f"\n![test accuracy against inner steps]({_link(png, doc)})\n"
    curves_png = png.parent / HEADLINE_FIGURE
    if headline_figure(results_dir, curves_png, row_colors()):
        tables += (f"\n![{TITLES[HEADLINE_SETTING]}, headline rows: validation accuracy during "
                   f"training]({_link(curves_png, doc)})\n")
    doc.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(doc, f"{head}{BEGIN}\n\n{tables}\n{END}{tail}")
    return drawn
