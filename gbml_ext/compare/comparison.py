"""Several configs side by side on the same tasks and seeds: run the plan (through a launcher,
or in this process), collect each run's results, and write the comparison's table, JSON and
figure.

`report.compare_table` tabulates training time, time per iteration, peak memory, test accuracy
(or loss) with its 95% CI, and final training loss, with ratios against the first config: the
layout of the well-known "MAML vs FOMAML" table.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from ..fileio import atomic_write_json, atomic_write_text, move_files_aside
from ..launch import CHANGED, DONE, RunSpec, build_plan, finished, launch, plan_status
from ..runner.errors import RunError
from ..runner.plots import plot_comparison
from ..runner.report import compare_table
from ..runner.rundir import read_history, read_results

__all__ = ["COMPARE_FILES", "collect_results", "compare", "move_comparison_aside",
           "run_in_process", "write_comparison"]

COMPARE_FILES = ("compare.md", "compare.json", "compare.png")


def run_in_process(plan: Sequence[RunSpec], resume: bool, overwrite: bool,
                   allow_change: Sequence[str], progress: bool) -> None:
    """Runs a plan one run after another in this process (`--in-process`), reusing a
    finished run of the same config with `resume`."""
    from ..runner.loop import train

    for i, run in enumerate(plan):
        label = f"[{i + 1}/{len(plan)}] {run.label}"
        if resume and finished(run):
            print(f"{label}: reused {run.run_dir} (same config)", file=sys.stderr)
            continue
        print(f"{label}: {'resuming' if resume else 'training'} in {run.run_dir} ...",
              file=sys.stderr, flush=True)
        tic = time.perf_counter()
        train(run.config, resume=resume, progress=progress, overwrite=overwrite,
              allow_change=allow_change, shared_process=True)
        print(f"{label}: done in {time.perf_counter() - tic:.0f} s", file=sys.stderr)


def collect_results(plan: Sequence[RunSpec],
                    allow_change: Sequence[str] = ()) -> Dict[str, List[Dict[str, Any]]]:
    """{config name: [results.json per seed]} from the plan's run folders.

    Arguments:
        plan: the runs.
        allow_change: the keys the command allowed to change (what a re-run is told).

    Raises:
        RunError: runs without results of the planned config, with the state of the first
            (what a re-run would do with one of another config; the log's last lines of a
            failed one) and how to continue.
    """
    states = plan_status(plan, allow_change=allow_change)
    missing = [(run, state) for run, state in zip(plan, states, strict=True)
               if state.state != DONE]
    if missing:
        run, state = missing[0]
        more = f" ({len(missing) - 1} more runs have none either)" if len(missing) > 1 else ""
        if state.state == CHANGED:
            raise RunError(f"{run.label} in {run.run_dir} has no results of this config: "
                           f"{state.detail}{more}. --status shows every run.")
        raise RunError(f"{run.label} in {run.run_dir} has no results: {state.state}"
                       f"{': ' + state.detail if state.detail else ''}{more}. Fix it and run "
                       f"the same command again with --resume (--status shows every run).")
    runs: Dict[str, List[Dict[str, Any]]] = {}
    for run in plan:
        results = read_results(run.run_dir)
        assert results is not None
        runs.setdefault(results["name"], []).append(results)
    return runs


def compare(config_paths: Sequence[str | Path], seeds: Sequence[int] = (0,),
            overrides: Sequence[str] = (), isolate: bool = True, resume: bool = False,
            out: Optional[str | Path] = None, overwrite: bool = False,
            allow_change: Sequence[str] = (), progress: bool = True,
            jobs: int = 1) -> Dict[str, List[Dict[str, Any]]]:
    """Runs every config for every seed; returns {config name: [results.json per seed]}.

    Arguments:
        config_paths: TOML configs, the first is the baseline of the table.
        seeds: the seeds each config runs with.
        overrides: `key=value` changes applied to every config.
        isolate: run each in a process of its own (its peak memory is then its own).
        resume: reuse a finished run only when its stored config equals the requested one;
            other runs continue from their checkpoint (or re-evaluate, if only evaluation
            settings changed).
        out: put every run under `out/<name>/seed<N>`.
        overwrite: move existing runs aside first.
        allow_change: with `resume`, keys that may differ from a checkpoint's config.
        progress: show progress bars (runs in this process only).
        jobs: with `isolate`, how many runs at once (local worker processes).

    Every run folder is checked (`launch.build_plan`) before the first run starts.

    Example:
        >>> runs = compare(["a.toml", "b.toml"], seeds=[0, 1], out="runs/cmp")  # doctest: +SKIP
    """
    plan = build_plan(config_paths, seeds, overrides, out, resume, overwrite)
    if isolate:
        launch(plan, "local", jobs=jobs, overwrite=overwrite, allow_change=allow_change)
    else:
        run_in_process(plan, resume, overwrite, allow_change, progress)
    return collect_results(plan, allow_change)


def move_comparison_aside(out: Path) -> Optional[Path]:
    """Moves `out`'s compare.md, compare.json and compare.png (those that exist) into
    `out/compare.old-<UTC time>/`, never deleting them; returns that folder, or None."""
    aside = move_files_aside(Path(out), COMPARE_FILES, "compare")
    if aside is not None:
        moved = ", ".join(n for n in COMPARE_FILES if (aside / n).exists())
        print(f"gbml_ext: moved the previous {moved} aside to {aside}", file=sys.stderr)
    return aside


def write_comparison(out: Path, runs: Dict[str, List[Dict[str, Any]]]) -> List[Path]:
    """Writes compare.md (the table), compare.json (every run's results) and compare.png
    (`plots.plot_comparison`, with each run's training curve) under `out`."""
    out = Path(out)
    histories = {name: [read_history(r.get("run_dir", "")) for r in results]
                 for name, results in runs.items()}
    return [atomic_write_text(out / "compare.md", compare_table(runs)),
            atomic_write_json(out / "compare.json", runs),
            plot_comparison(runs, histories, out / "compare.png")]
