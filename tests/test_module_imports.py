"""Every module under experiments/, benchmarks/ and scripts/ does nothing when imported: its work
runs under `if __name__ == "__main__":` or in functions, so importing one (a test, a notebook,
another script) trains nothing, writes nothing and prints nothing."""
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FOLDERS = ("experiments", "benchmarks", "scripts")

# Imports each module in turn with stdout and stderr redirected at the file-descriptor level,
# and prints, as the last line, {module: what it printed} for those that printed anything.
_PROBE = r"""
import importlib, json, os, sys, tempfile
sys.path.insert(0, sys.argv[1])
printed = {}
for name in sys.argv[2:]:
    with tempfile.TemporaryFile() as capture:
        saved = os.dup(1), os.dup(2)
        sys.stdout.flush(); sys.stderr.flush()
        os.dup2(capture.fileno(), 1); os.dup2(capture.fileno(), 2)
        try:
            importlib.import_module(name)
        except BaseException as error:
            print(f"import failed: {type(error).__name__}: {error}")
        finally:
            sys.stdout.flush(); sys.stderr.flush()
            os.dup2(saved[0], 1); os.dup2(saved[1], 2)
        capture.seek(0)
        text = capture.read().decode(errors="replace")
    if text:
        printed[name] = text[:500]
print(json.dumps(printed))
"""


def _modules() -> list:
    names = []
    for folder in FOLDERS:
        for path in sorted((REPO / folder).rglob("*.py")):
            if "results" in path.parts or "configs" in path.relative_to(REPO).parts[:2]:
                continue
            parts = path.relative_to(REPO).with_suffix("").parts
            names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def _tree_state() -> dict:
    """Size and modification time of every file under the three folders."""
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns)
            for folder in FOLDERS for p in (REPO / folder).rglob("*") if p.is_file()
            and "__pycache__" not in p.parts}


def test_the_probe_sees_a_module_that_prints(tmp_path):
    (tmp_path / "noisy.py").write_text("print('training...')\n")
    done = subprocess.run([sys.executable, "-c", _PROBE, str(tmp_path), "noisy"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert json.loads(done.stdout.splitlines()[-1]) == {"noisy": "training...\n"}


def test_every_script_module_does_nothing_on_import(tmp_path):
    modules = _modules()
    assert {"experiments.synthetic", "benchmarks.inner_loop", "scripts.gpu_check"} <= set(modules)
    before = _tree_state()
    home = tmp_path / "home"
    home.mkdir()
    env = {"PATH": "/usr/bin:/bin", "HOME": str(home), "XDG_CACHE_HOME": str(home / "cache"),
           "MPLBACKEND": "Agg", "MPLCONFIGDIR": str(tmp_path / "matplotlib"),
           "PYTHONDONTWRITEBYTECODE": "1"}
    work = tmp_path / "work"
    work.mkdir()
    done = subprocess.run([sys.executable, "-c", _PROBE, str(REPO), *modules],
                          capture_output=True, text=True, cwd=work, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    printed = json.loads(done.stdout.splitlines()[-1])
    assert printed == {}, printed
    assert not any(work.iterdir()), list(work.iterdir())  # nothing written where it ran
    cache = home / "cache"
    assert not cache.exists() or not any(cache.rglob("*")), list(cache.rglob("*"))
    assert _tree_state() == before  # nothing in the repository changed
