"""`make dist` (scripts/dist.sh, scripts/build_learn2learn.sh): built with the active
environment's Python, never a venv of its own; a missing tool is one line that names it.
The wheels it builds are installed and used in tests/test_install.py."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_make_dist_builds_with_the_active_python_and_never_sets_up_a_venv(tmp_path):
    """`make dist` in a clone without .venv runs straight to the build with the active
    environment's Python (the first python3 on PATH, here a wrapper that logs its use): with
    no compiler it stops at learn2learn's first need, having created no .venv."""
    clone = tmp_path / "clone"
    for name in ("Makefile", "scripts/dist.sh", "scripts/build_learn2learn.sh"):
        (clone / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, clone / name)
    active, log = tmp_path / "env" / "bin", tmp_path / "used"
    active.mkdir(parents=True)
    (active / "python3").write_text(
        f'#!/bin/sh\necho "$@" >> {log}\nexec {sys.executable} "$@"\n')
    (active / "python3").chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHON", "VIRTUAL_ENV")}
    env.update(PATH=f"{active}{os.pathsep}{env['PATH']}", CC="no-such-cc")
    made = subprocess.run(["make", "dist"], cwd=clone, env=env, capture_output=True, text=True,
                          timeout=300)
    assert made.returncode != 0
    assert ("build_learn2learn: no C compiler ('no-such-cc' not found): install one "
            "(Debian: apt-get install gcc)") in made.stderr.splitlines(), made.stderr
    assert "import build" in log.read_text()
    assert not (clone / ".venv").exists() and not list((clone / "dist").glob("*.whl"))


def test_dist_without_a_compiler_or_cython_says_what_is_missing(tmp_path):
    """`make dist` stops with one line naming the missing tool, and builds nothing."""
    out = tmp_path / "dist"
    no_cc = subprocess.run(["bash", "scripts/dist.sh", str(out)], cwd=REPO, text=True,
                           capture_output=True,
                           env={**os.environ, "CC": "no-such-cc", "PYTHON": sys.executable})
    assert no_cc.returncode == 1
    assert no_cc.stderr.strip().splitlines() == [
        "build_learn2learn: no C compiler ('no-such-cc' not found): install one "
        "(Debian: apt-get install gcc)"]
    bare = tmp_path / "bare"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True)
    python = bare / "bin" / "python"
    no_cython = subprocess.run(["bash", "scripts/build_learn2learn.sh", str(python), str(out)],
                               cwd=REPO, text=True, capture_output=True)
    assert no_cython.returncode == 1
    assert no_cython.stderr.strip().splitlines() == [
        f"build_learn2learn: Cython 3 is missing: {python} -m pip install "
        "'cython>=3'"]
    assert not list(out.glob("*.whl"))
