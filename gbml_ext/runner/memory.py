"""Training's peak memory as a run records it in results.json: the peak above the start of
training, the process's whole peak, which kind each is, and, when there is none, why."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict

import torch

from ..measure import peak_increase_since, process_peak
from .errors import DamagedFileError
from .rundir import read_results

__all__ = ["SHARED_PROCESS_NOTE", "training_memory"]

# Why a CPU run inside another process's work records no peak memory of its own.
SHARED_PROCESS_NOTE = ("not measured: the run shared its process with other runs "
                       "(gbml-compare --in-process), whose resident memory it cannot tell from "
                       "its own; run without --in-process to measure it")
_NO_TRAINING_NOTE = ("not measured: no meta-iteration ran in this process (a re-evaluation) and "
                     "no earlier results.json of the run records training's peak")


def training_memory(run_dir: Path, device: torch.device, baseline: int, trained_here: bool,
                    shared_process: bool = False) -> Dict[str, Any]:
    """Training's peak memory as results.json records it, read now (at the end of training,
    `baseline` being what `measure.start_peak_watch` returned at its start):

    `peak_memory_mb`: the peak above the start of training (`peak_memory_kind`
    "peak_rss_increase" on the CPU, "cuda_max_allocated_increase" on a GPU);
    `process_peak_memory_mb`: the process's whole peak during training
    (`process_peak_memory_kind` "peak_rss": VmHWM, or getrusage's ru_maxrss; or
    "cuda_max_allocated"); `peak_memory_note`: why they are None, else None.

    A run that trained nothing here (a re-evaluation) keeps the earlier record's figures; a CPU
    run that trained in a shared process (`shared_process`) records none, as RSS cannot tell
    its memory from the other runs'; a run that extends another records the larger of the two.
    """
    cuda = device.type == "cuda"
    kind = "cuda_max_allocated_increase" if cuda else "peak_rss_increase"
    whole, whole_kind = process_peak(device)
    record: Dict[str, Any] = {
        "peak_memory_mb": peak_increase_since(device, baseline) / 2**20,
        "peak_memory_kind": kind, "process_peak_memory_mb": whole / 2**20,
        "process_peak_memory_kind": whole_kind, "peak_memory_note": None}
    try:
        previous = read_results(run_dir) or {}
    except DamagedFileError:
        previous = {}
    same_kind = previous.get("peak_memory_kind") == kind
    earlier = {key: previous.get(key) if same_kind else None
               for key in ("peak_memory_mb", "process_peak_memory_mb")}
    if not trained_here:
        note = None if earlier["peak_memory_mb"] is not None else (
            previous.get("peak_memory_note") or _NO_TRAINING_NOTE)
        return {**record, **earlier, "peak_memory_note": note}
    if shared_process and not cuda:
        return {**record, "peak_memory_mb": None, "process_peak_memory_mb": None,
                "peak_memory_note": SHARED_PROCESS_NOTE}
    for key, value in earlier.items():
        if value is not None:
            record[key] = max(record[key], value)
    return record
