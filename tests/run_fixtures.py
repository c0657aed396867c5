"""Shared helpers of the runner's tests: tiny synthetic configs, checksums of a folder, a command
run with its output captured, and a read-only folder simulated (`read_only`, a fixture that
conftest.py makes available to every test).

As root, chmod does not stop writes, so `read_only` makes the writes themselves fail with
EROFS, as on a read-only bind mount.
"""
from __future__ import annotations

import builtins
import errno
import hashlib
import io
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any, Callable, Dict, Tuple

import pytest

from gbml_ext.runner import Config, load_config

REPO = Path(__file__).resolve().parents[1]
SHALLOW = REPO / "experiments/configs/synthetic/linreg_shallow.toml"
DEEP = REPO / "experiments/configs/synthetic/linreg_deep.toml"
OMNIGLOT = REPO / "experiments/configs/omniglot/5w1s/maml.toml"
# Three meta-iterations, one checkpoint at the end.
TINY = ["data.source=linear-regression", "data.options={dim=4, n_support=8, n_query=8}",
        "train.iterations=3", "train.meta_batch=2", "train.lr=0.01", "train.log_every=1",
        "train.checkpoint_every=0", "evaluation.tasks=4", "algorithm.test_steps=1"]
# Six meta-iterations, a checkpoint every three (so two are kept).
TINY6 = ["data.source=linear-regression", "data.options={dim=4, n_support=8, n_query=8}",
         "train.iterations=6", "train.meta_batch=2", "train.lr=0.01", "train.log_every=1",
         "train.checkpoint_every=3", "evaluation.tasks=5", "algorithm.test_steps=2"]
# Overrides that make a shipped synthetic config quick.
FAST = ["train.iterations=3", "train.meta_batch=2", "evaluation.tasks=4", "train.eval_every=0",
        "train.log_every=1"]


def tiny(out: Any, *extra: str) -> Config:
    """The `TINY` config writing to `out`, with `extra` overrides."""
    return load_config(None, TINY + [f"output_dir='{out}'", *extra])


def tiny6(out: Any, *extra: str) -> Config:
    """The `TINY6` config writing to `out`, with `extra` overrides."""
    return load_config(None, TINY6 + [f"output_dir='{out}'", *extra])


def checksums(folder: Path) -> Dict[str, str]:
    """{relative path: sha256} of every file under `folder`."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(Path(folder).rglob("*")) if p.is_file()}


def cli(capsys: Any, fn: Callable, *args: Any) -> Tuple[int, str, str]:
    """Runs a command's main on `args` (as strings); returns (exit code, stdout, stderr)."""
    code = fn([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def run_cli(capsys: Any, tmp_path: Path, *overrides: str) -> Tuple[int, str, str]:
    """gbml-train on `TINY` into `tmp_path/run`, with `overrides`."""
    from gbml_ext.runner.cli import main

    return cli(capsys, main, *TINY, f"output_dir='{tmp_path}/run'", *overrides, "--no-progress")


def clean_error(err: str, lines: int = 2) -> bool:
    """One or two lines on stderr, none of them a traceback."""
    return "Traceback" not in err and 0 < len(err.strip().splitlines()) <= lines


@pytest.fixture
def read_only(monkeypatch: pytest.MonkeyPatch) -> Callable[[Path], None]:
    """`read_only(folder)` makes every write under `folder` fail with EROFS."""
    folders = []

    def inside(path) -> bool:
        if isinstance(path, int):
            return False
        target = Path(os.fsdecode(path)).absolute()
        return any(target == f or f in target.parents for f in folders)

    def refuse(path):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), os.fsdecode(path))

    real_open, real_os_open = builtins.open, os.open

    def fake_open(file, mode="r", *args, **kwargs):
        if not isinstance(file, int) and any(c in mode for c in "wax+") and inside(file):
            refuse(file)
        return real_open(file, mode, *args, **kwargs)

    def fake_os_open(path, flags, *args, **kwargs):
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT) and inside(path):
            refuse(path)
        return real_os_open(path, flags, *args, **kwargs)

    def guard(real):
        def fake(path, *args, **kwargs):
            if inside(path) or any(isinstance(a, (str, os.PathLike)) and inside(a)
                                   for a in args):
                refuse(path)
            return real(path, *args, **kwargs)
        return fake

    for name in ("mkdir", "rename", "replace", "unlink", "rmdir"):
        monkeypatch.setattr(os, name, guard(getattr(os, name)))
    monkeypatch.setattr(builtins, "open", fake_open)
    monkeypatch.setattr(io, "open", fake_open)
    monkeypatch.setattr(os, "open", fake_os_open)
    return lambda folder: folders.append(Path(folder).absolute())


def slurm_node_up() -> bool:
    if shutil.which("sinfo") is None:
        return False
    states = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True).stdout
    return any(s.strip() in ("idle", "mix", "alloc") for s in states.split())


@pytest.fixture(scope="module")
def slurm():
    """A running one-node cluster: started here if needed; in CI a failure to start fails."""
    if not slurm_node_up() and os.geteuid() == 0:
        subprocess.run(["bash", str(REPO / "scripts/slurm_local.sh"), "start"],
                       capture_output=True, text=True, timeout=300)
    if not slurm_node_up():
        message = "no Slurm node is up (sudo bash scripts/slurm_local.sh start)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
