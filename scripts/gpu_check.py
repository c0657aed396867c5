"""GPU validation in one command: install offline, run the CUDA tests, the benchmark and short
Omniglot training, and write one markdown and one JSON report.

    python3 scripts/gpu_check.py --out DIR            # on the GPU machine (or: make gpu-check)
    python3 scripts/gpu_check.py --device cpu --dry-run --out DIR   # the same steps, tiny, here

The GPU machine has python3 3.12 with torch, but no network and no learn2learn. The tree must
travel with `build/wheelhouse`, written by `make wheelhouse` where there is a network (see
scripts/build_wheelhouse.py). Steps, each recorded as pass / fail / skipped:

1. environment: Python, torch, CUDA device, C compiler;
2. install (scripts/gpu_install.py): missing wheels, learn2learn (compiled from the carried
   source, or its pure-Python fallback), gbml_ext; `--dry-run` installs nothing;
3. cuda tests: the tests that skip without CUDA (found by their decorators), with pytest;
4. benchmark: `python -m benchmarks.inner_loop` on configs a, b, c, s, every installed peer;
5. omniglot training: 5-way 1-shot MAML, MAML-KFO and ANIL, each per-task and batched, 50
   meta-iterations each, on the wheelhouse's Omniglot subset (skipped, saying so, when the
   subset is absent).

The defaults aim at a 10-minute slot; both reports are rewritten after every step, so a check
cut off by its slot still leaves what it found.

DIR gets gpu_check.md and gpu_check.json only (scratch files go to --work, a temporary folder
by default). The exit code is 0 when no step failed. A dry run's numbers mean nothing: it
proves the steps work (tests/test_gpu_check.py runs it in the default suite).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpu_install import install  # noqa: E402
from gpu_steps import benchmark, cuda_tests, training, training_worker  # noqa: E402

__all__ = ["environment", "main", "markdown_report"]

REPO = Path(__file__).resolve().parents[1]


def environment(device: str) -> Dict[str, Any]:
    """What the machine offers, read in a subprocess so this process stays torch-free."""
    probe = ("import json, torch; print(json.dumps({'torch': torch.__version__, "
             "'cuda_available': torch.cuda.is_available(), 'device_name': "
             "torch.cuda.get_device_name(0) if torch.cuda.is_available() else None, "
             "'cuda': torch.version.cuda}))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    info: Dict[str, Any] = {"python": sys.version.split()[0], "platform": platform.platform(),
                            "executable": sys.executable,
                            "c_compiler": shutil.which("cc") or shutil.which("gcc")}
    if result.returncode == 0:
        info.update(json.loads(result.stdout.strip().splitlines()[-1]))
    else:
        info["torch_error"] = result.stderr.strip().splitlines()[-1:]
    info["ok"] = result.returncode == 0 and (device != "cuda" or info.get("cuda_available"))
    return info


def _fmt(value: Any, spec: str = ".3f") -> str:
    return "-" if value is None else format(value, spec)


def _benchmark_lines(step: Dict[str, Any]) -> List[str]:
    lines = ["| config | peer | median s/iter | vs learn2learn | peak MB | GFLOP/s |",
             "|---|---|---:|---:|---:|---:|"]
    for config, results in step.get("results", {}).items():
        for peer, row in results.items():
            lines.append(f"| {config} | {peer} | {_fmt(row['median_s'])} | "
                         f"{_fmt(row['speedup_vs_learn2learn'], '.2f')} | "
                         f"{_fmt(row['peak_memory_mb'], '.0f')} | "
                         f"{_fmt(row['gflops_per_s'], '.1f')} |")
    return lines


def _training_lines(step: Dict[str, Any]) -> List[str]:
    lines = ["| run | path | iterations | test accuracy | s/iter | peak MB | error |",
             "|---|---|---:|---:|---:|---:|---|"]
    for name, run in step.get("runs", {}).items():
        lines.append(f"| {name} | {run.get('path', '-')} | {run.get('iterations', '-')} | "
                     f"{_fmt(run.get('test_accuracy'))} | "
                     f"{_fmt(run.get('seconds_per_iteration'))} | "
                     f"{_fmt(run.get('peak_memory_mb'), '.0f')} | {run['error'] or ''} |")
    return lines


def markdown_report(report: Dict[str, Any]) -> str:
    """The JSON report as a page: verdict, environment, install, one section per step."""
    lines = [f"# GPU check: {report['verdict'].upper()}", "",
             f"- date: {report['date']}", f"- command: `{report['command']}`",
             f"- device: {report['device']}" + (" (DRY RUN: numbers mean nothing)"
                                                if report["dry_run"] else ""),
             f"- environment: `{json.dumps(report['environment'])}`",
             f"- install: `{json.dumps(report['install'])}`", ""]
    for step in report["steps"]:
        lines += [f"## {step['name']}: {step['status']}", "", step.get("detail", ""), ""]
        if step["name"] == "benchmark":
            lines += _benchmark_lines(step) + [""]
        if step["name"] == "omniglot training":
            lines += _training_lines(step) + [""]
        if step["status"] == "fail" or step["name"] == "cuda tests":
            lines += ["```", step.get("output_tail", ""), "```", ""]
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--out", type=Path, help="folder for gpu_check.md and gpu_check.json")
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--dry-run", action="store_true",
                        help="install nothing and shrink every step (a check of the check)")
    parser.add_argument("--wheelhouse", type=Path, default=REPO / "build/wheelhouse")
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: temp)")
    parser.add_argument("--iterations", type=int, default=None,
                        help="meta-iterations per training run (default 50, dry run 2)")
    parser.add_argument("--repeats", type=int, default=10, help="benchmark repeats")
    parser.add_argument("--step-timeout", type=float, default=300.0,
                        help="seconds per step (the whole check should fit a 10-minute slot)")
    parser.add_argument("--training-worker", default=None, help=argparse.SUPPRESS)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """Runs the check (see the module docstring); returns the exit code."""
    args = _parser().parse_args(argv)
    if args.training_worker:
        training_worker(args.training_worker)
        return 0
    if args.out is None:
        raise SystemExit("--out DIR is required")
    args.out.mkdir(parents=True, exist_ok=True)
    work = args.work or Path(tempfile.mkdtemp(prefix="gpu-check-"))
    work.mkdir(parents=True, exist_ok=True)
    if args.device == "cpu":
        # Tiny CPU work on a shared machine: one thread each, or OpenMP's spinning threads
        # fight over the cores and a step takes many times longer.
        os.environ.setdefault("OMP_NUM_THREADS", "1")
    started = time.perf_counter()
    report: Dict[str, Any] = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]), "device": args.device,
        "dry_run": args.dry_run, "work": str(work), "wheelhouse": str(args.wheelhouse),
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds")}
    report["install"] = ({"skipped": "dry run: nothing installed"} if args.dry_run
                         else install(args.wheelhouse, REPO))
    report["environment"] = environment(args.device)
    steps: List[Dict[str, Any]] = []
    if report["environment"]["ok"] and report["install"].get("ok", True):
        iterations = args.iterations or (2 if args.dry_run else 50)
        for step in (lambda: cuda_tests(REPO, args.step_timeout),
                     lambda: benchmark(REPO, work, args.device, args.dry_run, args.repeats,
                                       args.step_timeout),
                     lambda: training(REPO, work, args.wheelhouse, args.device, args.dry_run,
                                      iterations, args.step_timeout)):
            steps.append(step())
            _write(report, steps, args.out, started)  # a cut-off check still leaves a report
    else:
        steps.append({"name": "setup", "status": "fail",
                      "detail": "no usable torch/CUDA or the install failed; see above"})
    failed = _write(report, steps, args.out, started)
    print(markdown_report(report))
    return 1 if failed else 0


def _write(report: Dict[str, Any], steps: List[Dict[str, Any]], out: Path,
           started: float) -> List[str]:
    """Writes both reports with the steps so far; returns the names of the failed steps."""
    report["steps"] = steps
    failed = [step["name"] for step in steps if step["status"] == "fail"]
    report["verdict"] = "fail" if failed else "pass"
    report["failed_steps"] = failed
    report["seconds"] = round(time.perf_counter() - started, 1)
    (out / "gpu_check.json").write_text(json.dumps(report, indent=1) + "\n")
    (out / "gpu_check.md").write_text(markdown_report(report) + "\n")
    return failed


if __name__ == "__main__":
    sys.exit(main())
