"""The measuring part of the benchmark: interleaved timing, medians, FLOPs, ceiling, memory.

Timing: every peer's meta-iteration runs interleaved (A, B, C, A, B, C, ...) so machine noise
hits all alike, and the median over repeats is reported.

Memory (`gbml_ext.measure.peak_memory_increase`): on CUDA, `max_memory_allocated` minus the
allocation before one meta-iteration, in this process. On CPU there is no allocator peak
counter, so each peer runs in a fresh subprocess (`--memory-probe`) that reports its peak RSS
(VmHWM, reset just before) minus its RSS before the meta-iteration: an upper bound on the
tensors' own peak, since it includes allocator caching and fragmentation.

FLOPs: `torch.utils.flop_counter.FlopCounterMode`, with a group-aware formula for the weight
gradient of grouped convolutions (torch's ignores `groups` there and over-counts vmap's
per-task convolutions by a factor of T).
"""
from __future__ import annotations

import gc
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode, conv_backward_flop

from gbml_ext.measure import peak_memory_increase

from .configs import BenchmarkConfig
from .peers import PEERS, PeerUnavailable, build_meta_iteration

__all__ = ["benchmark_config", "count_flops", "markdown_table", "measure_throughput_ceiling",
           "memory_probe", "peak_memory", "print_table", "timed"]

REPO = Path(__file__).resolve().parents[1]
Results = Dict[str, Dict[str, Any]]


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(function: Callable[[], object], device: torch.device) -> float:
    """Wall-clock seconds of one call, with the device synchronized before and after."""
    _synchronize(device)
    start = time.perf_counter()
    function()
    _synchronize(device)
    return time.perf_counter() - start


def _block(function: Callable[[], object], calls: int) -> Callable[[], None]:
    """`function` called `calls` times in a row."""
    def block() -> None:
        for _ in range(calls):
            function()
    return block


def _grouped_conv_backward_flop(grad_out_shape: Any, x_shape: Any, w_shape: Any, bias: Any,
                                stride: Any, padding: Any, dilation: Any, transposed: Any,
                                output_padding: Any, groups: int, output_mask: Any,
                                out_shape: Any, **kwargs: Any) -> int:
    """torch's convolution_backward formula, with the weight gradient divided by `groups`."""
    common = (grad_out_shape, x_shape, w_shape, bias, stride, padding, dilation, transposed,
              output_padding, groups)
    # torch registers the formula with a decorator that adds `out_val`; mypy sees the bare one.
    input_flops = conv_backward_flop(*common, [output_mask[0], False, False],  # type: ignore
                                     out_val=out_shape)
    weight_flops = conv_backward_flop(*common, [False, output_mask[1], False],  # type: ignore
                                      out_val=out_shape)
    return input_flops + weight_flops // groups


def count_flops(function: Callable[[], object]) -> int:
    """FLOPs of the aten ops one call runs (convolutions, matmuls; elementwise ops count 0)."""
    mapping = {torch.ops.aten.convolution_backward: _grouped_conv_backward_flop}
    with FlopCounterMode(display=False, custom_mapping=mapping) as counter:
        function()
    return counter.get_total_flops()


def measure_throughput_ceiling(device: torch.device, repeats: int = 5,
                               scale: float = 1.0) -> Dict[str, float]:
    """Measured GFLOP/s of a large matmul and of a CNN4-sized conv2d, forward only.

    These are what the hardware reaches on friendly shapes; a meta-iteration mixes them with
    small, memory-bound ops, so it can only approach them. `scale` < 1 shrinks both problems
    (smoke tests only).
    """
    side, images = max(16, int(2048 * scale)), max(2, int(2400 * scale))
    matmul_a = torch.randn(side, side, device=device)
    matmul_b = torch.randn(side, side, device=device)
    # Omniglot CNN4 layer 2 over a 32-task query batch: 2400 images, 64->64 channels, 14x14.
    conv_input = torch.randn(images, 64, 14, 14, device=device)
    conv_weight = torch.randn(64, 64, 3, 3, device=device)
    ceilings = {}
    for name, function in (("matmul_gflops", lambda: matmul_a @ matmul_b),
                           ("conv2d_gflops", lambda: F.conv2d(conv_input, conv_weight,
                                                              stride=2, padding=1))):
        flops = count_flops(function)
        function()
        seconds = statistics.median(timed(function, device) for _ in range(repeats))
        ceilings[name] = flops / seconds / 1e9
    return ceilings


def memory_probe(config_json: str, peer: str) -> None:
    """Subprocess body: prints the peak RSS increase of one meta-iteration as JSON."""
    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", torch.get_num_threads())))
    run = build_meta_iteration(BenchmarkConfig.from_json(config_json), peer, torch.device("cpu"))
    print(json.dumps({"peak_increase_bytes": peak_memory_increase(run, torch.device("cpu"))}))


def peak_memory(config: BenchmarkConfig, peer: str, device: torch.device) -> int:
    """Peak memory of one meta-iteration in bytes (see the module docstring for the method)."""
    if device.type == "cuda":
        run = build_meta_iteration(config, peer, device)
        run()  # the first call allocates cuDNN workspaces and caches once
        return peak_memory_increase(run, device)
    command = [sys.executable, "-m", "benchmarks.inner_loop", "--memory-probe",
               config.to_json(), peer]
    environment = dict(os.environ, BENCH_THREADS=str(torch.get_num_threads()))
    output = subprocess.run(command, check=True, capture_output=True, text=True,
                            env=environment, cwd=REPO).stdout
    return json.loads(output.strip().splitlines()[-1])["peak_increase_bytes"]


