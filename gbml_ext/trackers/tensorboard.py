"""The `tensorboard` backend: event files in the run folder's `tensorboard/` (torch's
`SummaryWriter`), read by `tensorboard --logdir`. A grid's runs (`out/<name>/seed<N>`) show
as one comparison with `tensorboard --logdir out`; a resumed run adds an event file to the
same folder, so each metric stays one series."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Sequence

from .base import LOGGERS, TrackedRun, Tracker
from .names import hyperparameters

__all__ = ["LOG_DIR", "TensorBoardTracker"]

LOG_DIR = "tensorboard"  # inside the run folder


@LOGGERS.register("tensorboard", doc="TensorBoard event files in the run folder's tensorboard/")
class TensorBoardTracker(Tracker):
    """Scalars, the config (as text and as HParams) and the figures as images.

    Example:
        >>> tracker = TensorBoardTracker()
        >>> state = tracker.start(TrackedRun("toy", 0, Path(tempfile.mkdtemp()), "toy"),
        ...                       {"name": "toy"})  # doctest: +SKIP
        >>> tracker.log(1, {"train/loss": 0.5}); tracker.finish(None)  # doctest: +SKIP
    """

    library = "tensorboard"
    extra = "tensorboard"

    def __init__(self) -> None:
        self._writer: Any = None

    def start(self, run: TrackedRun, config: Mapping[str, Any]) -> Dict[str, Any]:
        from torch.utils.tensorboard import SummaryWriter
        from torch.utils.tensorboard.summary import hparams

        log_dir = run.run_dir / LOG_DIR
        self._writer = SummaryWriter(str(log_dir))
        if not run.stored:  # a new run: its config, once
            self._writer.add_text("config", "```\n" + json.dumps(config, indent=2) + "\n```", 0)
            params = {k: v for k, v in hyperparameters(config).items()
                      if isinstance(v, (bool, int, float, str))}
            for summary in hparams(params, {"test/accuracy": 0.0, "test/loss": 0.0}):
                self._writer.file_writer.add_summary(summary)
            self._writer.flush()
        return {"log_dir": LOG_DIR}

    def log(self, step: int, metrics: Mapping[str, float]) -> None:
        for name, value in metrics.items():
            self._writer.add_scalar(name, value, step)
        self._writer.flush()  # what trackers.json says was logged is on disk

    def images(self, step: int, figures: Sequence[Path]) -> None:
        import numpy as np
        from PIL import Image

        for path in figures:
            with Image.open(path) as image:
                pixels = np.asarray(image.convert("RGB"))
            self._writer.add_image(f"figures/{path.stem}", pixels, step, dataformats="HWC")
        self._writer.flush()

    def finish(self, results: Optional[Mapping[str, float]]) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
