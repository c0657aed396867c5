"""`make demo`, timed back to back against an older commit.

Checks out `--baseline` into a temporary git worktree and runs `python -m experiments.synthetic`
there and here, alternately, each into an empty folder, for `--rounds` rounds; every `--set`
variant of the current tree runs in each round too. Prints the wall times (process start to
exit, imports included), the ratios to the baseline, and whether each run printed the same
loss table as the baseline (the timing column and line left out).

    python -m benchmarks.demo_speed --baseline 2439c90 --rounds 2 \\
        --variant "" --variant "threads=1" --json demo.json
"""
from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence

__all__ = ["loss_table", "main", "worktree"]

REPO = Path(__file__).resolve().parents[1]


def loss_table(stdout: str) -> str:
    """The printed tables without what changes from run to run (times and the date)."""
    lines = [line for line in stdout.splitlines() if line.startswith("|")]
    return "\n".join(line.rsplit("|", 2)[0] for line in lines)  # drops "meta-train s / seed"


def _run(cwd: Path, out: Path, sets: Sequence[str]) -> Dict[str, Any]:
    command = [sys.executable, "-m", "experiments.synthetic", "--out", str(out)]
    for item in sets:
        command += ["--set", item]
    tic = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    seconds = time.perf_counter() - tic
    if done.returncode:
        raise SystemExit(f"demo_speed: {' '.join(command)} failed in {cwd}:\n{done.stderr[-2000:]}")
    return {"seconds": seconds, "table": loss_table(done.stdout)}


@contextlib.contextmanager
def worktree(revision: Optional[str]) -> Iterator[Optional[Path]]:
    """A temporary git worktree of `revision` (None: no worktree)."""
    if revision is None:
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="baseline-") as scratch:
        path = Path(scratch) / "baseline"
        subprocess.run(["git", "worktree", "add", "--detach", str(path), revision], cwd=REPO,
                       check=True, capture_output=True)
        try:
            yield path
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(path)], cwd=REPO,
                           capture_output=True)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.demo_speed",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", default="2439c90", help="git revision to compare against")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--variant", action="append", default=None,
                        help="space-separated --set items for the current tree ('' = as is)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    variants = args.variant if args.variant is not None else [""]
    times: Dict[str, List[float]] = {}
    same_table: Dict[str, List[bool]] = {}
    with tempfile.TemporaryDirectory(prefix="demo-speed-") as scratch, \
            worktree(args.baseline) as old:
        assert old is not None
        for round_ in range(args.rounds):
            reference = _run(old, Path(scratch) / f"old-{round_}", [])
            times.setdefault(args.baseline, []).append(float(reference["seconds"]))
            for i, variant in enumerate(variants):
                name = f"now {variant}".strip()
                run = _run(REPO, Path(scratch) / f"now-{i}-{round_}", variant.split())
                times.setdefault(name, []).append(float(run["seconds"]))
                same_table.setdefault(name, []).append(run["table"] == reference["table"])
            print(f"round {round_ + 1}: " + ", ".join(
                f"{k} {v[-1]:.1f} s" for k, v in times.items()), flush=True)
    base = times[args.baseline]
    print(f"\n| run | {args.baseline} | " + " | ".join(n for n in times if n != args.baseline)
          + " |")
    for r in range(args.rounds):
        cells = [f"{times[n][r]:.1f} s ({base[r] / times[n][r]:.2f}x)"
                 for n in times if n != args.baseline]
        print(f"| {r + 1} | {base[r]:.1f} s | " + " | ".join(cells) + " |")
    print("same loss table as the baseline: " + ", ".join(
        f"{n}: {all(v)}" for n, v in same_table.items()))
    if args.json:
        Path(args.json).write_text(json.dumps({
            "command": "python -m benchmarks.demo_speed " + " ".join(sys.argv[1:]),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "seconds": times, "same_table": same_table,
            "median_ratio": {n: statistics.median(b / t for b, t in zip(base, v, strict=True))
                             for n, v in times.items() if n != args.baseline}}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
