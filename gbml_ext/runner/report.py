"""Results as text and files: results.json, one-row and comparison markdown tables, and the
provenance (versions, source commit, hardware, date) that lets a table be traced back.

Tables take data (results dicts and `summaries`); the figures are in `plots`, and the command
lines that call both sit above them.
"""
from __future__ import annotations

import datetime
import json
import platform
import subprocess
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import torch

from ..fileio import atomic_write_json, atomic_write_text
from ..measure import hardware_description
from .summaries import (
    comparable_summaries,
    evaluation_split,
    median_of,
    pooled_summary,
    reported_steps,
)

__all__ = ["compare_table", "environment_info", "evaluation_split", "format_metric",
           "markdown_table", "results_markdown", "source_commit", "steps_cell", "steps_note",
           "write_metrics", "write_results"]



def source_commit(folder: Optional[Path] = None) -> Optional[str]:
    """The git commit of the checkout gbml_ext runs from ('<12 hex digits>', with '+changes'
    when tracked files differ from it), or None when it is not run from a git checkout.

    Arguments:
        folder: the checkout's root (default: the folder above the gbml_ext package).

    Returns:
        The commit, or None outside a git checkout or without a `git` command.

    Example:
        >>> source_commit(Path("/")) is None
        True
    """
    folder = folder or Path(__file__).resolve().parents[2]
    if not (folder / ".git").exists():
        return None

    def git(*args: str) -> Optional[str]:
        try:
            done = subprocess.run(["git", "-C", str(folder), *args], capture_output=True,
                                  text=True, timeout=20)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    head = git("rev-parse", "--short=12", "HEAD")
    if not head:
        return None
    return head + ("+changes" if git("status", "--porcelain", "--untracked-files=no") else "")


def environment_info(device: torch.device) -> Dict[str, Any]:
    """Package versions, source commit, hardware and date: what a table in docs/ needs to be
    traced back."""
    import learn2learn

    import gbml_ext

    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(), "torch": torch.__version__,
        "learn2learn": learn2learn.__version__, "gbml_ext": gbml_ext.__version__,
        "commit": source_commit(), "device": str(device),
        "hardware": hardware_description(device), "threads": torch.get_num_threads(),
    }


