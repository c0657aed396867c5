"""What every sweep script (curve, budget, algorithms) shares: its options, its runs as one
plan, launching that plan (or showing its state), and restoring committed results.

A sweep lists its runs as `Entry`s (config, seed, overrides, folder); `sweep_plan` turns them
into one checked plan (two runs that would share a folder are refused before anything starts)
and `launch_sweep` hands it to the launcher the command line chose:

    python -m experiments.curve run --jobs 2                       # two local processes
    python -m experiments.curve run --launcher slurm --slurm partition=gpu gpus_per_node=1
    python -m experiments.curve run --status                       # start nothing
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Sequence

from gbml_ext.launch import (
    FAILED,
    LAUNCHERS,
    RunSpec,
    build_plan,
    check_plan,
    format_status,
    launch,
    launcher_arguments,
    parse_slurm_options,
    plan_status,
)
from gbml_ext.runner.options import exit_code_of

__all__ = ["DEFAULT_ROOT", "SEED_FOLDER", "Entry", "archive_runs", "data_root", "launch_sweep",
           "restore", "seed_folders", "seed_number", "seed_results", "sweep_arguments",
           "sweep_plan"]

DEFAULT_ROOT = Path("../shared/data/omniglot/omniglot-py.tar.gz")
# A run's folder for one seed, as the launchers name it (gbml_ext.launch.plan).
SEED_FOLDER = re.compile(r"seed(\d+)")


@dataclass
class Entry:
    """One run of a sweep: `config` for `seed` with `overrides`, under `out/<name>/seed<N>`."""

    config: Path
    seed: int
    overrides: List[str] = field(default_factory=list)
    out: Path = Path("runs")


def data_root(root: Path) -> str:
    """`root` as a config value, or exit with one line if it does not exist."""
    if not root.exists():
        sys.exit(f"sweep: Omniglot not found at {root}. Pass --root with the omniglot-py folder "
                 f"or its .tar.gz (see docs/reproduction.md).")
    return str(root)


def sweep_arguments(parser: argparse.ArgumentParser, out: str) -> None:
    """The options every sweep shares: seeds, data, folder, and the launcher's."""
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT, help="Omniglot data")
    parser.add_argument("--out", type=Path, default=Path(out))
    launcher_arguments(parser)


def sweep_plan(entries: Sequence[Entry]) -> List[RunSpec]:
    """The entries as one plan (every run resumable), checked for shared folders."""
    plan = [spec for entry in entries
            for spec in build_plan([entry.config], [entry.seed], entry.overrides, entry.out,
                                   resume=True)]
    check_plan(plan)
    return plan


def launch_sweep(plan: Sequence[RunSpec], args: argparse.Namespace, prog: str) -> int:
    """Launches `plan` as the options say (or prints its state with --status); 0 when every
    run is done (or, with Slurm and no --wait, submitted), 1 otherwise."""
    def body() -> int:
        if args.status:
            print(format_status(plan, plan_status(plan)))
            return 0
        detached = LAUNCHERS[args.launcher].detached
        states = launch(plan, args.launcher, args.jobs, args.threads,
                        parse_slurm_options(args.slurm), args.wait or not detached)
        failed = [spec.label for spec, state in zip(plan, states, strict=True)
                  if state.state == FAILED]
        if failed:
            print(f"{prog}: {len(failed)} run(s) failed ({', '.join(failed[:3])}"
                  f"{', ...' if len(failed) > 3 else ''}); see --status, then run the same "
                  f"command again.", file=sys.stderr)
            return 1
        return 0

    return exit_code_of(prog, body, debug=False)


def seed_folders(folder: Path) -> List[Path]:
    """The run folders `seed<N>` directly under `folder`, by seed; the copies that a re-run
    moves aside (`seed0.old-<time>`) are left out.

    Example:
        >>> seed_folders(Path("no/such/run"))
        []
    """
    found = [(int(match.group(1)), path) for path in folder.glob("seed*")
             if path.is_dir() and (match := SEED_FOLDER.fullmatch(path.name))]
    return [path for _, path in sorted(found)]


def seed_number(folder: Path) -> int:
    """N of a run folder `seed<N>`.

    Example:
        >>> seed_number(Path("runs/maml/seed12"))
        12
    """
    match = SEED_FOLDER.fullmatch(folder.name)
    if match is None:
        raise ValueError(f"{folder} is not a run folder named seed<N>")
    return int(match[1])


def seed_results(folder: Path) -> List[Dict[str, Any]]:
    """Each seed's results.json under `folder` (`folder/seed<N>/results.json`), by seed; a seed
    without one is left out."""
    return [json.loads((p / "results.json").read_text()) for p in seed_folders(folder)
            if (p / "results.json").is_file()]


def archive_runs(runs: Path, archive: Path, keep: Sequence[str]) -> int:
    """Copies the files named in `keep` (never checkpoints) of every finished run (a `seed<N>`
    folder with a results.json) under `runs` to the same place under `archive`; returns the
    runs copied."""
    copied = 0
    for done in sorted(p for p in runs.rglob("seed*/results.json")
                       if SEED_FOLDER.fullmatch(p.parent.name)):
        target = archive / done.parent.relative_to(runs)
        target.mkdir(parents=True, exist_ok=True)
        for name in keep:
            if (done.parent / name).is_file():
                shutil.copy2(done.parent / name, target / name)
        copied += 1
    return copied


def restore(out: Path, archive: Path, sweep: str) -> None:
    """Copies the committed results of finished runs (under `archive`) into `out`, never over
    existing files."""
    copied = 0
    for source in archive.rglob("seed*/results.json"):
        folder = out / source.parent.relative_to(archive)
        if folder.exists():
            continue
        shutil.copytree(source.parent, folder)
        copied += 1
    print(f"{sweep}: restored {copied} finished runs into {out}")
