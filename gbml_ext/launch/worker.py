"""The process a launcher runs a run in: `gbml-train` with the launcher's files declared.

    python -m gbml_ext.launch.worker CONFIG OVERRIDES --resume

Importing `gbml_ext.launch` declares `job.json`, `launch.log` and `slurm/` as files of the run
folder (`launch.files`), so the run neither moves them aside nor counts them as a run; then
this is gbml-train's command line, errors and exit codes included.
"""
from __future__ import annotations

import sys

from ..runner.cli import main
from . import files  # noqa: F401  (declares the launcher's files to the runner)

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
