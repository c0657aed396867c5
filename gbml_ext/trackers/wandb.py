"""The `wandb` backend: one Weights & Biases run per (config, seed), in the group named by
`logging.group` (a grid's name, or the config's name), its files in the run folder's `wandb/`.

wandb's own settings apply: `WANDB_MODE=offline` keeps everything on the machine (`wandb sync`
uploads it later), `WANDB_PROJECT` names the project (default "gbml_ext"), `WANDB_ENTITY` the
team. A resumed run continues the same wandb run (its id is kept in the run folder). wandb
does not capture the run's console output here.
"""
from __future__ import annotations

import json
import os
import struct
import uuid
from pathlib import Path
from typing import Any, Dict, Iterator, Mapping, Optional, Sequence

from .base import LOGGERS, TrackedRun, Tracker

__all__ = ["WandbTracker"]

_BLOCK = 32768  # the .wandb file's block size


@LOGGERS.register("wandb", doc="a Weights & Biases run per (config, seed); the group groups a grid")
class WandbTracker(Tracker):
    """Metrics, the config, the final results in the run's summary, the figures as images.

    Example:
        >>> tracker = WandbTracker()
        >>> state = tracker.start(TrackedRun("toy", 0, Path("runs/toy/seed0"), "toy"),
        ...                       {"name": "toy"})  # doctest: +SKIP
        >>> state["run_id"]  # doctest: +SKIP
        '9c1d0f6a2b7e'
    """

    library = "wandb"
    extra = "wandb"

    def __init__(self) -> None:
        self._run: Any = None
        self._dir, self._id = Path(), ""

    def start(self, run: TrackedRun, config: Mapping[str, Any]) -> Dict[str, Any]:
        import wandb

        run_id = run.stored.get("run_id") or uuid.uuid4().hex[:12]
        project = run.stored.get("project") or os.environ.get("WANDB_PROJECT") or "gbml_ext"
        run.run_dir.mkdir(parents=True, exist_ok=True)
        self._run = wandb.init(
            project=project, group=run.group, name=run.label, id=run_id, resume="allow",
            dir=str(run.run_dir), config=None if run.stored else dict(config),
            settings=wandb.Settings(console="off", disable_git=True, save_code=False))
        self._dir, self._id = run.run_dir, run_id
        return {"run_id": run_id, "project": project}

    def last_step(self) -> Optional[int]:
        """Offline, the last step the run's earlier .wandb files hold: wandb writes them in
        bursts, so a killed process leaves fewer steps there than it logged. Online: None."""
        if not self._run.offline:
            return None
        steps = [step for path in sorted(self._dir.glob(f"wandb/offline-run-*-{self._id}/"
                                                        f"run-{self._id}.wandb"))
                 if path.parent.name != Path(self._run.dir).parent.name
                 for step in _history_steps(path)]
        return max(steps, default=0)

    def log(self, step: int, metrics: Mapping[str, float]) -> None:
        self._run.log(dict(metrics), step=step)

    def images(self, step: int, figures: Sequence[Path]) -> None:
        import wandb

        self._run.log({f"figures/{path.stem}": wandb.Image(str(path)) for path in figures},
                      step=step)

    def finish(self, results: Optional[Mapping[str, float]]) -> None:
        if self._run is None:
            return
        if results is not None:
            self._run.summary.update(dict(results))
        self._run.finish(exit_code=0 if results is not None else 1)
        self._run = None


def _history_steps(path: Path) -> Iterator[int]:
    """The steps of the history rows in an offline .wandb file: a log of protobuf records in
    32 KiB blocks, each piece behind a 7-byte header (checksum, length, kind: 1 a whole record,
    2, 3, 4 its first, middle and last pieces). A file cut short ends where it was cut."""
    from google.protobuf.message import DecodeError
    from wandb.proto import wandb_internal_pb2

    data, pos, parts = path.read_bytes(), 7, b""
    while pos + 7 <= len(data):
        left = _BLOCK - pos % _BLOCK
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if left < 7 or (length == 0 and kind == 0):  # the block's zero padding
            pos += left
            continue
        parts += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind not in (1, 4):
            continue
        record = wandb_internal_pb2.Record()  # type: ignore[attr-defined]
        try:
            record.ParseFromString(parts)
        except DecodeError:
            return
        parts = b""
        for item in record.history.item:
            if (item.key or "/".join(item.nested_key)) == "_step":
                yield int(json.loads(item.value_json))
