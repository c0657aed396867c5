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

import datetime
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ..fileio import atomic_write_json, atomic_write_text
from .config import Config, config_to_dict, describe_config, load_config
from .errors import DamagedFileError, RunError, RunFolderError
from .options import command_parser, parse_command, run_command
from .plots import plot_comparison
from .report import compare_table
from .rundir import (
    IMPLEMENTATION_KEYS,
    config_differences,
    flatten,
    folder_in_use,
    holds_run,
    read_history,
    read_results,
)
from .summaries import comparable_summaries, pooled_summary

__all__ = ["COMPARE_FILES", "PlannedRun", "comparable_summaries", "compare", "compare_table",
           "main", "move_comparison_aside", "plan_runs", "pooled_summary", "run_plan",
           "write_comparison"]

COMPARE_FILES = ("compare.md", "compare.json", "compare.png")


@dataclass
class PlannedRun:
    """One run of a comparison: `config_path` for `seed`, with the resolved `config` and the
    overrides (`args`) that give it."""

    config_path: str
    seed: int
    config: Config
    args: List[str]

    @property
    def run_dir(self) -> Path:
        return self.config.run_dir()


def _run_config(config_path: str, seed: int, overrides: Sequence[str],
                out: Optional[str]) -> Tuple[Config, List[str]]:
    args = [f"seed={seed}", *overrides]
    config = load_config(config_path, args)
    if out is not None:  # every run of a comparison lives under its --out folder
        slug = config.run_dir().parent.name
        args.append(f"output_dir='{Path(out) / slug / f'seed{seed}'}'")
        config = load_config(config_path, args)
    return config, args


def plan_runs(config_paths: Sequence[str | Path], seeds: Sequence[int],
              overrides: Sequence[str] = (), out: Optional[str | Path] = None,
              resume: bool = False, overwrite: bool = False) -> List[PlannedRun]:
    """Every run of a comparison, checked before any starts.

    Raises:
        ConfigError: a config that does not load.
        RunFolderError: two runs that would share a folder or a name (the same config twice,
            or two configs with the same `name`), or, without `resume` or `overwrite`,
            folders that already hold something.
    """
    plan = [PlannedRun(str(path), seed, *_run_config(str(path), seed, overrides,
                                                     None if out is None else str(out)))
            for path in config_paths for seed in seeds]
    folders: Dict[Path, PlannedRun] = {}
    names: Dict[str, str] = {}
    for run in plan:
        other = folders.get(run.run_dir.resolve())
        if other is not None:
            if other.config_path == run.config_path:
                raise RunFolderError(f"{run.config_path} is listed twice (the same config twice "
                                     f"would write {run.run_dir} twice); list it once.")
            named = (f" (both are named {run.config.name!r})"
                     if other.config.name == run.config.name else "")
            raise RunFolderError(
                f"{other.config_path} and {run.config_path} would both write "
                f"{run.run_dir}{named}. Give each its own name = ... (or output_dir) in its "
                f"file.")
        folders[run.run_dir.resolve()] = run
        first = names.setdefault(run.config.name, run.config_path)
        if first != run.config_path:
            raise RunFolderError(
                f"{first} and {run.config_path} are both named {run.config.name!r}, so they "
                f"would share a row of the table. Give each its own name = ... in its file.")
    if not (resume or overwrite):
        used = [run for run in plan if holds_run(run.run_dir)]
        if used:
            more = f" {len(used) - 1} more of its run folders are in use too." if len(
                used) > 1 else ""
            raise RunFolderError(folder_in_use(used[0].run_dir, "--out DIR") + more)
    return plan


def _reusable(run: PlannedRun) -> bool:
    """A finished run is reused only if its stored config equals the requested one (paths,
    logging and checkpointing aside). A damaged results.json is said so, and the run resumed."""
    try:
        results = read_results(run.run_dir)
    except DamagedFileError as error:
        print(f"gbml-compare: {error.path} is damaged; resuming {run.config.name} seed "
              f"{run.seed} from its checkpoint to write it again (the damaged file is kept "
              f"beside it).", file=sys.stderr)
        return False
    if results is None or not isinstance(results.get("config"), dict):
        return False
    saved = results["config"]
    same = not config_differences(saved, config_to_dict(run.config), ignore=IMPLEMENTATION_KEYS)
    return same and flatten(saved).get("train.iterations") == run.config.train.iterations


