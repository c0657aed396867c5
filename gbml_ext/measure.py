"""Memory and hardware readings shared by the runner and the benchmarks."""
from __future__ import annotations

import os
import platform

import torch

__all__ = ["resident_bytes", "peak_resident_bytes", "reset_peak_resident", "cpu_model",
           "hardware_description"]


def resident_bytes() -> int:
    """This process's current resident set size (Linux /proc)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_resident_bytes() -> int:
    """VmHWM: this process's peak RSS. Unlike `ru_maxrss`, it is not inherited from the
    parent through fork and exec, which would hide a small child's peak behind the parent's."""
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith("VmHWM:"))
    return int(line.split()[1]) * 1024


def reset_peak_resident() -> None:
    """Resets VmHWM to the current RSS (Linux >= 4.0), so a later peak is the work's own."""
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
    except OSError:
        pass  # the peak then also covers set-up, which only makes it an upper bound


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            return next(line.split(":", 1)[1].strip() for line in cpuinfo
                        if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown CPU"


def hardware_description(device: torch.device) -> str:
    """'NVIDIA H100 ...' on a GPU, else 'AMD EPYC ..., 2 threads'."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{cpu_model()}, {torch.get_num_threads()} threads"
