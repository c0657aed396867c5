"""`make dist`, then `pip install --find-links dist gbml_ext` into a user's own environment.

The user's environment is a fresh `python -m venv` (no system site-packages) that already has
torch and torchvision, as after `pip install torch torchvision`. Installing them for real would
copy several GB on every run, so every file of those distributions and of everything they
require (each one's RECORD) is hard-linked from .venv into the new venv's site-packages: the
files, dist-info and versions that pip would have put there. The links also show that the
torch is kept: had pip reinstalled or upgraded it, the venv's torch/__init__.py would be a new
file, not the same inode.

Offline: gbml_ext and learn2learn come from the wheels (dist/ when it is newer than the
sources, else scripts/dist.sh with this Python into build/install-test/dist), every other
requirement from a wheelhouse of .venv's exact versions (build/install-test/wheelhouse),
filled once by `pip wheel` from pip's configured sources, those the bootstrap installed from.
The install itself runs with --no-index and no pip configuration.
"""
from __future__ import annotations

import email
import importlib.metadata as md
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Dict, Iterable, List

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

import gbml_ext

# Minutes of building and installing: not in `make test-fast`.
pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
WORK = REPO / "build" / "install-test"
VERSION = gbml_ext.__version__
TAG = f"cp{sys.version_info[0]}{sys.version_info[1]}"
SOURCES = ("setup.py", "pyproject.toml", "MANIFEST.in", "requirements/torch.txt")
SHIPPED = REPO / "experiments" / "configs"


def _pip_env(hermetic: bool) -> Dict[str, str]:
    """The environment for pip: with `hermetic`, no PIP_* variable and no configuration file,
    so only the command's own options count."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if hermetic:
        env = {k: v for k, v in env.items() if not k.startswith("PIP_")}
        env["PIP_CONFIG_FILE"] = os.devnull
    return env


def _run(args: List[str], hermetic: bool = True, cwd: Path = REPO,
         timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in args], cwd=cwd, env=_pip_env(hermetic),
                          capture_output=True, text=True, timeout=timeout)


def _fresh(dist: Path) -> bool:
    """Whether dist/ holds this version's wheels, built after every source changed."""
    wheel = dist / f"gbml_ext-{VERSION}-py3-none-any.whl"
    l2l = list(dist.glob(f"learn2learn-0.2.0-{TAG}-*.whl"))
    if not (wheel.exists() and (dist / f"gbml_ext-{VERSION}.tar.gz").exists() and l2l):
        return False
    sources = [REPO / s for s in SOURCES] + list((REPO / "gbml_ext").rglob("*.py")) + list(
        SHIPPED.rglob("*.toml"))
    newest = max(p.stat().st_mtime for p in sources if p.exists())
    script = (REPO / "scripts" / "build_learn2learn.sh").stat().st_mtime
    return wheel.stat().st_mtime >= newest and l2l[0].stat().st_mtime >= script


def _requires(wheel: Path) -> List[Requirement]:
    """The unconditional requirements in a wheel's METADATA."""
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        metadata = email.message_from_bytes(archive.read(name))
    reqs = [Requirement(r) for r in metadata.get_all("Requires-Dist") or []]
    return [r for r in reqs if r.marker is None or r.marker.evaluate({"extra": ""})]


def _closure(reqs: Iterable[Requirement]) -> Dict[str, md.Distribution]:
    """The distributions installed in this environment that `reqs` need, transitively, with
    the requirements their extras bring."""
    found: Dict[str, md.Distribution] = {}
    asked: set = set()
    todo = [(canonicalize_name(r.name), extra) for r in reqs for extra in ("", *r.extras)]
    while todo:
        name, extra = todo.pop()
        if (name, extra) in asked:
            continue
        asked.add((name, extra))
        dist = found.setdefault(name, md.distribution(name))
        for text in dist.requires or []:
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate({"extra": extra}):
                todo += [(canonicalize_name(req.name), e) for e in ("", *req.extras)]
    return found


def _fill_wheelhouse(house: Path, dists: Dict[str, md.Distribution]) -> None:
    """Wheels of `dists` at their installed versions in `house`, fetched once."""
    house.mkdir(parents=True, exist_ok=True)
    have = {(canonicalize_name(w.name.split("-")[0]), w.name.split("-")[1])
            for w in house.glob("*.whl")}
    missing = [f"{name}=={d.version}" for name, d in sorted(dists.items())
               if (name, d.version) not in have]
    if missing:
        done = _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", house,
                     *missing], hermetic=False)
        assert done.returncode == 0, f"could not fill the wheelhouse:\n{done.stderr[-2000:]}"