def format_metric(summary: Optional[Dict[str, float]], scale: float = 1.0, digits: int = 3) -> str:
    """'mean ± ci95' of a {mean, ci95} summary, or '–' when absent."""
    if not summary:
        return "–"
    return f"{summary['mean'] * scale:.{digits}f} ± {summary['ci95'] * scale:.{digits}f}"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A markdown table.

    Example:
        >>> print(markdown_table(["a", "b"], [[1, 2]]), end="")
        | a | b |
        |---|---|
        | 1 | 2 |
    """
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def write_metrics(run_dir: Path, history: List[Dict[str, Any]]) -> None:
    """Rewrites metrics.jsonl to hold exactly `history`: on a resume, lines written after the
    last checkpoint of an interrupted run are dropped, as that work is redone."""
    atomic_write_text(Path(run_dir) / "metrics.jsonl",
                      "".join(json.dumps(record) + "\n" for record in history))


def results_markdown(results: Dict[str, Any]) -> str:
    """A one-row markdown table of a results dict (results.json or a gbml-eval result)."""
    evaluation = results["evaluation"]
    is_classification = evaluation["accuracy"] is not None
    split = evaluation_split(results)
    chosen = ", chosen on validation" if evaluation.get("steps_chosen") is not None else ""
    header = ["run", "seed", f"{split} loss ({evaluation['steps']} steps{chosen})"]
    row = [results["name"], results["seed"], format_metric(evaluation["loss"], digits=4)]
    if is_classification:
        header.append(f"{split} accuracy %")
        row.append(format_metric(evaluation["accuracy"], 100, 2))
    if "train_seconds" in results:
        asked = results["config"]["train"]["iterations"]
        header += ["iterations", "train time s", "s / iteration", "peak memory MB"]
        row += [f"{results.get('iterations_done', asked)} of {asked}",
                f"{results['train_seconds']:.1f}", f"{results['seconds_per_iteration'] or 0:.4f}",
                f"{_number(results.get('peak_memory_mb'), 0)} ({results['peak_memory_kind']})"]
        notes = _run_notes(results, asked)
    else:
        notes = _evaluation_notes(results)
    env = results["environment"]
    return (_checkpoint_line(results) + markdown_table(header, [row]) +
            f"\n{evaluation['loss']['n']} held-out {split} tasks, 95% CI. {env['hardware']}, "
            f"torch {env['torch']}, {env['date']}.\n" + "".join(f"{n}\n" for n in notes)
            + steps_note(results))


def _curve(summaries: List[Dict[str, float]], scale: float, digits: int, first: int = 0) -> str:
    return ", ".join(f"{s['mean'] * scale:.{digits}f}" for s in summaries[first:])


def steps_note(results: Dict[str, Any]) -> str:
    """The lines under a run's table on its inner steps: the steps chosen on validation and the
    curve they were chosen on, and the evaluation's accuracy (or loss) after 0..K steps, when it
    scored more steps than it reports or chose them; '' otherwise.

    Example:
        >>> from gbml_ext.runner.summaries import step_summaries
        >>> evaluation = step_summaries([[1.0], [0.5], [0.7]], [[0.2], [0.8], [0.6]], 1)
        >>> print(steps_note({"evaluation": evaluation, "split": "test"}), end="")
        Test accuracy % after 0..2 inner steps: 20.0, 80.0, 60.0.
    """
    evaluation, split = results["evaluation"], evaluation_split(results)
    chosen_on = evaluation.get("chosen_on")
    if chosen_on is None and len(evaluation["loss_by_step"]) - 1 == evaluation["steps"]:
        return ""
    lines = []
    if chosen_on is not None:
        low, high = chosen_on["candidates"]
        metric = chosen_on["metric"]
        curve = (_curve(chosen_on["accuracy_by_step"], 100, 1, low) if metric == "accuracy"
                 else _curve(chosen_on["loss_by_step"], 1, 4, low))
        lines.append(f"Inner steps {evaluation['steps_chosen']}, chosen among {low}..{high} on "
                     f"{chosen_on['tasks']} validation tasks by {metric} "
                     f"({'% ' if metric == 'accuracy' else ''}after {low}..{high} steps: "
                     f"{curve}).")
    by_step = evaluation.get("accuracy_by_step")
    what, curve = ((f"{split.capitalize()} accuracy %", _curve(by_step, 100, 1)) if by_step
                   else (f"{split.capitalize()} loss", _curve(evaluation["loss_by_step"], 1, 4)))
    lines.append(f"{what} after 0..{len(evaluation['loss_by_step']) - 1} inner steps: {curve}.")
    return "".join(f"{line}\n" for line in lines)


def _checkpoint_line(results: Dict[str, Any]) -> str:
    """Above a re-evaluation of a run that had not finished (its checkpoint is of an earlier
    iteration than train.iterations), the line that says so; '' otherwise."""
    if "train_seconds" in results or "iteration" not in results:
        return ""
    done, asked = results["iteration"], results["config"]["train"]["iterations"]
    if done >= asked:
        return ""
    return (f"Evaluation of the checkpoint of iteration {done} of {asked}: meta-training had "
            f"not finished, so this is not the result of the finished run.\n\n")


def _evaluation_notes(results: Dict[str, Any]) -> List[str]:
    """The lines under a re-evaluation's table: which checkpoint, and the settings it changed
    from the run's config."""
    notes = []
    if "iteration" in results and not _checkpoint_line(results):  # else said above the table
        asked = results["config"]["train"]["iterations"]
        notes.append(f"Checkpoint of iteration {results['iteration']} of {asked}.")
    changed = results.get("changed") or {}
    notes.append("Changed from the run's config: " + (
        ", ".join(f"`{key}={value}`" for key, value in changed.items()) + "."
        if changed else "nothing (the run's own settings)."))
    return notes


def _run_notes(results: Dict[str, Any], asked: int) -> List[str]:
    """The lines under a run's table: why training stopped early, and what its memory figures
    are (or why there are none)."""
    notes = []
    done = results.get("iterations_done", asked)
    if results.get("stopped_by_time_limit"):
        limit = results["config"]["train"]["max_minutes"]
        notes.append(f"Stopped by train.max_minutes = {limit:g} after {done} of {asked} "
                     f"meta-iterations; `--resume train.max_minutes=...` continues it.")
    if results.get("peak_memory_note"):
        notes.append(f"Peak memory {results['peak_memory_note']}.")
    elif results.get("process_peak_memory_mb") is not None:
        notes.append(f"Peak memory: {results['peak_memory_mb']:.0f} MB above the start of "
                     f"training ({results['peak_memory_kind']}); the process's peak during "
                     f"training: {results['process_peak_memory_mb']:.0f} MB "
                     f"({results['process_peak_memory_kind']}).")
    return notes


