"""The checking steps of scripts/gpu_check.py: CUDA tests, the benchmark, Omniglot training, the
profile of one meta-step (the compiled path's step is in gpu_compiled.py).

Each step runs in a subprocess of its own (a CUDA error cannot poison the next step) under a
time limit, writes its own files into the report folder as it goes (so a step cut off at its
limit keeps what it measured), and returns a record: status "pass", "fail", "partial" (cut off
by its time limit with nothing failed; the record says what was not reached) or "skipped",
the seconds it took, a short detail and the tail of its output.
"""
from __future__ import annotations

import ast
import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from gpu_data import Data

__all__ = ["TRAINING_RUNS", "benchmark", "cuda_test_ids", "cuda_tests", "profile", "run_step",
           "training", "training_worker"]

# Every runner config with a GPU path, in the order the check runs them (the most important
# first: a cut-off check still covers those): (name, config under
# experiments/configs/omniglot/5w1s/, algorithm.path, extra overrides). iMAML forms its own
# meta-gradient, so it has no batched path.
_ROWS: List[Tuple[str, str, List[str]]] = [
    ("maml", "maml", []), ("fomaml", "fomaml", []), ("metasgd", "metasgd", []),
    ("maml_kfo_adapted", "maml_kfo", ["algorithm.adapt_transform=true"]),
    ("anil", "anil", []), ("anil_kfo", "anil_kfo", [])]
TRAINING_RUNS: List[Tuple[str, str, str, List[str]]] = [
    run for name, config, extra in _ROWS
    for run in ((f"{name}-batched", config, "batched", extra), (name, config, "per-task", extra))
] + [("imaml", "imaml", "per-task", [])]
TIMEOUT_NOTE = "cut off by its time limit"


