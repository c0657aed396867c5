"""Where one meta-iteration's time goes: torch.profiler over a benchmark peer's meta-step.

    python -m benchmarks.profile_step --device cuda --out DIR      # batched MAML, config a
    python -m benchmarks.profile_step --config a-fomaml --peer learn2learn --out DIR
    python -m benchmarks.profile_step --tiny --out DIR             # a smoke test on the CPU

Runs `--warmup` untimed meta-iterations, times `--iterations` more without the profiler
(median wall time), then profiles `--iterations` under `torch.profiler` (CPU, and CUDA on a
GPU) and writes DIR/profile.json and DIR/profile.md:

- wall: the median seconds per meta-iteration without the profiler, and with it (the profiler
  adds a little per op);
- CPU time: the ops' own CPU time (self time, summed over ops and threads) per iteration;
- on CUDA, kernels: how many per iteration, the GPU's busy time (the union of the kernels'
  intervals), and the idle time between kernels inside the profiled window (launch gaps: the
  GPU waits for the CPU to launch the next kernel). busy / wall near 1 means the step is
  bound by arithmetic or memory traffic; far below 1, by launches and Python;
- the top ops by CPU time and by GPU time.

The numbers describe the machine it runs on; `--tiny` shrinks the config (smoke tests only).
"""
from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
from torch.profiler import ProfilerActivity, profile

from gbml_ext.fileio import atomic_write_json, atomic_write_text
from gbml_ext.measure import hardware_description

from .configs import CONFIGS, tiny
from .harness import timed
from .peers import PEERS, build_meta_iteration

__all__ = ["busy_time", "main", "profile_meta_iteration"]


def busy_time(intervals: Sequence[Tuple[float, float]]) -> Tuple[float, float]:
    """(busy, span) of (start, end) intervals: the length of their union, and from the first
    start to the last end. span - busy is the idle time between them.

    Example:
        >>> busy_time([(0, 2), (1, 3), (5, 6)])
        (4, 6)
    """
    if not intervals:
        return 0, 0
    ordered = sorted(intervals)
    busy: float = 0
    current_start, current_end = ordered[0]
    for start, end in ordered[1:]:
        if start > current_end:
            busy += current_end - current_start
            current_start, current_end = start, end
        else:
            current_end = max(current_end, end)
    busy += current_end - current_start
    return busy, ordered[-1][1] - ordered[0][0]


def _device_time(event: Any) -> float:
    """An averaged event's own time on the GPU, in microseconds (the name changed in torch
    2.x)."""
    for name in ("self_device_time_total", "self_cuda_time_total"):
        if hasattr(event, name):
            return float(getattr(event, name))
    return 0.0


def _kernel_intervals(prof: profile) -> List[Tuple[float, float]]:
    """(start, end) in microseconds of every GPU kernel and memory copy the profiler saw."""
    intervals = []
    for event in prof.events():
        if event.device_type != torch.autograd.DeviceType.CPU:
            intervals.append((float(event.time_range.start), float(event.time_range.end)))
    return intervals


def _top(averages: Any, key: Any, count: int) -> List[Dict[str, Any]]:
    rows = sorted(averages, key=key, reverse=True)[:count]
    return [{"op": row.key, "calls": row.count, "self_cpu_ms": row.self_cpu_time_total / 1e3,
             "self_gpu_ms": _device_time(row) / 1e3} for row in rows]


