"""Memory and hardware readings shared by the runner and the benchmarks."""
from __future__ import annotations

import gc
import os
import platform
import resource
from typing import Callable

import torch

__all__ = ["cpu_model", "hardware_description", "memory_in_use", "peak_increase_since",
           "peak_memory_increase", "peak_resident_bytes", "process_peak", "reset_peak_resident",
           "resident_bytes", "start_peak_watch"]


def resident_bytes() -> int:
    """This process's current resident set size (Linux /proc)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_resident_bytes() -> int:
    """VmHWM: this process's peak RSS. Unlike `ru_maxrss`, it is not inherited from the
    parent through fork and exec, which would hide a small child's peak behind the parent's."""
    try:
        with open("/proc/self/status") as status:
            line = next(line for line in status if line.startswith("VmHWM:"))
    except (OSError, StopIteration):  # no /proc: getrusage's peak (KB on Linux)
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
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


def memory_in_use(device: torch.device) -> int:
    """Bytes in use now: tensors allocated on a CUDA device, else this process's RSS."""
    if device.type == "cuda":
        return torch.cuda.memory_allocated(device)
    return resident_bytes()


def start_peak_watch(device: torch.device) -> int:
    """Resets the peak counter and returns the memory in use now: the baseline a later
    `peak_increase_since` is measured from, so a peak is the work's own, not the dataset's or
    the libraries'."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        return torch.cuda.memory_allocated(device)
    reset_peak_resident()
    return resident_bytes()


def peak_increase_since(device: torch.device, baseline: int) -> int:
    """Peak bytes in use since `start_peak_watch` returned `baseline`, above it. CUDA: the
    tensors' own peak (`max_memory_allocated`); CPU: peak RSS, an upper bound on the tensors'
    peak that covers this whole process."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - baseline
    return peak_resident_bytes() - baseline


def process_peak(device: torch.device) -> tuple[int, str]:
    """(bytes, kind): the peak memory of this process since the last `start_peak_watch`, whole,
    not above a baseline. CUDA: the peak of allocated tensors (`max_memory_allocated`, kind
    "cuda_max_allocated"); CPU: the peak resident set (VmHWM, or `getrusage`'s ru_maxrss where
    there is no /proc; kind "peak_rss")."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device), "cuda_max_allocated"
    return peak_resident_bytes(), "peak_rss"


def peak_memory_increase(function: Callable[[], object], device: torch.device) -> int:
    """Runs `function()` once and returns its peak memory above what was in use before, in bytes.

    CUDA: `torch.cuda.max_memory_allocated` minus the allocation before the call (the peak is
    reset first), i.e. the tensors' own peak. CPU: peak RSS (VmHWM, reset first) minus the RSS
    before the call; that includes allocator caching and fragmentation, so it is an upper bound
    on the tensors' peak, and it covers this whole process: measure in a process of its own.

    Example:
        >>> peak_memory_increase(lambda: torch.ones(2**20), torch.device("cpu")) >= 0
        True
    """
    gc.collect()
    baseline = start_peak_watch(device)
    function()
    return peak_increase_since(device, baseline)
