"""GPU validation in one command: install offline, run the CUDA tests, the benchmark, short
Omniglot training of every config with a GPU path and a profile of one meta-step; write the
reports as it goes.

    python3 scripts/gpu_check.py --out DIR            # on the GPU machine (or: make gpu-check)
    python3 scripts/gpu_check.py --device cpu --dry-run --out DIR   # the same steps, tiny, here

The GPU machine has python3 3.12 with torch, but no network and no learn2learn. The tree must
travel with `build/wheelhouse`, written by `make wheelhouse` where there is a network (see
scripts/build_wheelhouse.py). Steps, each recorded as pass / fail / partial (cut off by its
time budget, nothing failed) / skipped:

1. environment: Python, torch, CUDA device, C compiler;
2. install (scripts/gpu_install.py): missing wheels, learn2learn (compiled from the carried
   source, or its pure-Python fallback), gbml_ext; `--dry-run` installs nothing;
3. cuda tests: the tests that skip without CUDA (found by their decorators), with pytest;
4. benchmark: `python -m benchmarks.inner_loop` on configs a, b, c, s (those with targets
   first) with gbml_ext (per task, batched, batched/4), learn2learn and JAX (every installed
   peer and the flat-memory check with `--full-benchmark`; the torch.compile peers only with
   `--compiled`); DIR/benchmark.{json,md} are rewritten after every config;
5. omniglot training: MAML, FOMAML, Meta-SGD, MAML-KFO with the adapted transform, ANIL,
   ANIL-KFO (each per task and batched) and iMAML (per task), at the MAML paper's 5w1s settings
   for a few meta-iterations, on all 1,623 characters of the wheelhouse's Omniglot (skipped,
   saying so, when it is absent); DIR/training.json after every run. The drawings are decoded
   into the runner's cache in the background from the start of step 3 on;
6. profile: torch.profiler over batched MAML on config a (benchmarks/profile_step.py), only
   when time is left: DIR/profile.{json,md};
7. compiled: the compiled path (`algorithm.path = "compiled"`) and CUDA graphs on top of it
   (inductor's triton.cudagraphs, as torch.compile(mode="reduce-overhead")): the benchmark on
   configs s and a beside the batched path, then MAML 5w1s trained through the runner both
   ways, each with its first_call_s (compiling included); its tables are in gpu_check.md.
   `--no-compiled` leaves it out.

Time: every step has a budget (`--*-budget`, seconds) and the whole check a deadline
(`--deadline`, from its start, install included): a step gets the smaller of its budget and
the time left, and a step with less than `--least-step-seconds` left is skipped and says so.
The defaults fit 6 minutes on an H100 from a bare machine (install about 70 s); with
`--no-compiled --deadline 230`, 4 minutes.

DIR gets gpu_check.md and gpu_check.json, rewritten before and after every step (a check cut
off mid-step shows that step as running), and the steps' own files above: at most 7 files.
Scratch files go to --work, a temporary folder by default. The verdict is fail (a step
failed), partial (a step was cut off or skipped, nothing failed) or pass; the exit code is 0
unless a step failed. A dry run's numbers mean nothing: it proves the steps work
(tests/test_gpu_check.py runs it in the default suite).
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
from typing import Any, Callable, Dict, List, Optional, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpu_compiled import compiled  # noqa: E402
from gpu_data import omniglot_archive, warm_omniglot_cache  # noqa: E402
from gpu_install import atomic_write_text, install  # noqa: E402
from gpu_steps import benchmark, cuda_tests, profile, training, training_worker  # noqa: E402

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
    lines = ["| run | path | iterations | test accuracy | s/iter | first call s | peak MB | "
             "error |", "|---|---|---:|---:|---:|---:|---:|---|"]
    for name, run in step.get("runs", {}).items():
        if run.get("skipped"):
            lines.append(f"| {name} | {run['path_asked']} | - | - | - | - | - | "
                         f"{run['skipped']} |")
            continue
        lines.append(f"| {name} | {run.get('train_path') or run.get('path', '-')} | "
                     f"{run.get('iterations', '-')} | {_fmt(run.get('test_accuracy'))} | "
                     f"{_fmt(run.get('seconds_per_iteration'))} | "
                     f"{_fmt(run.get('first_call_s'), '.1f')} | "
                     f"{_fmt(run.get('peak_memory_mb'), '.0f')} | {run['error'] or ''} |")
    return lines


def _profile_lines(step: Dict[str, Any]) -> List[str]:
    summary = step.get("summary") or {}
    keys = ("wall_s", "wall_profiled_s", "cpu_self_s", "gpu_busy_s",
            "gpu_idle_between_kernels_s", "kernels_per_iteration", "gpu_busy_fraction_of_wall")
    return [f"- {key}: {_fmt(summary.get(key), '.4f')}" for key in keys if key in summary]


def markdown_report(report: Dict[str, Any]) -> str:
    """The JSON report as a page: verdict, environment, install, one section per step."""
    lines = [f"# GPU check: {report['verdict'].upper()}", "",
             f"- date: {report['date']}", f"- command: `{report['command']}`",
             f"- device: {report['device']}" + (" (DRY RUN: numbers mean nothing)"
                                                if report["dry_run"] else ""),
             f"- seconds: {report.get('seconds')} of a {report['deadline']:.0f} s deadline",
             f"- environment: `{json.dumps(report['environment'])}`",
             f"- install: `{json.dumps(report['install'])}`", ""]
    for step in report["steps"]:
        lines += [f"## {step['name']}: {step['status']}", "", step.get("detail", ""), ""]
        if step["name"] in ("benchmark", "compiled"):
            lines += _benchmark_lines(step) + [""]
            lines += [f"- {config} / {peer}: {why}"
                      for config, peers in step.get("skipped_peers", {}).items()
                      for peer, why in peers.items()] + ["", "(benchmark.md has the tables)", ""]
        if step["name"] in ("omniglot training", "compiled"):
            lines += _training_lines(step) + [""]
        if step["name"] == "profile":
            lines += _profile_lines(step) + ["", "(profile.md has the top ops)", ""]
        if step["status"] == "fail" or step["name"] == "cuda tests":
            lines += ["```", step.get("output_tail", ""), "```", ""]
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--out", type=Path, help="folder for the reports")
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--dry-run", action="store_true",
                        help="install nothing and shrink every step (a check of the check)")
    parser.add_argument("--wheelhouse", type=Path, default=REPO / "build/wheelhouse")
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: temp)")
    parser.add_argument("--iterations", type=int, default=None,
                        help="meta-iterations per training run (default 4, dry run 1)")
    parser.add_argument("--repeats", type=int, default=5, help="benchmark repeats")
    parser.add_argument("--compiled", action="store_true",
                        help="add the compiled peers to the benchmark of every config too "
                             "(minutes of compiling)")
    parser.add_argument("--no-compiled", action="store_true",
                        help="leave out the compiled step (the compiled path on configs s and a)")
    parser.add_argument("--full-benchmark", action="store_true",
                        help="every installed peer and the flat-memory check (needs budget)")
    parser.add_argument("--deadline", type=float, default=350.0,
                        help="seconds for the whole check, install included")
    parser.add_argument("--tests-budget", type=float, default=45.0)
    parser.add_argument("--benchmark-budget", type=float, default=55.0)
    parser.add_argument("--training-budget", type=float, default=60.0)
    parser.add_argument("--profile-budget", type=float, default=25.0)
    parser.add_argument("--compiled-budget", type=float, default=120.0)
    parser.add_argument("--least-step-seconds", type=float, default=15.0,
                        help="skip a step when less than this is left before the deadline")
    parser.add_argument("--training-worker", default=None, help=argparse.SUPPRESS)
    return parser


def _steps(args: argparse.Namespace, work: Path
           ) -> Tuple[List[Tuple[str, float, Callable]], Optional[subprocess.Popen]]:
    """(name, budget, run(timeout) -> record) of every step after the install, in order. The
    Omniglot cache starts warming in the background now, while the GPU steps run."""
    iterations = args.iterations or (1 if args.dry_run else 4)
    data = omniglot_archive(args.wheelhouse, work, args.dry_run)
    warmer = warm_omniglot_cache(REPO, work, data)
    compiled_step = [] if args.no_compiled else [
        ("compiled", args.compiled_budget, lambda timeout: compiled(
            REPO, work, args.out, data, args.device, args.dry_run, args.repeats, iterations,
            timeout))]
    return [
        ("cuda tests", args.tests_budget, lambda timeout: cuda_tests(REPO, timeout)),
        ("benchmark", args.benchmark_budget, lambda timeout: benchmark(
            REPO, args.out, args.device, args.dry_run, args.repeats, timeout,
            compiled=args.compiled, full=args.full_benchmark)),
        ("omniglot training", args.training_budget, lambda timeout: training(
            REPO, work, args.out, data, args.device, args.dry_run, iterations, timeout,
            warmer)),
        ("profile", args.profile_budget, lambda timeout: profile(
            REPO, args.out, args.device, args.dry_run, timeout)),
        *compiled_step,
    ], warmer


def main(argv: Optional[List[str]] = None) -> int:
    """Runs the check (see the module docstring); returns the exit code."""
    args = _parser().parse_args(argv)
    if args.training_worker:
        training_worker(args.training_worker)
        return 0
    if args.out is None:
        raise SystemExit("--out DIR is required")
    started = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    work = args.work or Path(tempfile.mkdtemp(prefix="gpu-check-"))
    work.mkdir(parents=True, exist_ok=True)
    if args.device == "cpu":
        # Tiny CPU work on a shared machine: one thread each, or OpenMP's spinning threads
        # fight over the cores and a step takes many times longer.
        os.environ.setdefault("OMP_NUM_THREADS", "1")
    report: Dict[str, Any] = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]), "device": args.device,
        "dry_run": args.dry_run, "work": str(work), "wheelhouse": str(args.wheelhouse),
        "deadline": args.deadline, "environment": {}, "install": {"running": True},
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds")}
    steps: List[Dict[str, Any]] = []
    _write(report, steps, args.out, started)
    report["install"] = ({"skipped": "dry run: nothing installed"} if args.dry_run
                         else install(args.wheelhouse, REPO))
    report["install"]["seconds"] = round(time.perf_counter() - started, 1)
    report["environment"] = environment(args.device)
    if report["environment"]["ok"] and report["install"].get("ok", True):
        steps_to_run, warmer = _steps(args, work)
        for name, budget, run in steps_to_run:
            left = args.deadline - (time.perf_counter() - started)
            if left < args.least_step_seconds:
                steps.append({"name": name, "status": "skipped", "detail": (
                    f"{left:.0f} s left before the {args.deadline:.0f} s deadline "
                    f"(needs {args.least_step_seconds:.0f} s); raise --deadline to run it")})
                continue
            timeout = min(budget, left)
            _write(report, steps + [{"name": name, "status": "running", "detail": (
                f"started at {time.perf_counter() - started:.0f} s, limit {timeout:.0f} s")}],
                   args.out, started)
            steps.append(run(timeout))
            _write(report, steps, args.out, started)  # a cut-off check still leaves a report
        if warmer is not None and warmer.poll() is None:  # training was skipped: stop it
            warmer.kill()
            warmer.wait()
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
    report["failed_steps"] = failed
    report["incomplete_steps"] = [step["name"] for step in steps
                                  if step["status"] in ("partial", "skipped")]
    # fail > running (a check cut off mid-step) > partial (cut or skipped parts) > pass
    report["verdict"] = "fail" if failed else (
        "running" if any(step["status"] == "running" for step in steps) else
        "partial" if report["incomplete_steps"] else "pass")
    report["seconds"] = round(time.perf_counter() - started, 1)
    atomic_write_text(out / "gpu_check.json", json.dumps(report, indent=1) + "\n")
    atomic_write_text(out / "gpu_check.md", markdown_report(report) + "\n")
    return failed


if __name__ == "__main__":
    sys.exit(main())
