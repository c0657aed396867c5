"""The install step of scripts/gpu_check.py: the project and its missing dependencies, offline.

Everything comes from the wheelhouse that `make wheelhouse` wrote (scripts/build_wheelhouse.py)
and that travels with the tree; nothing is fetched. Only what is missing is installed, so the
target's own torch, numpy and friends are never replaced:

1. each wheel of `wheels/` whose distribution is not installed (`pip install --no-index
   --no-deps`); the benchmark's optional peers (higher, torchopt) may fail alone;
2. learn2learn 0.2.0, if it does not import: first the regenerated source tree, compiled by
   the target's C compiler (`pip install --no-build-isolation`); if that fails (no compiler
   or no Python headers), the pure-Python tree, whose Cython modules were rewritten as plain
   Python and checked to draw the same tasks;
3. gbml_ext, editable (`pip install --no-deps --no-build-isolation -e .`); if pip cannot, the
   repository root goes on PYTHONPATH instead.
"""
from __future__ import annotations

import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Dict, List

__all__ = ["atomic_write_text", "install", "pip_install"]

OPTIONAL = ("higher", "torchopt", "optree", "graphviz")


def atomic_write_text(path: Path, text: str) -> None:
    """Writes `text` to `path` through a temporary file and a rename, so a check killed
    mid-write leaves the previous report, never a truncated one (stdlib only: this runs before
    gbml_ext is installed)."""
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


def _tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def pip_install(*args: str) -> subprocess.CompletedProcess:
    """`python -m pip install --no-index ...` in this interpreter, output captured."""
    command = [sys.executable, "-m", "pip", "install", "--disable-pip-version-check",
               "--no-index", "--no-cache-dir", *args]
    return subprocess.run(command, capture_output=True, text=True)


def _distribution(wheel: Path) -> str:
    return re.sub(r"[-_.]+", "-", wheel.name.split("-")[0]).lower()


def _installed(name: str) -> bool:
    try:
        importlib.metadata.version(name)
        return True
    except importlib.metadata.PackageNotFoundError:
        return False


def _imports(statement: str, extra_path: str = "") -> subprocess.CompletedProcess:
    environment = dict(os.environ)
    if extra_path:
        environment["PYTHONPATH"] = os.pathsep.join(
            filter(None, [extra_path, environment.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, "-c", statement], capture_output=True, text=True,
                          cwd="/", env=environment)


def _install_wheels(wheelhouse: Path) -> Dict[str, str]:
    outcome: Dict[str, str] = {}
    for wheel in sorted((wheelhouse / "wheels").glob("*.whl")):
        name = _distribution(wheel)
        if _installed(name):
            outcome[name] = f"already installed ({importlib.metadata.version(name)})"
            continue
        result = pip_install("--no-deps", str(wheel))
        outcome[name] = ("installed " + wheel.name if result.returncode == 0 else
                         "FAILED" + (" (optional)" if name in OPTIONAL else "") + ": "
                         + _tail(result.stderr, 3))
    return outcome


def _install_tree(tree: Path) -> subprocess.CompletedProcess:
    """pip-installs a source tree from a scratch copy: pip builds inside the tree it is given,
    and the carried wheelhouse may be read-only (and should stay clean)."""
    with tempfile.TemporaryDirectory() as scratch:
        copy = Path(scratch) / tree.name
        shutil.copytree(tree, copy)
        return pip_install("--no-deps", "--no-build-isolation", str(copy))


def _install_learn2learn(wheelhouse: Path) -> Dict[str, Any]:
    check = "import learn2learn; assert learn2learn.__version__ == '0.2.0'"
    if _imports(check).returncode == 0:
        return {"how": "already installed", "ok": True}
    src = next(wheelhouse.glob("learn2learn-*-src"), None)
    purepy = next(wheelhouse.glob("learn2learn-*-purepy"), None)
    attempts: Dict[str, Any] = {}
    if src is not None:
        result = _install_tree(src)
        attempts["compiled"] = "ok" if result.returncode == 0 else _tail(result.stderr)
        if result.returncode == 0 and _imports(check).returncode == 0:
            return {"how": f"compiled here from {src.name}", "ok": True, "attempts": attempts}
    if purepy is not None:
        result = _install_tree(purepy)
        attempts["purepy"] = "ok" if result.returncode == 0 else _tail(result.stderr)
        if result.returncode == 0 and _imports(check).returncode == 0:
            return {"how": f"pure Python from {purepy.name} (no compiler)", "ok": True,
                    "attempts": attempts}
    final = _imports(check)
    return {"how": "none worked", "ok": False, "attempts": attempts,
            "import_error": _tail(final.stderr)}


def _install_gbml_ext(repo: Path) -> Dict[str, Any]:
    check = "import gbml_ext, benchmarks"
    if _imports("import gbml_ext").returncode == 0:
        how = "already importable"
    else:
        result = pip_install("--no-deps", "--no-build-isolation", "-e", str(repo))
        how = ("pip install -e ." if result.returncode == 0 else
               "PYTHONPATH (pip -e failed: " + _tail(result.stderr, 2) + ")")
    # benchmarks/ and experiments/ are not installed packages: they run from the tree.
    os.environ["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(repo), os.environ.get("PYTHONPATH", "")]))
    final = _imports(check, str(repo))
    return {"how": how, "ok": final.returncode == 0, "import_error": _tail(final.stderr)}


def install(wheelhouse: Path, repo: Path) -> Dict[str, Any]:
    """Installs what is missing (see the module docstring); returns what happened per part."""
    if not wheelhouse.is_dir():
        return {"ok": False, "error": f"no wheelhouse at {wheelhouse}: run `make wheelhouse` "
                                      f"where there is a network and carry build/wheelhouse"}
    wheels = _install_wheels(wheelhouse)
    learn2learn = _install_learn2learn(wheelhouse)
    gbml_ext = _install_gbml_ext(repo)
    required_failed: List[str] = [name for name, text in wheels.items()
                                  if text.startswith("FAILED") and name not in OPTIONAL]
    return {"ok": learn2learn["ok"] and gbml_ext["ok"] and not required_failed,
            "wheels": wheels, "learn2learn": learn2learn, "gbml_ext": gbml_ext}