def _link_installed(dists: Iterable[md.Distribution], site: Path) -> None:
    """Puts each distribution's installed files (its RECORD) into `site`, hard-linked (or
    symlinked across file systems): the same files pip would have written there."""
    for dist in dists:
        for entry in dist.files or []:
            if entry.parts[0] == "..":  # console scripts outside site-packages
                continue
            source = Path(str(dist.locate_file(entry)))
            if not source.is_file() or os.path.lexists(site / entry):  # listed twice
                continue
            target = site / entry
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(source, target)
            except OSError:
                os.symlink(source, target)


def _site_packages(venv: Path) -> Path:
    return next((venv / "lib").glob("python3*/site-packages"))


@pytest.fixture(scope="module")
def dist_dir() -> Path:
    """The wheels: dist/ when fresh, else built by scripts/dist.sh."""
    if _fresh(REPO / "dist"):
        return REPO / "dist"
    out = WORK / "dist"
    built = _run(["env", f"PYTHON={sys.executable}", "bash", "scripts/dist.sh", out],
                 hermetic=False, timeout=900)
    assert built.returncode == 0, f"scripts/dist.sh failed:\n{built.stderr[-3000:]}"
    return out


@pytest.fixture(scope="module")
def user_venv(dist_dir: Path):
    """A fresh venv holding torch and torchvision, and gbml_ext installed into it from the
    wheels; yields (venv, pip's output)."""
    torch_dists = _closure([Requirement("torch"), Requirement("torchvision")])
    wheels = [dist_dir / f"gbml_ext-{VERSION}-py3-none-any.whl",
              *dist_dir.glob(f"learn2learn-0.2.0-{TAG}-*.whl")]
    needed = _closure(r for w in wheels for r in _requires(w)
                      if canonicalize_name(r.name) not in ("learn2learn", "gbml-ext"))
    others = {n: d for n, d in needed.items() if n not in torch_dists}
    house = WORK / "wheelhouse"
    _fill_wheelhouse(house, others)

    WORK.mkdir(parents=True, exist_ok=True)
    venv = Path(tempfile.mkdtemp(prefix="venv-", dir=WORK))
    try:
        base = getattr(sys, "_base_executable", sys.executable)
        made = _run([base, "-m", "venv", venv])
        assert made.returncode == 0, made.stderr
        # torch needs a newer setuptools than the venv starts with: pip would upgrade it.
        site = _site_packages(venv)
        older = [n for n in torch_dists if list(site.glob(f"{n.replace('-', '_')}-*.dist-info"))]
        if older:
            _run([venv / "bin" / "python", "-m", "pip", "uninstall", "-q", "-y", *older])
        _link_installed(torch_dists.values(), site)
        installed = _run([venv / "bin" / "python", "-m", "pip", "install", "--no-index",
                          "--find-links", dist_dir, "--find-links", house, "gbml_ext"])
        assert installed.returncode == 0, f"pip install failed:\n{installed.stdout[-3000:]}" \
            f"{installed.stderr[-3000:]}"
        yield venv, installed.stdout
    finally:
        shutil.rmtree(venv, ignore_errors=True)  # links only: .venv's files stay


def _in_venv(venv: Path, args: List[str], tmp_path: Path) -> subprocess.CompletedProcess:
    """Runs a command from the venv outside the repository (so `import gbml_ext` cannot find
    the checkout), with the venv's bin first on PATH."""
    env = _pip_env(hermetic=True)
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600)


