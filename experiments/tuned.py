"""Every algorithm on Omniglot, tuned: each row of the every-algorithm grid (5w1s and 20w1s, at
the grid's budget) gets the same search, 8 trials over its inner rate and the keys its paper
tunes, scored on validation tasks with the evaluation steps chosen there; then its best config
runs seeds 0 and 1 on the test split; and the headline rows (MAML, ANIL, MAML-KFO, ANIL-KFO on
5w1s) run with their tuned settings at 10x the grid's meta-iterations.

    python -m experiments.tuned tune --jobs 2       # every row's study, cheapest rows first;
                                                    #   the same command again continues it
    python -m experiments.tuned tune --status       # each study's trials so far
    python -m experiments.tuned final --jobs 2      # each tuned row's best config, seeds 0, 1
    python -m experiments.tuned headline --jobs 2   # the headline rows at 10x, seeds 0, 1
    python -m experiments.tuned final --status      # done / running / failed, per run
    python -m experiments.tuned again --settings 20w1s --row anil
                                    # keep a row's ended study as its first range (its best
                                    #   trial fell at an edge); widen the range in its config
                                    #   and `tune` searches it again
    python -m experiments.tuned archive    # the studies' tables and best configs, the finished
                                           #   runs' small files, to experiments/results/tuned
    python -m experiments.tuned restore    # the committed runs back into runs/tuned
    python -m experiments.tuned report     # docs/omniglot-tuned.md's tables and figure, from
                                           #   experiments/results/tuned (--out DIR)

The rows are experiments/configs/omniglot/{5w1s-tuned,20w1s-tuned}/*.toml, each over its
every-algorithm row with a `[tune]` table (gbml-tune's). Layout under the runs folder: a row's
study in `<setting>/studies/<row>/` (gbml-tune's `--out`: its store, trials and best.toml), the
final runs in `<setting>/<config name>/seed<N>`, the headline runs in
`headline/<name>/seed<N>`. Every run takes one torch thread (the rows' `threads = 1`).
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import List, Optional, Sequence

from experiments.algorithms_grid import SETTINGS
from experiments.sweep import (
    Entry,
    archive_runs,
    launch_sweep,
    restore,
    sweep_arguments,
    sweep_plan,
)
from experiments.tuned_grid import (
    FIRST_RANGE_FOLDER,
    HEADLINE,
    HEADLINE_EVAL_EVERY,
    HEADLINE_FACTOR,
    HEADLINE_SETTING,
    KEEP,
    RESULTS,
    ROWS,
    RUNS,
    SPACE_FILE,
    STUDY_FILES,
    STUDY_FOLDERS,
    TRIALS,
    best_config,
    headline_name,
    row_config,
    rows,
    run_name,
    study_folder,
)
from gbml_ext.fileio import atomic_write_text
from gbml_ext.runner import load_config
from gbml_ext.tune import TuneError
from gbml_ext.tune.study import searched_space

# ---- The search: the one place that calls gbml-tune ----------------------------------------

def tune_study(config: Path, trials: int, out: Path, overrides: Sequence[str] = (),
               launcher: str = "local", jobs: int = 1, threads: Optional[int] = None,
               slurm: Sequence[str] = (), status: bool = False) -> int:
    """Runs, continues or (`status`) shows the study of `config` in `out`: `gbml-tune CONFIG
    --trials N --out DIR [--jobs N | --launcher slurm --slurm ...] [key=value ...]`; returns
    its exit code."""
    from gbml_ext.tune.cli import main as gbml_tune

    argv = [str(config), "--trials", str(trials), "--out", str(out), "--launcher", launcher,
            "--jobs", str(jobs), *(["--threads", str(threads)] if threads else []),
            *(["--slurm", *slurm] if slurm else []), *(["--status"] if status else []),
            "--no-progress", *overrides]
    return gbml_tune(argv)


def tune_all(settings: Sequence[str], root: str | Path, runs: Path,
             args: argparse.Namespace, overrides: Sequence[str] = ()) -> int:
    """Every row's study, one after another (each with `--jobs` trials at once), settings in
    the order given and the cheapest rows first; 1 if any study did not finish. Ctrl-C or
    SIGTERM stops here too (gbml-tune's exit 128 + the signal), not only the study it hit."""
    failed = []
    for setting in settings:
        for row in (r for r in ROWS if r in rows(setting)):
            code = tune_study(row_config(setting, row), TRIALS,
                              study_folder(runs, setting, row),
                              [f"data.root='{root}'", *overrides],
                              args.launcher, args.jobs, args.threads, args.slurm, args.status)
            if code > 128:
                print(f"tuned: stopped at {setting}/{row}; the same command continues from "
                      f"there.", file=sys.stderr)
                return code
            if code:
                failed.append(f"{setting}/{row}")
    if failed:
        print(f"tuned: {len(failed)} stud{'y' if len(failed) == 1 else 'ies'} did not finish "
              f"({', '.join(failed)}); run the same command again.", file=sys.stderr)
    return 1 if failed else 0


# ---- The final and headline runs -----------------------------------------------------------

def final_plan(settings: Sequence[str], seeds: Sequence[int], root: str | Path,
               runs: Path = RUNS, overrides: Sequence[str] = ()) -> List[Entry]:
    """Each tuned row's best config (its ended study's best.toml) for every seed, on the test
    split, in `<runs>/<setting>/<config name>/seed<N>`; rows whose study has not ended are left
    out (and named on stderr)."""
    entries, untuned = [], []
    for seed in seeds:
        for setting in settings:
            for row in (r for r in ROWS if r in rows(setting)):
                best = best_config(study_folder(runs, setting, row))
                if best is None:
                    untuned.append(f"{setting}/{row}")
                    continue
                entries.append(Entry(best, seed, [f"data.root='{root}'",
                                                  f"name='{run_name(setting, row)}'",
                                                  "evaluation.split='test'", *overrides],
                                     runs / setting))
    if untuned:
        shown = sorted(set(untuned))
        print(f"tuned: the studies of {', '.join(shown)} have not ended (run `tune` "
              f"first); planned the others.", file=sys.stderr)
    return entries


def headline_plan(seeds: Sequence[int], root: str | Path, runs: Path = RUNS,
                  overrides: Sequence[str] = ()) -> List[Entry]:
    """The headline rows with their tuned 5w1s settings at `HEADLINE_FACTOR` times the grid's
    meta-iterations (the same tasks per meta-iteration), every seed."""
    entries = []
    for seed in seeds:
        for row in HEADLINE:
            best = best_config(study_folder(runs, HEADLINE_SETTING, row))
            if best is None:
                print(f"tuned: the study of {HEADLINE_SETTING}/{row} has not ended (run `tune` "
                      f"first); planned the others.", file=sys.stderr)
                continue
            iterations = load_config(row_config(HEADLINE_SETTING, row)).train.iterations
            entries.append(Entry(best, seed, [
                f"data.root='{root}'", f"name='{headline_name(row)}'", "evaluation.split='test'",
                f"train.iterations={HEADLINE_FACTOR * iterations}",
                f"train.eval_every={HEADLINE_EVAL_EVERY}", *overrides], runs / "headline"))
    return entries


# ---- Archive -------------------------------------------------------------------------------

def set_aside(runs: Path, setting: str, row: str, results: Path = RESULTS) -> Path:
    """Keeps `row`'s ended study as its first range, `<setting>/first-range/<row>/` (under
    `runs`, and under `results` if archived), with the range it searched (space.json, read from
    its store), so that `tune` searches the row again over the range now in its config. Returns
    the kept folder. Exits, moving nothing, when the study has not ended or the row was already
    searched again."""
    study, kept = study_folder(runs, setting, row), runs / setting / FIRST_RANGE_FOLDER / row
    archived = results / setting / FIRST_RANGE_FOLDER / row
    if best_config(study) is None:
        sys.exit(f"tuned: the study of {setting}/{row} in {study} has not ended; let `tune` "
                 f"finish it first.")
    for folder in (kept, archived):
        if folder.exists():
            sys.exit(f"tuned: {folder} already holds the first study of {setting}/{row} (a row "
                     f"is searched again once); nothing was moved.")
    try:
        space = searched_space(study)
    except TuneError as error:
        sys.exit(f"tuned: {error}")
    atomic_write_text(study / SPACE_FILE, json.dumps(space, indent=2) + "\n")
    kept.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(study, kept)
    if study_folder(results, setting, row).is_dir():
        archived.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(study_folder(results, setting, row), archived)
        shutil.copy2(kept / SPACE_FILE, archived / SPACE_FILE)
    print(f"tuned: kept {setting}/{row}'s study in {kept}; widen its range in "
          f"{row_config(setting, row)} and run `tune` to search it again.")
    return kept


def _copy_studies(source: Path, target: Path, skip_existing: bool) -> int:
    """Copies each study's `STUDY_FILES` from `source/<setting>/{studies,first-range}/<row>` to
    the same place under `target` (with `skip_existing`, not into a study folder that exists)."""
    copied = 0
    for setting, kind in ((s, k) for s in SETTINGS for k in STUDY_FOLDERS):
        for study in sorted(p for p in (source / setting / kind).glob("*") if p.is_dir()):
            folder = target / study.relative_to(source)
            if skip_existing and folder.exists():
                continue
            for name in STUDY_FILES:
                if (study / name).is_file():
                    folder.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(study / name, folder / name)
                    copied += 1
    return copied


def archive(runs: Path, results: Path = RESULTS) -> int:
    """Copies every study's report files and best config (`STUDY_FILES`) and the small files
    (`KEEP`) of every finished final and headline run from `runs` to the same place under
    `results`; checkpoints, trial folders and study stores stay behind. Returns the number of
    study files and runs copied."""
    copied = _copy_studies(runs, results, skip_existing=False)
    for setting in (*SETTINGS, "headline"):
        for folder in sorted(p for p in (runs / setting).glob("*")
                             if p.is_dir() and p.name not in STUDY_FOLDERS):
            copied += archive_runs(folder, results / setting / folder.name, KEEP)
    print(f"tuned: archived {copied} study files and finished runs from {runs} under {results}")
    return copied


def restore_all(runs: Path, results: Path = RESULTS) -> None:
    """The committed finished runs and studies' best configs back under `runs`, never over
    existing folders (so `final` and `headline` go on without tuning again)."""
    restore(runs, results, "tuned")
    copied = _copy_studies(results, runs, skip_existing=True)
    print(f"tuned: restored {copied} study files into {runs}")


def main(argv: Optional[Sequence[str]] = None) -> int:
    from experiments import tuned_report as report

    parser = argparse.ArgumentParser(prog="python -m experiments.tuned",
                                     description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("command", choices=("tune", "final", "headline", "report", "archive",
                                            "restore", "again"))
    sweep_arguments(parser, str(RUNS))
    parser.set_defaults(out=None)
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=SETTINGS,
                        help="tune, final: the settings")
    parser.add_argument("--runs", type=Path, default=RUNS, help="archive, again: the runs folder")
    parser.add_argument("--row", choices=ROWS, help="again: the row to search again")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="tune, final, headline: a config change for "
                        "every run (after the row's own settings)")
    parser.add_argument("--doc", type=Path, default=report.DOC, help="report: the page")
    parser.add_argument("--png", type=Path, default=report.FIGURE, help="report: the figure")
    args = parser.parse_args(argv)
    runs = args.out or RUNS
    if args.command in ("tune", "final", "headline"):
        if not args.root.exists():
            sys.exit(f"tuned: Omniglot not found at {args.root}; pass --root with the "
                     f"omniglot-py folder or its .tar.gz.")
        if args.command == "tune":
            return tune_all(args.settings, args.root, runs, args, args.overrides)
        entries = (final_plan(args.settings, args.seeds, args.root, runs, args.overrides)
                   if args.command == "final"
                   else headline_plan(args.seeds, args.root, runs, args.overrides))
        if not entries:
            sys.exit(f"tuned: nothing to run: no study under {runs} has ended yet; run "
                     f"`python -m experiments.tuned tune` first.")
        return launch_sweep(sweep_plan(entries), args, "tuned")
    if args.command == "again":
        if args.row is None or len(args.settings) != 1:
            sys.exit("tuned: `again` takes one --settings and a --row (e.g. --settings 20w1s "
                     "--row anil).")
        set_aside(args.runs, args.settings[0], args.row, args.out or RESULTS)
    elif args.command == "archive":
        archive(args.runs, args.out or RESULTS)
    elif args.command == "restore":
        restore_all(runs, RESULTS)
    else:
        drawn = report.write_report(args.out or RESULTS, args.doc, args.png, args.seeds)
        print(f"tuned: wrote {args.doc}" + (f" and {args.png}" if drawn else
                                            " (no final run yet: no figure)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