def profile_meta_iteration(config_name: str, peer: str, device: torch.device, iterations: int,
                           warmup: int, shrink: bool, top: int = 15) -> Dict[str, Any]:
    """Profiles `iterations` meta-iterations of `peer` on `config_name`; returns the summary
    (see the module docstring)."""
    config = tiny(CONFIGS[config_name]) if shrink else CONFIGS[config_name]
    run = build_meta_iteration(config, peer, device)
    for _ in range(max(1, warmup)):
        timed(run, device)
    wall = statistics.median(timed(run, device) for _ in range(iterations))
    activities = [ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
    with profile(activities=activities) as prof:
        profiled = sum(timed(run, device) for _ in range(iterations)) / iterations
    averages = prof.key_averages()
    summary: Dict[str, Any] = {
        "config": config_name, "description": config.description, "peer": peer,
        "device": hardware_description(device), "torch": torch.__version__,
        "iterations": iterations, "tiny": shrink,
        "wall_s": wall, "wall_profiled_s": profiled,
        "cpu_self_s": sum(row.self_cpu_time_total for row in averages) / 1e6 / iterations,
        "top_cpu": _top(averages, lambda row: row.self_cpu_time_total, top),
    }
    if device.type == "cuda":
        try:
            intervals = _kernel_intervals(prof)
            busy, span = busy_time(intervals)
            summary.update({
                "kernels_per_iteration": len(intervals) / iterations,
                "gpu_busy_s": busy / 1e6 / iterations,
                "gpu_idle_between_kernels_s": (span - busy) / 1e6 / iterations,
                "gpu_busy_fraction_of_wall": busy / 1e6 / iterations / profiled,
                "top_gpu": _top(averages, _device_time, top)})
        except Exception as error:  # noqa: BLE001 (keep the CPU side of the report)
            summary["gpu_error"] = f"{type(error).__name__}: {error}"
    return summary


def markdown(summary: Dict[str, Any]) -> str:
    """The summary as a short page."""
    def ms(key: str) -> str:
        value = summary.get(key)
        return "-" if value is None else f"{value * 1e3:.2f} ms"

    lines = [f"# Profile: {summary['peer']} on {summary['config']}", "",
             f"- {summary['description']}" + (" (TINY: numbers mean nothing)"
                                              if summary["tiny"] else ""),
             f"- device: {summary['device']}; torch {summary['torch']}; "
             f"{summary['iterations']} iterations", "",
             "| per meta-iteration | value |", "|---|---:|",
             f"| wall (median, no profiler) | {ms('wall_s')} |",
             f"| wall under the profiler (mean) | {ms('wall_profiled_s')} |",
             f"| CPU time in ops (self, all threads) | {ms('cpu_self_s')} |",
             f"| GPU kernel time (busy) | {ms('gpu_busy_s')} |",
             f"| GPU idle between kernels | {ms('gpu_idle_between_kernels_s')} |"]
    if summary.get("kernels_per_iteration") is not None:
        lines += [f"| kernels | {summary['kernels_per_iteration']:.0f} |",
                  f"| GPU busy / wall | {summary['gpu_busy_fraction_of_wall']:.2f} |"]
    if summary.get("gpu_error"):
        lines += ["", f"GPU analysis failed: {summary['gpu_error']}"]
    for key, title in (("top_cpu", "CPU"), ("top_gpu", "GPU")):
        if summary.get(key):
            lines += ["", f"## Top ops by {title} time (all iterations)", "",
                      "| op | calls | self CPU ms | self GPU ms |", "|---|---:|---:|---:|"]
            lines += [f"| `{row['op']}` | {row['calls']} | {row['self_cpu_ms']:.2f} | "
                      f"{row['self_gpu_ms']:.2f} |" for row in summary[key]]
    return "\n".join(lines) + "\n"


def main(argv: Optional[List[str]] = None) -> Dict[str, Any]:
    """Parses the command line, profiles, writes DIR/profile.{json,md}; returns the summary."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                        choices=["cpu", "cuda"])
    parser.add_argument("--config", default="a-maml", choices=sorted(CONFIGS))
    parser.add_argument("--peer", default="batched", choices=list(PEERS))
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--tiny", action="store_true", help="shrink the config (smoke test)")
    parser.add_argument("--out", type=Path, required=True, help="folder for profile.{json,md}")
    args = parser.parse_args(argv)
    summary = profile_meta_iteration(args.config, args.peer, torch.device(args.device),
                                     args.iterations, args.warmup, args.tiny)
    atomic_write_json(args.out / "profile.json", summary)
    atomic_write_text(args.out / "profile.md", markdown(summary))
    print(markdown(summary))
    print(json.dumps({key: summary[key] for key in ("wall_s", "cpu_self_s")}))
    return summary


if __name__ == "__main__":
    main()
