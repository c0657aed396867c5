"""The command-line options of every command that runs a plan (`gbml-compare`, the sweeps):
where (`--launcher`, `--jobs`, `--threads`, `--slurm`), `--wait` and `--status`."""
from __future__ import annotations

import argparse

from .registry import LAUNCHERS

__all__ = ["launcher_arguments"]


def launcher_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds the launcher's options to `parser`; `--launcher` takes every registered launcher.

    Example:
        >>> parser = argparse.ArgumentParser()
        >>> launcher_arguments(parser)
        >>> args = parser.parse_args(["--jobs", "2"])
        >>> args.launcher, args.jobs, args.status
        ('local', 2, False)
    """
    parser.add_argument("--launcher", choices=LAUNCHERS.names(), default="local",
                        help="; ".join(f"{name}: {LAUNCHERS.doc(name)}"
                                       for name in LAUNCHERS.names()))
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
                        help="show each run as done / running / queued / failed / changed / "
                             "not started, from the run folders and Slurm; start nothing")
