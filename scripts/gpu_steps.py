"""The checking steps of scripts/gpu_check.py: CUDA tests, the benchmark, Omniglot training.

Each step runs in a subprocess of its own (a CUDA error cannot poison the next step) under a
time limit, and returns a record: status "pass", "fail" or "skipped", the seconds it took, a
short detail and the tail of its output.
"""
from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

__all__ = ["TRAINING_RUNS", "benchmark", "cuda_test_ids", "cuda_tests", "fake_omniglot",
           "run_step", "training", "training_worker"]

# (name, config under experiments/configs/omniglot/5w1s-cpu/, batched)
TRAINING_RUNS = [(f"{algorithm}{'-batched' if batched else ''}", algorithm, batched)
                 for algorithm in ("maml", "maml_kfo", "anil") for batched in (False, True)]


def run_step(name: str, command: List[str], cwd: Path, timeout: float,
             detail: str = "") -> Dict[str, Any]:
    """Runs `command`; status "pass" on exit code 0, else "fail" (also on timeout)."""
    start = time.perf_counter()
    try:
        result = subprocess.run(command, cwd=cwd, capture_output=True, text=True,
                                timeout=timeout, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        status = "pass" if result.returncode == 0 else "fail"
        output = result.stdout + result.stderr
        code: Optional[int] = result.returncode
    except subprocess.TimeoutExpired as error:
        status, code = "fail", None
        parts = [part.decode(errors="replace") if isinstance(part, bytes) else part or ""
                 for part in (error.stdout, error.stderr)]
        output = "".join(parts) + f"\nTIMEOUT after {timeout:.0f} s"
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
    step["detail"] = f"{len(ids)} test functions: {summary[0]}"
    return step


def benchmark(repo: Path, work: Path, device: str, dry_run: bool, repeats: int,
              timeout: float) -> Dict[str, Any]:
    """The inner-loop benchmark on configs a, b, c and s, every installed peer."""
    out = work / "benchmark.json"
    command = [sys.executable, "-m", "benchmarks.inner_loop", "--device", device,
               "--configs", "a,b,c,s", "--skip-order-comparison", "--json", str(out)]
    if dry_run:
        command += ["--tiny", "--repeats", "1", "--warmup", "0", "--skip-memory",
                    "--flat-iterations", "0"]
    else:
        command += ["--repeats", str(repeats), "--warmup", "2", "--flat-iterations", "100"]
    step = run_step("benchmark", command, repo, timeout)
    if out.is_file():
        report = json.loads(out.read_text())
        step["results"] = {name: entry["results"] for name, entry in report["configs"].items()}
        step["environment"] = {key: report.get(key) for key in ("hardware", "torch", "peers")}
        step["flat_memory"] = report.get("flat_memory")
    return step


def fake_omniglot(folder: Path, characters: int = 12, drawings: int = 4) -> Path:
    """A tiny stand-in in Omniglot's layout (random strokes), for dry runs without the subset."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    tree = folder / "omniglot-py"
    for index in range(characters):
        subset = "images_background" if index < characters // 2 else "images_evaluation"
        character = tree / subset / f"Fake{index % 3}" / f"character{index + 1:02d}"
        character.mkdir(parents=True)
        for drawing in range(drawings):
            ink = rng.random((105, 105)) < 0.1
            Image.fromarray(~ink).convert("1").save(character / f"{index:04d}_{drawing:02d}.png")
    archive = folder / "omniglot-py.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tree, arcname="omniglot-py")
    return archive


def _characters(archive: Path) -> int:
    with tarfile.open(archive) as tar:
        return len({m.name.rsplit("/", 1)[0] for m in tar.getmembers()
                    if m.isfile() and m.name.endswith(".png")})


def training_worker(spec_json: str) -> None:
    """Subprocess body: every training run in one process, each caught, results to JSON."""
    from gbml_ext.runner.cli import main as train

    spec = json.loads(spec_json)
    outcomes = {}
    for name, algorithm, batched in TRAINING_RUNS:
        run_dir = Path(spec["work"]) / "runs" / name
        overrides = [f"{key}={value}" for key, value in spec["overrides"].items()] + [
            f"algorithm.path={'batched' if batched else 'per-task'}", f"output_dir={run_dir}",
            f"name=gpu-check-{name}"]
        config = f"experiments/configs/omniglot/5w1s-cpu/{algorithm}.toml"
        start = time.perf_counter()
        try:
            code = train([config, "--no-progress", "--overwrite", *overrides])
            error = None if code == 0 else f"exit code {code}"
        except BaseException as failure:  # noqa: B036 (report every failure, go on)
            error = f"{type(failure).__name__}: {failure}"
        record: Dict[str, Any] = {"config": config, "batched": batched, "error": error,
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
                "path": results.get("path"),
                "device": (results.get("environment") or {}).get("device")})
        outcomes[name] = record
        print(name, json.dumps(record), flush=True)
    Path(spec["work"], "training.json").write_text(json.dumps(outcomes, indent=1))


def training(repo: Path, work: Path, wheelhouse: Path, device: str, dry_run: bool,
             iterations: int, timeout: float) -> Dict[str, Any]:
    """Short Omniglot 5w1s runs: MAML, MAML-KFO and ANIL, per-task and batched."""
    archive = wheelhouse / "omniglot" / "omniglot-py.tar.gz"
    source = "the wheelhouse's Omniglot subset"
    if not archive.is_file():
        absent = wheelhouse / "omniglot" / "ABSENT.txt"
        why = absent.read_text().strip() if absent.is_file() else f"{archive} is missing"
        if not dry_run:
            return {"name": "omniglot training", "status": "skipped",
                    "detail": f"Omniglot subset ABSENT: {why}"}
        archive = fake_omniglot(work / "fake-omniglot")
        source = f"a random-stroke stand-in in Omniglot's layout (dry run; {why})"
    characters = _characters(archive)
    held_out = max(2, round(characters * 0.2))
    overrides = {
        "data.root": str(archive), "data.options.cache_dir": str(work / "cache"),
        "data.options.split_sizes": f"[{characters - 2 * held_out}, {held_out}, {held_out}]",
        "device": device, "train.iterations": iterations, "train.log_every": 10,
        "train.eval_every": 0, "evaluation.tasks": 2 if dry_run else 100}
    if dry_run:
        overrides.update({"train.meta_batch": 2, "model.options": "{hidden = 8}",
                          "train.log_every": 1, "data.queries": 3})
    spec = json.dumps({"work": str(work), "overrides": overrides})
    command = [sys.executable, str(Path(__file__).resolve().parent / "gpu_check.py"),
               "--training-worker", spec]
    step = run_step("omniglot training", command, repo, timeout,
                    detail=f"{characters} characters from {source}")
    results_file = work / "training.json"
    step["runs"] = json.loads(results_file.read_text()) if results_file.is_file() else {}
    failed = [name for name, run in step["runs"].items() if run["error"]]
    if failed or len(step["runs"]) != len(TRAINING_RUNS):
        step["status"] = "fail"
        step["detail"] += f"; failed: {failed or 'the worker'}"
    return step