def benchmark_config(config: BenchmarkConfig, peers: List[str], device: torch.device,
                     repeats: int, warmup: int, measure_memory: bool,
                     skipped: Optional[Dict[str, str]] = None,
                     count_flops_of: str = "all", min_repeat_s: float = 0.05) -> Results:
    """Interleaved median time, FLOPs, GFLOP/s and peak memory for each peer.

    Each repeat times a block of consecutive calls lasting about `min_repeat_s` (at least one
    call; `calls_per_repeat` in the results), as `timeit` does: a single sub-millisecond call
    measures the caches the other peers left behind more than the call itself.

    A peer that cannot run here (`PeerUnavailable`) or fails in its first meta-iteration is
    left out, and `skipped` (when given) gets its reason, so one broken peer does not cost the
    others' numbers. Peers whose work torch cannot see (JAX) get no FLOPs or memory reading.
    `count_flops_of="one"` counts the FLOPs of the first peer only and gives every peer that
    count (they all do the same arithmetic: tests/test_benchmark.py); "none" counts none.
    """
    skipped = {} if skipped is None else skipped
    runs: Dict[str, Callable[[], None]] = {}
    for name in peers:
        try:
            runs[name] = build_meta_iteration(config, name, device)
        except PeerUnavailable as why:
            skipped[name] = f"unavailable: {why}"
    first_call: Dict[str, float] = {}
    for name, run in list(runs.items()):
        try:  # the first call includes torch.compile's or jax.jit's compilation
            first_call[name] = timed(run, device)
        except Exception as error:  # noqa: BLE001 (report it, keep the other peers)
            skipped[name] = f"failed: {type(error).__name__}: {str(error)[:300]}"
            del runs[name]
    for name in skipped:
        print(f"{name:<12} skipped: {skipped[name]}", flush=True)
    warm: Dict[str, float] = {}
    for _ in range(max(1, warmup - 1)):
        for name, run in runs.items():
            warm[name] = timed(run, device)
    calls = {name: max(1, min(10_000, int(min_repeat_s / max(warm[name], 1e-9))))
             for name in runs}
    times: Dict[str, List[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            times[name].append(timed(_block(run, calls[name]), device) / calls[name])
    results: Results = {}
    shared_flops: Optional[int] = None
    for name, run in runs.items():
        seconds = statistics.median(times[name])
        flops = None
        if PEERS[name].torch_counters and count_flops_of != "none":
            if count_flops_of == "all" or shared_flops is None:
                shared_flops = count_flops(run)
            flops = shared_flops
        results[name] = {"median_s": seconds, "times_s": times[name], "flops": flops,
                         "gflops_per_s": None if flops is None else flops / seconds / 1e9,
                         "first_call_s": first_call.get(name),
                         "calls_per_repeat": calls[name]}
    del runs
    gc.collect()
    for name in results:
        results[name]["peak_memory_mb"] = (
            peak_memory(config, name, device) / 2**20
            if measure_memory and PEERS[name].torch_counters else None)
    reference: Optional[float] = results.get("learn2learn", {}).get("median_s")
    for name in results:
        results[name]["speedup_vs_learn2learn"] = (
            reference / results[name]["median_s"] if reference else None)
    return results


def print_table(title: str, results: Results) -> None:
    """The results of one config as an aligned text table on stdout."""
    print(f"\n## {title}")
    print(f"{'implementation':<12} {'median ms/iter':>14} {'vs l2l':>7} {'peak MB':>8} "
          f"{'GFLOP/iter':>10} {'GFLOP/s':>8}")
    for name, row in results.items():
        memory = "-" if row["peak_memory_mb"] is None else f"{row['peak_memory_mb']:.0f}"
        speedup = ("-" if row["speedup_vs_learn2learn"] is None
                   else f"{row['speedup_vs_learn2learn']:.2f}x")
        flops = "-" if row["flops"] is None else f"{row['flops'] / 1e9:.1f}"
        rate = "-" if row["gflops_per_s"] is None else f"{row['gflops_per_s']:.1f}"
        print(f"{name:<12} {1e3 * row['median_s']:>14.3f} {speedup:>7} {memory:>8} "
              f"{flops:>10} {rate:>8}", flush=True)


def markdown_table(results: Results) -> List[str]:
    """One config's results as markdown table lines."""
    lines = ["| peer | median s/iter | vs learn2learn | first call s | peak MB | GFLOP/s |",
             "|---|---:|---:|---:|---:|---:|"]

    def cell(value: Optional[float], spec: str) -> str:
        return "-" if value is None else format(value, spec)

    for name, row in results.items():
        lines.append(f"| {name} | {row['median_s']:.4f} | "
                     f"{cell(row['speedup_vs_learn2learn'], '.2f')} | "
                     f"{cell(row['first_call_s'], '.2f')} | {cell(row['peak_memory_mb'], '.0f')} "
                     f"| {cell(row['gflops_per_s'], '.1f')} |")
    return lines
