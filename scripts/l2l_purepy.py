"""learn2learn 0.2.0's three Cython modules as plain Python, for machines without a C compiler.

learn2learn imports `learn2learn.data.{meta_dataset,task_dataset,transforms}` at import time,
and those are Cython (.pyx). The compiled route (regenerated .c files, built on the target) needs
a C compiler and Python's headers there. This module writes the fallback: the same package with
each .pyx rewritten as a .py that runs the same Python statements in the same order (so it draws
the same random numbers), only without C types:

- `cimport` lines, `import cython` and `@cython.*` decorators go;
- `cdef class` becomes `class`, `cpdef` becomes `def`, `cdef T f(...)` becomes `def f(...)`;
- `cdef public:` attribute blocks and bare `cdef T x` declarations go, `cdef T x = e` becomes
  `x = e`, and C types in signatures (`int n=2`) go;
- `<list>x` casts become `list(x)`;
- the former `cdef class` blocks move in front of the module's other definitions, because
  Cython resolves them before the module runs and the Python subclasses come first in the file.

The rewrite is checked where the wheelhouse is built (scripts/build_wheelhouse.py imports the
result and draws tasks with it), so a learn2learn whose .pyx changed fails there, not on the GPU.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import List

__all__ = ["PUREPY_SETUP", "convert_pyx", "write_purepy_tree"]

_C_TYPES = r"(?:int|long|list|dict|set|bool|object|str|float|double|DataDescription)"
_SIGNATURE_TYPE = re.compile(rf"(?<=[(,])(\s*){_C_TYPES}\s+(?=\w+\s*(?:=|,|\)))")
_TYPED_FUNCTION = re.compile(r"^(\s*)cdef\s+\w+\s+(\w+\s*\(.*\):.*)$")
_TYPED_ASSIGNMENT = re.compile(rf"^(\s*)cdef\s+{_C_TYPES}(?:\[:\])?\s+(\w+\s*=.*)$")
_DECLARATION = re.compile(rf"^\s*cdef\s+{_C_TYPES}(?:\[:\])?\s+\w+\s*$")
_CAST = re.compile(r"<(list|dict|set|tuple)>(\w+)")

PUREPY_SETUP = '''"""learn2learn 0.2.0 in pure Python: its Cython modules rewritten by gbml_ext's
scripts/l2l_purepy.py."""
import re

from setuptools import find_packages, setup

version = re.search(r"__version__ = ['\\"]([^'\\"]*)['\\"]",
                    open("learn2learn/_version.py").read()).group(1)
setup(name="learn2learn", version=version, packages=find_packages(include=["learn2learn*"]),
      description="learn2learn 0.2.0 with its Cython data modules as plain Python")
'''


def _chunks(lines: List[str]) -> List[List[str]]:
    """Top-level statements: a column-0 line (with its decorators) and its indented body."""
    chunks: List[List[str]] = []
    pending_decorators: List[str] = []
    for line in lines:
        top = line[:1] not in ("", " ", "\t", "\n") and not line.startswith(("#", ")", "]"))
        if top and line.startswith("@"):
            pending_decorators.append(line)
        elif top:
            chunks.append(pending_decorators + [line])
            pending_decorators = []
        elif chunks:
            chunks[-1].append(line)
        else:
            chunks.append([line])
    if pending_decorators:
        chunks.append(pending_decorators)
    return chunks


def _first_line(chunk: List[str]) -> str:
    return next((line for line in chunk if not line.startswith("@")), "")


def _reorder(lines: List[str]) -> List[str]:
    """Moves former `cdef class` blocks in front of the first class or function."""
    chunks = _chunks(lines)
    cdef_classes = [c for c in chunks if _first_line(c).startswith("cdef class ")]
    others = [c for c in chunks if not _first_line(c).startswith("cdef class ")]
    first_definition = next((i for i, c in enumerate(others)
                             if re.match(r"(class|def|cdef|cpdef)\s", _first_line(c))),
                            len(others))
    ordered = others[:first_definition] + cdef_classes + others[first_definition:]
    return [line for chunk in ordered for line in chunk]


def _convert_line(line: str) -> str | None:
    """One rewritten line, or None to drop it."""
    stripped = line.strip()
    if re.match(r"(from\s+\S+\s+)?cimport\s", stripped) or stripped == "import cython":
        return None
    if stripped.startswith("@cython."):
        return None
    if _DECLARATION.match(line):
        return None
    line = re.sub(r"^(\s*)cdef class ", r"\1class ", line)
    line = re.sub(r"^(\s*)cpdef ", r"\1def ", line)
    match = _TYPED_FUNCTION.match(line)
    if match:
        line = f"{match.group(1)}def {match.group(2)}"
    match = _TYPED_ASSIGNMENT.match(line)
    if match:
        line = f"{match.group(1)}{match.group(2)}"
    if re.match(r"\s*def\s", line):
        line = _SIGNATURE_TYPE.sub(r"\1", line)
    return _CAST.sub(r"\1(\2)", line)


def _drop_public_blocks(lines: List[str]) -> List[str]:
    """Removes `cdef public:` lines and the attribute declarations indented under them."""
    kept: List[str] = []
    block_indent: int | None = None
    for line in lines:
        indent = len(line) - len(line.lstrip())
        if block_indent is not None:
            if line.strip() and indent <= block_indent:
                block_indent = None
            else:
                continue
        if line.strip() == "cdef public:":
            block_indent = indent
            continue
        kept.append(line)
    return kept


def convert_pyx(source: str) -> str:
    """The .pyx text rewritten as Python (see the module docstring for the rules)."""
    lines = _drop_public_blocks(source.splitlines(keepends=True))
    lines = _reorder(lines)
    converted = [_convert_line(line) for line in lines]
    text = "".join(line if line.endswith("\n") else line + "\n"
                   for line in converted if line is not None)
    compile(text, "<converted pyx>", "exec")  # a rewrite that is not Python fails here
    return text


def write_purepy_tree(source_tree: Path, target: Path) -> List[str]:
    """Copies learn2learn's package from `source_tree` to `target` with .pyx rewritten as .py.

    Returns the converted module paths. `target` gets the package and a setup.py without
    extensions, so `pip install --no-deps --no-build-isolation TARGET` needs no compiler.
    """
    import shutil

    shutil.copytree(source_tree / "learn2learn", target / "learn2learn",
                    ignore=shutil.ignore_patterns("*.c", "*.so", "*.pxd", "__pycache__"))
    for name in ("README.md", "LICENSE"):
        if (source_tree / name).exists():
            shutil.copy2(source_tree / name, target / name)
    converted = []
    for pyx in sorted((target / "learn2learn").rglob("*.pyx")):
        pyx.with_suffix(".py").write_text(convert_pyx(pyx.read_text()))
        pyx.unlink()
        converted.append(str(pyx.with_suffix(".py").relative_to(target)))
    (target / "setup.py").write_text(PUREPY_SETUP)
    return converted
