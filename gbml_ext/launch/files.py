"""What a launcher keeps in a run folder: its record of the run (`job.json`), the run's log
(`launch.log`, local runs with more than one job) and Slurm's files (`slurm/`).

They belong to the folder, not to one attempt of its run, so this module declares them to the
runner (`rundir.keep_in_folder`): moving a run aside leaves them, and they do not make a
folder hold a run.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Dict, Optional

from ..fileio import atomic_write_json
from ..runner.rundir import keep_in_folder

__all__ = ["JOB_FILE", "LAUNCHER_FILES", "LOG_FILE", "SLURM_FOLDER", "log_tail", "read_job",
           "write_job"]

JOB_FILE, LOG_FILE, SLURM_FOLDER = "job.json", "launch.log", "slurm"
LAUNCHER_FILES = (JOB_FILE, LOG_FILE, SLURM_FOLDER)
keep_in_folder(*LAUNCHER_FILES)


def write_job(run_dir: Path, record: Dict[str, Any]) -> None:
    """Writes the launcher's record of a run (`job.json`) atomically.

    Arguments:
        run_dir: the run's folder.
        record: JSON-able; `launcher` names the launcher that started the run.

    Example:
        >>> import tempfile
        >>> folder = Path(tempfile.mkdtemp())
        >>> write_job(folder, {"launcher": "local", "pid": 4242})
        >>> read_job(folder)
        {'launcher': 'local', 'pid': 4242}
    """
    atomic_write_json(Path(run_dir) / JOB_FILE, record)


def read_job(run_dir: Path) -> Optional[Dict[str, Any]]:
    """The launcher's record of a run, or None if there is none (or it is unreadable).

    Example:
        >>> read_job(Path("/nonexistent")) is None
        True
    """
    try:
        record = json.loads((Path(run_dir) / JOB_FILE).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def log_tail(path: Optional[str], lines: int = 3, limit: int = 400) -> str:
    """Why a run ended, from its log: the last one-line error or stop message of a gbml_ext
    command (`gbml-train: error: ...`), else the last non-empty lines joined by ' | ', whole
    lines only, at most `limit` characters ('' if unreadable).

    Example:
        >>> import tempfile
        >>> with tempfile.NamedTemporaryFile("w", suffix=".log", delete=False) as log:
        ...     _ = log.write("gbml_ext: starting fresh.\\ngbml-train: error: it diverged\\n")
        >>> log_tail(log.name), log_tail(None), log_tail("/nonexistent/launch.log")
        ('gbml-train: error: it diverged', '', '')
    """
    if not path:
        return ""
    try:
        text = [line.strip() for line in Path(path).read_text(errors="replace").splitlines()
                if line.strip()]
    except OSError:
        return ""
    said = [line for line in text if re.match(r"gbml-[a-z]+: (error|stopped): ", line)]
    kept = said[-1:] or text[-1:]
    for line in reversed(text[-lines:-1] if not said else []):
        if len(" | ".join([line, *kept])) > limit:
            break
        kept.insert(0, line)
    joined = " | ".join(kept)
    return joined if len(joined) <= limit else joined[:limit - 1] + "…"