def test_install_keeps_the_environments_torch(user_venv, tmp_path):
    venv, pip_output = user_venv
    site = _site_packages(venv)
    installed = re.search(r"Successfully installed (.*)", pip_output)
    assert installed, pip_output
    names = [canonicalize_name(p.rsplit("-", 1)[0]) for p in installed.group(1).split()]
    assert "gbml-ext" in names and "learn2learn" in names
    assert "torch" not in names and "torchvision" not in names, installed.group(1)
    probe = ("import torch, torchvision, gbml_ext, learn2learn; print(torch.__version__, "
             "torchvision.__version__, gbml_ext.__version__, gbml_ext.__file__)")
    out = _in_venv(venv, ["python", "-c", probe], tmp_path)
    assert out.returncode == 0, out.stderr
    torch_v, vision_v, ours, where = out.stdout.split()
    import torch
    import torchvision
    assert (torch_v, vision_v) == (torch.__version__, torchvision.__version__)
    assert ours == VERSION and Path(where).is_relative_to(site)
    # The same file as .venv's: pip neither re-downloaded nor reinstalled torch.
    kept, original = site / "torch" / "__init__.py", Path(torch.__file__)
    assert kept.samefile(original)


def test_readme_example_and_commands_run_in_the_venv(user_venv, tmp_path):
    venv, _ = user_venv
    block = re.findall(r"```python\n(.*?)```", (REPO / "README.md").read_text(), flags=re.S)[0]
    (tmp_path / "example.py").write_text(block)
    ran = _in_venv(venv, ["python", "example.py"], tmp_path)
    assert ran.returncode == 0, ran.stderr[-3000:]
    for command in ("gbml-train", "gbml-compare", "gbml-eval", "gbml-tune"):
        found = shutil.which(command, path=str(venv / "bin"))
        assert found, f"{command} is not on the venv's PATH"
    helped = _in_venv(venv, ["gbml-train", "--help"], tmp_path)
    assert helped.returncode == 0 and "usage: gbml-train" in helped.stdout, helped.stderr


def test_the_installed_package_ships_the_configs(user_venv, tmp_path):
    """gbml-train in the user's venv, away from any clone, lists the configs the wheel
    carries, runs one by its name, and says where they are when a config is missing."""
    venv, _ = user_venv
    shipped = _site_packages(venv) / "gbml_ext" / "configs"
    listed = _in_venv(venv, ["gbml-train", "--list-configs"], tmp_path)
    assert listed.returncode == 0, listed.stderr
    header, *names = listed.stdout.splitlines()
    assert header.endswith(f"in {shipped}"), header
    expected = sorted(p.relative_to(SHIPPED).as_posix() for p in SHIPPED.rglob("*.toml")
                      if p.name != "base.toml" and not p.stem.endswith("_base"))
    assert names == expected
    # every file, the base.toml files the others extend included
    assert sorted(p.relative_to(shipped) for p in shipped.rglob("*.toml")) == sorted(
        p.relative_to(SHIPPED) for p in SHIPPED.rglob("*.toml"))
    printed = _in_venv(venv, ["gbml-train", "omniglot/5w1s/maml.toml", "--print-config"],
                       tmp_path)
    assert printed.returncode == 0 and "name = 'omniglot-5w1s-maml'" in printed.stdout, \
        printed.stderr
    missing = _in_venv(venv, ["gbml-train", "nope.toml"], tmp_path)
    assert missing.returncode == 2 and missing.stderr.strip() == (
        f"gbml-train: error: config file nope.toml does not exist; the configs shipped with "
        f"gbml_ext are in {shipped} (gbml-train --list-configs lists them; give one by its "
        f"name there, e.g. synthetic/linreg_shallow.toml)."), missing.stderr


def _older_python() -> str:
    """A Python older than 3.11 with pip (python3.10 on PATH or under pyenv), or ''."""
    candidates = [shutil.which("python3.10") or ""]
    candidates += sorted(str(p) for p in Path.home().glob(".pyenv/versions/3.10*/bin/python3.10"))
    for candidate in filter(None, candidates):
        if _run([candidate, "-m", "pip", "--version"], timeout=60).returncode == 0:
            return candidate
    return ""


def test_pip_refuses_an_unsupported_python(dist_dir, tmp_path):
    wheel = dist_dir / f"gbml_ext-{VERSION}-py3-none-any.whl"
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        assert "Requires-Python: >=3.11" in archive.read(name).decode()
    python = _older_python()
    if not python:
        pytest.skip("no Python 3.10 with pip here to try the refusal with")
    refused = _run([python, "-m", "pip", "install", "--dry-run", "--no-deps", "--no-index",
                    "--find-links", dist_dir, "--target", tmp_path / "t", "gbml_ext"])
    assert refused.returncode != 0
    assert "requires a different Python" in refused.stderr, refused.stderr