def write_results(run_dir: Path, results: Dict[str, Any]) -> None:
    """Writes results.json and results.md (its one-row table) next to each other."""
    run_dir = Path(run_dir)
    atomic_write_json(run_dir / "results.json", results)
    atomic_write_text(run_dir / "results.md", results_markdown(results))


def _memory_saved(peak: Optional[float], base: Optional[float]) -> str:
    """'+12%' memory saved against the baseline, or '–' when either peak is unknown or the
    baseline's is not positive (a CPU peak-RSS increase can be 0)."""
    return f"{1 - peak / base:+.0%}" if peak is not None and base else "–"


def _number(value: Optional[float], digits: int) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def steps_cell(results: Sequence[Dict[str, Any]]) -> str:
    """The inner steps a config's runs report, one per seed ('3' when they agree), with '*'
    after steps chosen on validation.

    Example:
        >>> steps_cell([{"evaluation": {"steps": 3, "steps_chosen": 3}},
        ...             {"evaluation": {"steps": 5, "steps_chosen": 5}}])
        '3*, 5*'
    """
    cells = [f"{reported_steps(r['evaluation'])}"
             f"{'*' if r['evaluation'].get('steps_chosen') is not None else ''}" for r in results]
    return cells[0] if len(set(cells)) == 1 else ", ".join(cells)


def compare_table(runs: Dict[str, List[Dict[str, Any]]]) -> str:
    """Markdown table of several configs' runs (results.json dicts per seed), with ratios
    against the first one: time, time per iteration, training's peak memory, the test metric
    pooled over seeds with its 95% CI, and the final training loss."""
    names = list(runs)
    base = runs[names[0]]
    classification = pooled_summary(base, "accuracy") is not None
    summaries = comparable_summaries(runs, "accuracy" if classification else "loss")
    split = evaluation_split(base[0])
    header = ["run", "seeds", "train time s", "s / iteration", "peak memory MB",
              f"{split} accuracy %" if classification else f"{split} loss", "final train loss",
              "speed-up", "memory saved", "accuracy Δ" if classification else "loss Δ",
              "inner steps"]
    rows = []
    base_quality = summaries[names[0]]["mean"]
    base_speed = median_of(base, "seconds_per_iteration")
    base_peak = median_of(base, "peak_memory_mb")
    scale = 100 if classification else 1
    for name in names:
        results = runs[name]
        quality = summaries[name]
        speed = median_of(results, "seconds_per_iteration")
        peak = median_of(results, "peak_memory_mb")
        rows.append([
            name, len(results), _number(median_of(results, "train_seconds"), 1),
            _number(speed, 4), _number(peak, 0),
            format_metric(quality, scale, 2 if classification else 4),
            _number(median_of(results, "final_train_loss"), 4),
            f"{base_speed / speed:.2f}x" if base_speed and speed else "–",
            _memory_saved(peak, base_peak),
            f"{(quality['mean'] - base_quality) * scale:+.2f}", steps_cell(results),
        ])
    kinds = sorted({r["peak_memory_kind"] for results in runs.values() for r in results})
    notes = sorted({r["peak_memory_note"] for results in runs.values() for r in results
                    if r.get("peak_memory_mb") is None and r.get("peak_memory_note")})
    memory = f"Peak memory: {' / '.join(kinds)}, during training"
    memory += "".join(f"; – where {note}" for note in notes)
    env = base[0]["environment"]
    if any(r["evaluation"].get("steps_chosen") is not None
           for results in runs.values() for r in results):
        memory += (". Inner steps: those the metric is read after, per seed; * chosen on "
                   "validation tasks (evaluation.choose_steps)")
    return (markdown_table(header, rows) +
            f"\nRatios against {names[0]}. {memory}. Times are medians over seeds. "
            f"{env['hardware']}, torch {env['torch']}, {env['date']}.\n")
