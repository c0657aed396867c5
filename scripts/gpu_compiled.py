"""The compiled path's step of scripts/gpu_check.py: `algorithm.path = "compiled"`, and CUDA
graphs on top of it (inductor's triton.cudagraphs, what torch.compile(mode="reduce-overhead")
sets), on configs s and a: the benchmark beside the batched path, then MAML 5w1s trained
through the runner both ways, each run with its first_call_s (compiling included).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Dict, List, Tuple

from gpu_data import Data
from gpu_steps import benchmark, training

__all__ = ["COMPILED_CONFIGS", "COMPILED_PEERS", "COMPILED_RUNS", "CUDA_GRAPHS_RUNS",
           "DRY_RUN_RUNS", "compiled"]

# The compiled path's step: MAML 5w1s through the runner, compiled, then with CUDA graphs on
# top (inductor's triton.cudagraphs, what torch.compile(mode="reduce-overhead") sets).
COMPILED_RUNS: List[Tuple[str, str, str, List[str]]] = [
    ("maml-compiled", "maml", "compiled", []),
    ("maml-compiled-cudagraphs", "maml", "compiled", [])]
CUDA_GRAPHS_RUNS = ("maml-compiled-cudagraphs",)
# The compiled path's benchmark: configs a (MAML) and s, beside the batched path in one run.
COMPILED_CONFIGS = "s-linreg,a-maml"
COMPILED_PEERS = "batched,compiled,compiled-cudagraphs"
# A dry run on a CPU, where compiling a CNN's second-order step takes minutes: config s, and one
# run (CUDA graphs asked: on a CPU inductor leaves them out) of a one-block CNN.
DRY_RUN_RUNS: List[Tuple[str, str, str, List[str]]] = [
    ("maml-compiled-cudagraphs", "maml", "compiled", ["model.options={hidden = 8, layers = 1}"])]


def compiled(repo: Path, work: Path, out: Path, data: Data, device: str, dry_run: bool,
             repeats: int, iterations: int, timeout: float) -> Dict[str, Any]:
    """The compiled path: the benchmark on configs s and a (`COMPILED_CONFIGS`; s alone in a
    dry run) with the batched path, the compiled path and CUDA graphs on top of it
    (`COMPILED_PEERS`; CUDA graphs say they need CUDA on a CPU), then MAML 5w1s trained through
    the runner on the compiled path with and without CUDA graphs (`COMPILED_RUNS`, a dry run
    `DRY_RUN_RUNS`; each records first_call_s). Half the time each; the files stay in `work`,
    the tables go into the check's report."""
    start = time.perf_counter()
    configs = "s-linreg" if dry_run else COMPILED_CONFIGS
    bench = benchmark(repo, work, device, dry_run, repeats, timeout / 2, name="compiled",
                      configs=configs, peers=COMPILED_PEERS)
    left = timeout - (time.perf_counter() - start)
    train = training(repo, work, work, data, device, dry_run, iterations, left,
                     name="compiled training", runs=DRY_RUN_RUNS if dry_run else COMPILED_RUNS,
                     result_file="compiled_training.json", cuda_graphs=CUDA_GRAPHS_RUNS)
    statuses = {bench["status"], train["status"]}
    status = next(s for s in ("fail", "partial", "skipped", "pass") if s in statuses)
    return {"name": "compiled", "status": "partial" if status == "skipped" else status,
            "seconds": round(time.perf_counter() - start, 1),
            "detail": f"benchmark: {bench['status']} {bench.get('detail', '')}; training: "
                      f"{train['status']} {train.get('detail', '')}".strip(),
            "results": bench.get("results", {}), "skipped_peers": bench.get("skipped_peers", {}),
            "runs": train.get("runs", {}),
            "output_tail": bench.get("output_tail", "") + "\n" + train.get("output_tail", "")}
