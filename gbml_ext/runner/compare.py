"""Side-by-side comparison of several configs on the same tasks and seeds, and `gbml-compare`.

`compare` runs each config for each seed (by default each in its own process, so that peak
memory is that run's alone); `report.compare_table` tabulates training time, time per
iteration, peak memory, test accuracy (or loss) with its 95% CI, and final training loss, with
ratios against the first config: the layout of the well-known "MAML vs FOMAML" table.

    gbml-compare CONFIG_A CONFIG_B ... --seeds 0 1 2 train.iterations=500 --out runs/cmp

Every run folder is checked before the first run starts: two runs that would share a folder
or a name, and (without --resume or --overwrite) folders that already hold something, are
refused up front.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from ..fileio import atomic_write_json, atomic_write_text, move_files_aside
from ..launch import (
    LAUNCHERS,
    RunSpec,
    build_plan,
    format_status,
    launch,
    parse_slurm_options,
    plan_status,
)
from ..launch.status import finished
from .config import describe_config, load_config
from .errors import RunError
from .options import command_parser, parse_command, run_command
from .plots import plot_comparison
from .report import compare_table
from .rundir import read_history, read_results
from .summaries import comparable_summaries, pooled_summary

__all__ = ["COMPARE_FILES", "collect_results", "comparable_summaries", "compare",
           "compare_table", "main", "move_comparison_aside", "pooled_summary", "write_comparison"]

COMPARE_FILES = ("compare.md", "compare.json", "compare.png")


def _in_process(plan: Sequence[RunSpec], resume: bool, overwrite: bool,
                allow_change: Sequence[str], progress: bool) -> None:
    """Runs a plan one run after another in this process (`--in-process`)."""
    from .loop import train

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


def collect_results(plan: Sequence[RunSpec]) -> Dict[str, List[Dict[str, Any]]]:
    """{config name: [results.json per seed]} from the plan's run folders.

    Raises:
        RunError: runs without results, with the state of the first (its log's last lines
            for a failed one) and how to continue.
    """
    states = plan_status(plan)
    missing = [(run, state) for run, state in zip(plan, states, strict=True)
               if state.state != "done"]
    if missing:
        run, state = missing[0]
        more = f" ({len(missing) - 1} more runs have none either)" if len(missing) > 1 else ""
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
        _in_process(plan, resume, overwrite, allow_change, progress)
    return collect_results(plan)


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


def launcher_arguments(parser: Any) -> None:
    """The options of every command that runs a plan: where (`--launcher`, `--jobs`,
    `--threads`, `--slurm`), `--wait` and `--status`."""
    parser.add_argument("--launcher", choices=LAUNCHERS, default="local",
                        help="local: worker processes here (default); slurm: one Slurm job "
                             "per run through submitit (pip install 'gbml_ext[cluster]')")
    parser.add_argument("--jobs", type=int, default=1, metavar="N",
                        help="local: runs at once, each in its own process (default 1)")
    parser.add_argument("--threads", type=int, default=None, metavar="N",
                        help="local: torch threads per run (default 1 when --jobs > 1)")
    parser.add_argument("--slurm", nargs="*", default=[], metavar="KEY=VALUE",
                        help="Slurm job settings: partition=... time=MINUTES "
                             "gpus_per_node=N cpus_per_task=N mem=16G account=... qos=... "
                             "nodes=N tasks_per_node=N")
    parser.add_argument("--wait", action="store_true",
                        help="slurm: wait for every job to end, then write the table")
    parser.add_argument("--status", action="store_true",
                        help="show each run as done / running / queued / failed / not "
                             "started, from the run folders and Slurm; start nothing")


def main(argv: Optional[Sequence[str]] = None) -> int:
    """`gbml-compare`: run configs side by side; table, JSON and PNG."""
    parser = command_parser(
        "gbml-compare", "Run configs side by side on the same tasks and seeds, and tabulate "
        "them against the first.",
        "gbml-compare maml.toml fomaml.toml --seeds 0 1 2 --out runs/cmp train.iterations=500",
        runs=True)
    parser.add_argument("configs", nargs="+", help="TOML configs; the first is the baseline")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], metavar="N")
    parser.add_argument("--in-process", action="store_true",
                        help="run in this process (faster; peak memory is then shared)")
    parser.add_argument("--out", default=None, metavar="DIR",
                        help="put every run under this folder, with compare.{md,json,png}")
    launcher_arguments(parser)
    args, overrides = parse_command(parser, argv)

    def body() -> int:
        if args.print_config:
            for path in args.configs:
                print(f"# {path}\n" + describe_config(load_config(path, overrides)))
            return 0
        slurm = args.launcher == "slurm"
        plan = build_plan(args.configs, args.seeds, overrides, args.out,
                          args.resume or args.status or slurm, args.overwrite)
        if args.status:
            print(format_status(plan, plan_status(plan)))
            return 0
        if args.overwrite and args.out:
            move_comparison_aside(Path(args.out))
        if args.in_process:
            if slurm or args.jobs != 1:
                raise RunError("--in-process runs one run after another here; drop "
                               "--launcher slurm / --jobs, or drop --in-process.")
            _in_process(plan, args.resume, args.overwrite, args.allow_change,
                        not args.no_progress)
        else:
            states = launch(plan, args.launcher, args.jobs, args.threads,
                            parse_slurm_options(args.slurm), args.wait or not slurm,
                            args.overwrite, args.allow_change)
            if slurm and not args.wait and any(s.state != "done" for s in states):
                print("gbml-compare: submitted; see progress with the same command and "
                      "--status, and the table with --wait (or once every run is done).",
                      file=sys.stderr)
                return 0
        runs = collect_results(plan)
        try:
            print(compare_table(runs))
        except ValueError as error:  # a regression run among classifiers
            raise RunError(str(error)) from error
        if args.out:
            write_comparison(Path(args.out), runs)
            print(f"wrote {args.out}/compare.md, compare.json, compare.png", file=sys.stderr)
        else:
            folders = ", ".join(str(run.run_dir) for run in plan[:3])
            print(f"gbml-compare: the table is not saved; each run's results.json is in its "
                  f"folder ({folders}{', ...' if len(plan) > 3 else ''}). Add --out DIR to "
                  f"write compare.md, compare.json and compare.png there.", file=sys.stderr)
        return 0

    return run_command("gbml-compare", body, args.debug)


if __name__ == "__main__":
    sys.exit(main())
