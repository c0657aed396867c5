"""The headline run: Omniglot 5-way 1-shot MAML at the MAML paper's settings, trained on the GPU
for a wall-clock budget, then evaluated on 600 test tasks.

    python3 scripts/gpu_headline.py --minutes 4 --out DIR      # or: make gpu-headline MINUTES=4
    python3 scripts/gpu_headline.py --minutes 4 --out DIR --path compiled --cuda-graphs
    python3 scripts/gpu_headline.py --device cpu --dry-run --minutes 0.05 --out DIR   # tiny

The config is experiments/configs/omniglot/5w1s/maml.toml (Finn et al. 2017: CNN4-64, inner
lr 0.4, 1 step in training and 3 at test, meta-batch 32, 15 queries, Adam 1e-3, up to 60,000
meta-iterations), with `train.max_minutes = MINUTES`: meta-training stops cleanly when the
meta-iterations have taken that long, and the final evaluation adapts to 600 test tasks. The
data is the full Omniglot archive that `make wheelhouse` carries (1,623 characters, the
1100/100/423 split); like scripts/gpu_check.py it installs what is missing from the wheelhouse
first (`--no-install` skips that).

`--path` picks the runner's path (`algorithm.path`; "auto" by default), and `--cuda-graphs`
turns on CUDA graphs for what the compiled path compiles (TORCHINDUCTOR_CUDAGRAPHS=1, what
torch.compile(mode="reduce-overhead") sets). The compiled path's first meta-iteration compiles;
its seconds (`first_call_s`) are reported beside the others and count in the training time.

DIR gets headline.md and headline.json (iterations reached, training time, seconds per
iteration, the path and its first call, test accuracy with its 95% interval beside Finn et
al.'s 98.7 ± 0.4 % and learn2learn's 99.1 %), and the run's results.json and metrics.jsonl.
Extra `key=value` overrides after `--` go to the runner (e.g. `-- precision=tf32`). A dry run
trains a tiny model on a random-stroke stand-in: its numbers mean nothing.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpu_data import omniglot_archive  # noqa: E402
from gpu_install import atomic_write_text, install  # noqa: E402

__all__ = ["PUBLISHED", "main", "markdown"]

REPO = Path(__file__).resolve().parents[1]
CONFIG = "experiments/configs/omniglot/5w1s/maml.toml"
# Omniglot 5-way 1-shot test accuracy, in percent: (mean, 95% interval or None, source).
PUBLISHED = [(98.7, 0.4, "Finn et al. 2017 (MAML paper), 60,000 iterations"),
             (99.1, None, "learn2learn's MAML example")]


def markdown(summary: Dict[str, Any]) -> str:
    """The headline as a short page."""
    accuracy = summary.get("accuracy")
    ours = ("-" if accuracy is None else
            f"{100 * accuracy['mean']:.2f} ± {100 * accuracy['ci95']:.2f} %")
    lines = [f"# Headline: Omniglot 5w1s MAML in {summary['minutes']:g} minutes"
             + (" (DRY RUN: numbers mean nothing)" if summary["dry_run"] else ""), "",
             f"- date: {summary['date']}", f"- command: `{summary['command']}`",
             f"- device: {summary.get('device')}; torch {summary.get('torch')}",
             f"- path: {summary.get('train_path') or summary.get('path_asked')} (asked: "
             f"{summary.get('path_asked')}{', CUDA graphs' if summary.get('cuda_graphs') else ''})"
             + (f"; first call {summary['first_call_s']:.1f} s (compiling included)"
                if summary.get("first_call_s") is not None else ""),
             f"- data: {summary['data']}", f"- config: {CONFIG}"
             + (f" + {' '.join(summary['overrides'])}" if summary["overrides"] else ""), "",
             "| run | meta-iterations | training time | s / iteration | test accuracy (600 "
             "tasks) |", "|---|---:|---:|---:|---:|",
             f"| gbml_ext, this run | {summary.get('iterations', '-')} | "
             f"{summary.get('train_seconds', 0):.0f} s | "
             f"{summary.get('seconds_per_iteration') or 0:.4f} | {ours} |"]
    for mean, interval, source in PUBLISHED:
        lines.append(f"| {source} | - | - | - | {mean} %"
                     + (f" ± {interval} %" if interval is not None else "") + " |")
    if summary.get("error"):
        lines += ["", f"**The run failed:** {summary['error']}", "", "```",
                  summary.get("output_tail", ""), "```"]
    return "\n".join(lines) + "\n"


def main(argv: Optional[List[str]] = None) -> int:
    """Installs, trains, evaluates, writes DIR/headline.{md,json}; returns the exit code."""
    argv = sys.argv[1:] if argv is None else argv
    overrides: List[str] = []
    if "--" in argv:
        argv, overrides = argv[:argv.index("--")], argv[argv.index("--") + 1:]
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--minutes", type=float, default=4.0,
                        help="wall-clock budget of the meta-iterations (train.max_minutes)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--dry-run", action="store_true", help="a tiny model, nothing installed")
    parser.add_argument("--no-install", action="store_true")
    parser.add_argument("--path", default="auto",
                        choices=["auto", "per-task", "batched", "compiled"],
                        help="the runner's algorithm.path (default auto)")
    parser.add_argument("--cuda-graphs", action="store_true",
                        help="CUDA graphs on top of the compiled path (TORCHINDUCTOR_CUDAGRAPHS=1)")
    parser.add_argument("--wheelhouse", type=Path, default=REPO / "build/wheelhouse")
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: temp)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    work = args.work or Path(tempfile.mkdtemp(prefix="gpu-headline-"))
    work.mkdir(parents=True, exist_ok=True)
    summary: Dict[str, Any] = {
        "command": " ".join([Path(sys.executable).name, "scripts/gpu_headline.py", *argv]
                            + (["--", *overrides] if overrides else [])),
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "minutes": args.minutes, "dry_run": args.dry_run, "overrides": overrides,
        "path_asked": args.path, "cuda_graphs": args.cuda_graphs,
        "published": [{"accuracy_percent": m, "ci95": i, "source": s} for m, i, s in PUBLISHED]}
    if not (args.dry_run or args.no_install):
        summary["install"] = install(args.wheelhouse, REPO)
    archive, summary["data"], data_overrides = omniglot_archive(args.wheelhouse, work,
                                                                args.dry_run)
    if archive is None or not summary.get("install", {}).get("ok", True):
        summary["error"] = summary["data"] if archive is None else "the install failed"
        return _finish(args.out, summary, 1)
    run_dir = work / "run"
    settings = [f"device={args.device}", f"train.max_minutes={args.minutes}",
                f"algorithm.path={args.path}",
                "train.eval_every=0", "train.log_every=100", "train.plot=false",
                f"output_dir={run_dir}"]
    if args.dry_run:
        settings += ["model.options={hidden = 8}", "train.meta_batch=2", "data.queries=3",
                     "evaluation.tasks=4", "train.log_every=1"]
    command = [sys.executable, "-m", "gbml_ext.runner", CONFIG, "--no-progress", "--overwrite",
               *data_overrides, *settings, *overrides]
    started = time.perf_counter()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if args.cuda_graphs:
        env["TORCHINDUCTOR_CUDAGRAPHS"] = "1"
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, env=env,
                            timeout=60 * args.minutes + 900)
    summary["wall_seconds"] = round(time.perf_counter() - started, 1)
    summary["output_tail"] = "\n".join((result.stdout + result.stderr).strip().splitlines()[-20:])
    results_file = run_dir / "results.json"
    if result.returncode != 0 or not results_file.is_file():
        summary["error"] = f"the runner exited with {result.returncode}"
        return _finish(args.out, summary, 1)
    results = json.loads(results_file.read_text())
    for name in ("results.json", "metrics.jsonl"):
        shutil.copy2(run_dir / name, args.out / name)
    environment = results.get("environment") or {}
    summary.update({
        "iterations": results["iterations_done"], "train_seconds": results["train_seconds"],
        "seconds_per_iteration": results["seconds_per_iteration"],
        "stopped_by_time_limit": results.get("stopped_by_time_limit"),
        "accuracy": results["evaluation"]["accuracy"], "loss": results["evaluation"]["loss"],
        "test_tasks": results["evaluation"]["loss"]["n"], "path": results.get("path"),
        "train_path": results.get("train_path"), "first_call_s": results.get("first_call_s"),
        "precision": results.get("precision"), "peak_memory_mb": results.get("peak_memory_mb"),
        "device": environment.get("hardware") or environment.get("device"),
        "torch": environment.get("torch")})
    return _finish(args.out, summary, 0)


def _finish(out: Path, summary: Dict[str, Any], code: int) -> int:
    atomic_write_text(out / "headline.json", json.dumps(summary, indent=1) + "\n")
    atomic_write_text(out / "headline.md", markdown(summary))
    print(markdown(summary))
    return code


if __name__ == "__main__":
    sys.exit(main())