def run_step(name: str, command: List[str], cwd: Path, timeout: float, detail: str = "",
             timeout_status: str = "fail") -> Dict[str, Any]:
    """Runs `command`; status "pass" on exit code 0, else "fail"; on timeout `timeout_status`
    (steps whose files keep what they measured say "partial")."""
    start = time.perf_counter()
    try:
        result = subprocess.run(command, cwd=cwd, capture_output=True, text=True,
                                timeout=max(1.0, timeout),
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
        status = "pass" if result.returncode == 0 else "fail"
        output = result.stdout + result.stderr
        code: Optional[int] = result.returncode
    except subprocess.TimeoutExpired as error:
        status, code = timeout_status, None
        parts = [part.decode(errors="replace") if isinstance(part, bytes) else part or ""
                 for part in (error.stdout, error.stderr)]
        output = "".join(parts) + f"\nTIMEOUT: {TIMEOUT_NOTE} ({timeout:.0f} s)"
        detail = f"{detail}; {TIMEOUT_NOTE} ({timeout:.0f} s)" if detail else TIMEOUT_NOTE
    return {"name": name, "status": status, "returncode": code, "detail": detail,
            "seconds": round(time.perf_counter() - start, 1), "command": " ".join(command),
            "output_tail": "\n".join(output.strip().splitlines()[-25:])}


def cuda_test_ids(repo: Path) -> List[str]:
    """pytest ids of the tests that skip without CUDA: test functions whose decorators or
    parametrization mention `cuda` (e.g. `skipif(not torch.cuda.is_available())`)."""
    ids = []
    for path in sorted((repo / "tests").glob("test_*.py")):
        tree = ast.parse(path.read_text())
        for node in tree.body:
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test"):
                decorators = " ".join(ast.unparse(d) for d in node.decorator_list)
                if "cuda" in decorators.lower():
                    ids.append(f"tests/{path.name}::{node.name}")
    return ids


def cuda_tests(repo: Path, timeout: float) -> Dict[str, Any]:
    """Runs the tests that skip without CUDA (`cuda_test_ids`), reporting skips."""
    ids = cuda_test_ids(repo)
    if not ids:
        return {"name": "cuda tests", "status": "skipped", "detail": "no CUDA tests found"}
    step = run_step("cuda tests", [sys.executable, "-m", "pytest", "-q", "-rs", "-p",
                                   "no:cacheprovider", *ids], repo, timeout)
    step["tests"] = ids
    summary = step["output_tail"].splitlines()[-1:] or [""]
    step["detail"] = f"{len(ids)} test functions: {summary[0]}" + (
        f"; {TIMEOUT_NOTE}" if step["returncode"] is None else "")
    return step


# The check's benchmark: the peers that answer the GPU questions (gbml_ext per task and
# batched, learn2learn and JAX), the configs with targets first. FLOPs are counted once per
# config (every peer does the same arithmetic; counting is slow).
CHECK_PEERS = "gbml_ext,batched,batched/4,learn2learn,jax"
CHECK_CONFIGS = "a-maml,b-maml,a-fomaml,c-anil-kfo,s-linreg"


def benchmark(repo: Path, out: Path, device: str, dry_run: bool, repeats: int,
              timeout: float, compiled: bool = False, full: bool = False,
              name: str = "benchmark", configs: str = CHECK_CONFIGS,
              peers: str = CHECK_PEERS) -> Dict[str, Any]:
    """The inner-loop benchmark on `configs` (a, b, c and s) with `peers`, written to
    out/`name`.{json,md} config by config; it starts no config in the last 20 s of
    `timeout`."""
    out_json, out_md = out / f"{name}.json", out / f"{name}.md"
    command = [sys.executable, "-m", "benchmarks.inner_loop", "--device", device,
               "--configs", configs, "--json", str(out_json), "--markdown", str(out_md),
               "--max-seconds", f"{max(1.0, timeout - 20):.0f}"]
    if not full:
        command += ["--peers", peers, "--skip-order-comparison", "--count-flops", "one"]
    if compiled:
        command += ["--compiled"]
    if dry_run:
        command += ["--tiny", "--repeats", "1", "--warmup", "0", "--skip-memory",
                    "--flat-iterations", "0"]
    else:
        command += ["--repeats", str(repeats), "--warmup", "1",
                    "--flat-iterations", "200" if full else "0"]
    step = run_step(name, command, repo, timeout, timeout_status="partial")
    if out_json.is_file():
        report = json.loads(out_json.read_text())
        step["results"] = {name: entry["results"] for name, entry in report["configs"].items()}
        step["skipped_peers"] = {name: entry.get("skipped_peers", {})
                                 for name, entry in report["configs"].items()}
        step["not_reached"] = report.get("skipped", {})
        step["environment"] = {key: report.get(key) for key in ("hardware", "torch", "peers",
                                                                "jax", "unavailable_peers")}
        step["flat_memory"] = report.get("flat_memory")
        if step["not_reached"]:
            step["detail"] = (step["detail"] + "; " if step["detail"] else "") + (
                f"not reached in time: {', '.join(step['not_reached'])}")
    return step


def training_worker(spec_json: str) -> None:
    """Subprocess body: the training runs in one process, each caught, until the deadline;
    out/training.json is rewritten after every run."""
    from gbml_ext.runner.cli import main as train

    spec = json.loads(spec_json)
    outcomes: Dict[str, Any] = {}
    result_file = Path(spec["out"]) / spec.get("result_file", "training.json")
    cuda_graphs = spec.get("cuda_graphs", [])
    for name, config_name, path, extra in spec.get("runs", TRAINING_RUNS):
        config = f"experiments/configs/omniglot/5w1s/{config_name}.toml"
        left = spec["deadline"] - time.time()
        if left < spec["least_seconds_per_run"]:
            outcomes[name] = {"config": config, "path_asked": path, "error": None,
                              "skipped": f"not started: {left:.0f} s left before the deadline"}
            continue
        run_dir = Path(spec["work"]) / "runs" / name
        overrides = spec["overrides"] + extra + [
            f"algorithm.path={path}", f"output_dir={run_dir}", f"name=gpu-check-{name}"]
        start = time.perf_counter()
        try:
            with _cuda_graphs(name in cuda_graphs):
                code = train([config, "--no-progress", "--overwrite", *overrides])
            error = None if code == 0 else f"exit code {code}"
        except BaseException as failure:  # noqa: B036 (report every failure, go on)
            error = f"{type(failure).__name__}: {failure}"
        record: Dict[str, Any] = {"config": config, "path_asked": path, "error": error,
                                  "overrides": extra, "cuda_graphs": name in cuda_graphs,
                                  "seconds": round(time.perf_counter() - start, 1)}
        results_file = run_dir / "results.json"
        if error is None and results_file.is_file():
            results = json.loads(results_file.read_text())
            evaluation = results.get("evaluation", {})
            record.update({
                "iterations": results.get("iterations_done"),
                "test_accuracy": (evaluation.get("accuracy") or {}).get("mean"),
                "test_loss": (evaluation.get("loss") or {}).get("mean"),
                "final_train_loss": results.get("final_train_loss"),
                "seconds_per_iteration": results.get("seconds_per_iteration"),
                "peak_memory_mb": results.get("peak_memory_mb"),
                "path": results.get("path"), "train_path": results.get("train_path"),
                "first_call_s": results.get("first_call_s"),
                "device": (results.get("environment") or {}).get("device")})
        outcomes[name] = record
        result_file.write_text(json.dumps(outcomes, indent=1) + "\n")
        print(name, json.dumps(record), flush=True)
    result_file.write_text(json.dumps(outcomes, indent=1) + "\n")


def _cuda_graphs(on: bool) -> Any:
    """A context in which inductor wraps what it compiles in CUDA graphs (when `on`)."""
    if not on:
        return contextlib.nullcontext()
    import torch._inductor.config as inductor

    return inductor.patch({"triton.cudagraphs": True})


def training(repo: Path, work: Path, out: Path, data: Data, device: str, dry_run: bool,
             iterations: int, timeout: float,
             warmer: Optional[subprocess.Popen] = None, name: str = "omniglot training",
             runs: Optional[List[Tuple[str, str, str, List[str]]]] = None,
             result_file: str = "training.json", cuda_graphs: Sequence[str] = ()
             ) -> Dict[str, Any]:
    """Short Omniglot 5w1s runs (`runs`: every config with a GPU path, `TRAINING_RUNS`, per
    task and batched), at the MAML paper's settings but `iterations` meta-iterations and 20
    test tasks; runs that would start too close to the time limit are skipped and listed.
    `data` is `omniglot_archive`'s answer; `warmer`, the cache warmer to wait for first; the
    runs' records go to out/`result_file`; the runs named in `cuda_graphs` compile with CUDA
    graphs (inductor's triton.cudagraphs)."""
    runs = TRAINING_RUNS if runs is None else runs
    archive, source, data_overrides = data
    if archive is None:
        return {"name": name, "status": "skipped", "detail": source}
    start = time.perf_counter()
    warm_note = ""
    if warmer is not None:
        try:
            code = warmer.wait(timeout=max(1.0, timeout / 2))
            warm_note = f"; data cache warmed in the background (exit code {code})"
        except subprocess.TimeoutExpired:
            warm_note = "; the data cache was still warming after half the budget"
    timeout -= time.perf_counter() - start
    overrides = data_overrides + [
        f"device={device}", f"train.iterations={iterations}", "train.log_every=1",
        "train.eval_every=0", "train.plot=false", "train.checkpoint_minutes=0",
        f"evaluation.tasks={2 if dry_run else 20}"]
    if dry_run:
        overrides += ["train.meta_batch=2", "model.options={hidden = 8}", "data.queries=3",
                      "algorithm.train_steps=1", "algorithm.test_steps=1"]
    spec = json.dumps({"work": str(work), "out": str(out), "overrides": overrides,
                       "deadline": time.time() + timeout - 5, "runs": runs,
                       "result_file": result_file, "cuda_graphs": list(cuda_graphs),
                       "least_seconds_per_run": 0 if dry_run else 8})
    command = [sys.executable, str(Path(__file__).resolve().parent / "gpu_check.py"),
               "--training-worker", spec]
    step = run_step(name, command, repo, timeout, detail=source + warm_note,
                    timeout_status="partial")
    step["seconds_waiting_for_the_cache"] = round(time.perf_counter() - start, 1) - step[
        "seconds"]
    results_file = out / result_file
    step["runs"] = json.loads(results_file.read_text()) if results_file.is_file() else {}
    failed = [run_name for run_name, run in step["runs"].items() if run["error"]]
    missing = [run_name for run_name, *_ in runs if run_name not in step["runs"]
               or step["runs"][run_name].get("skipped")]
    if failed or (step["status"] == "fail"):
        step["status"] = "fail"
        step["detail"] += f"; failed: {failed or 'the worker'}"
    elif missing:
        step["status"] = "partial"
        step["detail"] += f"; not reached in time: {', '.join(missing)}"
    return step


def profile(repo: Path, out: Path, device: str, dry_run: bool, timeout: float
            ) -> Dict[str, Any]:
    """torch.profiler over batched MAML on config a (benchmarks/profile_step.py), written to
    out/profile.{json,md}."""
    command = [sys.executable, "-m", "benchmarks.profile_step", "--device", device,
               "--config", "a-maml", "--peer", "batched", "--out", str(out)]
    command += ["--tiny", "--iterations", "1", "--warmup", "1"] if dry_run else [
        "--iterations", "10", "--warmup", "3"]
    step = run_step("profile", command, repo, timeout, timeout_status="partial")
    summary_file = out / "profile.json"
    if summary_file.is_file():
        summary = json.loads(summary_file.read_text())
        step["summary"] = {key: value for key, value in summary.items()
                           if not key.startswith("top_")}
    return step