def _run(run: PlannedRun, isolate: bool, resume: bool, overwrite: bool,
         allow_change: Sequence[str], progress: bool, label: str) -> Dict[str, Any]:
    config, run_dir = run.config, run.run_dir
    if resume and _reusable(run):
        print(f"{label} {config.name} seed {run.seed}: reused {run_dir} (same config)",
              file=sys.stderr)
        results = read_results(run_dir)
        assert results is not None
        return results
    print(f"{label} {config.name} seed {run.seed}: {'resuming' if resume else 'training'} in "
          f"{run_dir} ...", file=sys.stderr, flush=True)
    tic = time.perf_counter()
    if isolate:
        command = [sys.executable, "-m", "gbml_ext.runner", run.config_path, *run.args,
                   "--no-progress"]
        flags = ["--resume"] if resume else ["--overwrite"] if overwrite else []
        flags += ["--allow-change", *allow_change] if allow_change else []
        completed = subprocess.run(command + flags)
        if completed.returncode:
            raise RunError(f"run {run.config_path} seed {run.seed} failed (exit "
                           f"{completed.returncode}); its error is printed above. Fix it and "
                           f"rerun with --resume.")
    else:
        from .loop import train

        train(config, resume=resume, progress=progress, overwrite=overwrite,
              allow_change=allow_change, shared_process=True)
    results = read_results(run_dir)
    if results is None:
        raise RunError(f"run {run.config_path} seed {run.seed} wrote no results in {run_dir}; "
                       f"rerun with --resume.")
    print(f"{label} {config.name} seed {run.seed}: done in {time.perf_counter() - tic:.0f} s",
          file=sys.stderr)
    return results


def run_plan(plan: Sequence[PlannedRun], isolate: bool = True, resume: bool = False,
             overwrite: bool = False, allow_change: Sequence[str] = (),
             progress: bool = True) -> Dict[str, List[Dict[str, Any]]]:
    """Runs a checked plan (`plan_runs`); returns {config name: [results.json per seed]}."""
    runs: Dict[str, List[Dict[str, Any]]] = {}
    for i, run in enumerate(plan):
        result = _run(run, isolate, resume, overwrite, allow_change, progress,
                      f"[{i + 1}/{len(plan)}]")
        runs.setdefault(result["name"], []).append(result)
    return runs


def compare(config_paths: Sequence[str | Path], seeds: Sequence[int] = (0,),
            overrides: Sequence[str] = (), isolate: bool = True, resume: bool = False,
            out: Optional[str | Path] = None, overwrite: bool = False,
            allow_change: Sequence[str] = (),
            progress: bool = True) -> Dict[str, List[Dict[str, Any]]]:
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

    Every run folder is checked (`plan_runs`) before the first run starts.

    Example:
        >>> runs = compare(["a.toml", "b.toml"], seeds=[0, 1], out="runs/cmp")  # doctest: +SKIP
    """
    plan = plan_runs(config_paths, seeds, overrides, out, resume, overwrite)
    return run_plan(plan, isolate, resume, overwrite, allow_change, progress)


def move_comparison_aside(out: Path) -> Optional[Path]:
    """Moves `out`'s compare.md, compare.json and compare.png (those that exist) into
    `out/compare.old-<UTC time>/`, never deleting them; returns that folder, or None."""
    out = Path(out)
    present = [out / name for name in COMPARE_FILES if (out / name).exists()]
    if not present:
        return None
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%S")
    aside, suffix = out / f"compare.old-{stamp}", 1
    while aside.exists():
        aside, suffix = out / f"compare.old-{stamp}-{suffix}", suffix + 1
    aside.mkdir()
    for path in present:
        path.rename(aside / path.name)
    print(f"gbml_ext: moved the previous {', '.join(p.name for p in present)} aside to {aside}",
          file=sys.stderr)
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
    args, overrides = parse_command(parser, argv)

    def body() -> int:
        if args.print_config:
            for path in args.configs:
                print(f"# {path}\n" + describe_config(load_config(path, overrides)))
            return 0
        plan = plan_runs(args.configs, args.seeds, overrides, args.out, args.resume,
                         args.overwrite)
        if args.overwrite and args.out:
            move_comparison_aside(Path(args.out))
        runs = run_plan(plan, isolate=not args.in_process, resume=args.resume,
                        overwrite=args.overwrite, allow_change=args.allow_change,
                        progress=not args.no_progress)
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
