"""The config reference, generated from `gbml_ext.runner.schema` whenever the site is built.

mkdocs loads this file as a hook (mkdocs.yml, `hooks:`): in docs/config.md the line
`<!-- config-reference -->` is replaced by one table per config section, with every key, its
type, default, allowed values or range, what it means and whether it may change on resume,
and, after the `[algorithm]` table, which of its keys each registered algorithm reads (from
`gbml_ext.algorithms.ALGORITHMS`). In docs/guides/algorithms.md the line
`<!-- registered-algorithms -->` is replaced by that table of the registered algorithms.
Nothing is written by hand, so the pages cannot fall behind the schema or the registry.

Example:
    .venv/bin/python scripts/docs_config_reference.py    # prints the generated markdown
"""
from __future__ import annotations

import dataclasses
import re
import sys
from pathlib import Path
from typing import Any, Dict, List

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gbml_ext.algorithms import ALGORITHMS  # noqa: E402
from gbml_ext.algorithms.spec import GENERAL_KEYS  # noqa: E402
from gbml_ext.data.registry import DATASETS  # noqa: E402
from gbml_ext.data.synthetic import SYNTHETIC_SOURCES  # noqa: E402
from gbml_ext.optim import TRANSFORMS  # noqa: E402
from gbml_ext.runner import compat, schema  # noqa: E402

MARKER = "<!-- config-reference -->"
ALGORITHMS_MARKER = "<!-- registered-algorithms -->"
# The tables' class, for their compact layout (docs/stylesheets/extra.css).
CSS_CLASS = "config-reference"
SECTIONS = (("", schema.Config), ("data", schema.DataConfig), ("model", schema.ModelConfig),
            ("algorithm", schema.AlgorithmConfig), ("train", schema.TrainConfig),
            ("evaluation", schema.EvalConfig), ("logging", schema.LoggingConfig))


def key_notes(cls: type) -> Dict[str, str]:
    """The per-key notes in a section's docstring: lines `key: text` (or `a, b: text`,
    `a / b: text`) and their indented continuation lines."""
    notes: Dict[str, str] = {}
    current: List[str] = []
    for line in (cls.__doc__ or "").splitlines():
        match = re.match(r"^    ([a-z_]+(?:\s*(?:,|/)\s*[a-z_]+)*): (.*)$", line)
        if match:
            # "iterations: ...; meta_batch: ..." holds two keys' notes on one line.
            first, *more = re.split(r";\s+(?=[a-z_]+: )", match.group(2).strip())
            current = [k.strip() for k in re.split(r"[,/]", match.group(1))]
            for key in current:
                notes[key] = first
            for extra in more:
                key, text = extra.split(": ", 1)
                notes[key] = text
                current = [key]
        elif current and line.startswith("        "):
            for key in current:
                notes[key] += " " + line.strip()
        else:
            current = []
    return notes


def resume_rule(key: str) -> str:
    """What a resumed run may do with `key`."""
    if key == "train.iterations":
        return "may grow"
    if key in compat.ALLOWED_CHANGES:
        return "with `--allow-change`"
    if key in compat.FREE_KEYS:
        return "yes"
    inner = [k for k in compat.FREE_KEYS if k.startswith(key + ".")]
    return "no, except " + ", ".join(f"`{k}`" for k in inner) if inner else "no"


def _type_name(field: dataclasses.Field) -> str:
    return str(field.type).replace("Dict[str, Any]", "table").replace("List[str]", "list of str")


def _default(field: dataclasses.Field) -> str:
    if field.default_factory is not dataclasses.MISSING:
        value: Any = field.default_factory()
    else:
        value = field.default
    return f"`{value!r}`".replace("|", "\\|")


def _source_names() -> str:
    """data.source's values: the synthetic families and the datasets (with their aliases)."""
    names = [f"`{name}`" for name in (*SYNTHETIC_SOURCES.names(), *DATASETS.names())]
    aliases = [f"`{alias}`" for alias in DATASETS.aliases()]
    return " \\| ".join(names) + (f" (also {', '.join(aliases)})" if aliases else "")


def _allowed(field: dataclasses.Field, key: str) -> str:
    if key == "data.source":
        return _source_names()
    if "choices" in field.metadata:
        return " \\| ".join(f"`{c}`" for c in field.metadata["choices"])
    if "items" in field.metadata:
        return "a list of " + " \\| ".join(f"`{c}`" for c in field.metadata["items"])
    if "range" in field.metadata:
        low, high, low_open = field.metadata["range"]
        if high is None:
            return f"{'>' if low_open else '>='} {low!r}"
        return f"{'(' if low_open else '['}{low!r}, {high!r}]"
    return "true \\| false" if field.type == "bool" else "any"


def _key_cell(key: str) -> str:
    """A key as code that may break after a dot but never inside a word."""
    return "<code>" + ".<wbr>".join(key.split(".")) + "</code>"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _keys(keys: List[str]) -> str:
    return ", ".join(f"`{key}`" for key in keys) or "–"


def algorithm_keys() -> List[str]:
    """Markdown: which `[algorithm]` keys each registered algorithm reads, from its
    `AlgorithmSpec` (`keys_read`): `algorithm_table()`, then a paragraph on the rule."""
    named = " \\| ".join(f"`{name}`" for name in TRANSFORMS.names() if name != "none")
    rule = ("A config file (or a file it extends) or a `key=value` override that sets an "
            "`[algorithm]` key its algorithm does not read, even to its default, is refused "
            "with one line that names the algorithm and the keys it reads. The transform's keys "
            f"are read only with a transform, `algorithm.transform` = {named}. A stored run whose "
            "config.json holds a key its algorithm does not read, at another value than its "
            "default (written before such keys were refused), loads and resumes with that key "
            "at its default, which is what the run computed with.")
    return ["### The keys each algorithm reads", "", *algorithm_table(), "", rule, ""]


def algorithm_table() -> List[str]:
    """Markdown: the general `[algorithm]` keys, then one row per registered algorithm
    (`gbml_ext.algorithms.ALGORITHMS`), in registration order: its config name, its one-line
    doc, the keys it reads beyond the general ones, and those it reads with a transform."""
    transforms = [name for name in TRANSFORMS.names() if name != "none"]
    general = ", ".join(f"`{key}`" for key in GENERAL_KEYS)
    lines = [f"Every algorithm reads the general keys {general}; beyond those, each reads:", "",
             "| `algorithm.name` | what it is | reads | with a transform, also reads |",
             "|---|---|---|---|"]
    for name, spec in ALGORITHMS.items():
        own = [key for key in spec.keys_read("none") if key not in GENERAL_KEYS]
        if spec.takes_transform and transforms:
            extra = [key for key in spec.keys_read(transforms[0])
                     if key not in GENERAL_KEYS and key not in own]
            with_transform = _keys(extra)
        else:
            with_transform = "takes no transform"
        lines.append(f"| `{name}` | {_cell(ALGORITHMS.doc(name))} | {_keys(own)} | "
                     f"{with_transform} |")
    return lines


def render() -> str:
    """Markdown tables for every section and key of `schema.Config`."""
    parts: List[str] = []
    for section, cls in SECTIONS:
        notes = key_notes(cls)
        title = f"`[{section}]`" if section else "Top level"
        summary = (cls.__doc__ or "").strip().splitlines()[0]
        parts += [f"## {title}", "", _cell(summary), "", f'<div class="{CSS_CLASS}" markdown>',
                  "", "| key | type | default | allowed | may change on resume | meaning |",
                  "|---|---|---|---|---|---|"]
        for field in dataclasses.fields(cls):
            if dataclasses.is_dataclass(field.type) or field.type.endswith("Config"):
                continue
            key = f"{section}.{field.name}" if section else field.name
            parts.append(f"| {_key_cell(key)} | {_type_name(field)} | {_default(field)} | "
                         f"{_allowed(field, key)} | {resume_rule(key)} | "
                         f"{_cell(notes.get(field.name, ''))} |")
        parts += ["", "</div>", ""]
        if cls is schema.AlgorithmConfig:
            parts += algorithm_keys()
    return "\n".join(parts)


def on_page_markdown(markdown: str, page: Any, **kwargs: Any) -> str:
    """mkdocs hook: fills the config reference, and the table of registered algorithms, into
    the pages that hold their markers."""
    if MARKER in markdown:
        markdown = markdown.replace(MARKER, render())
    if ALGORITHMS_MARKER in markdown:
        markdown = markdown.replace(ALGORITHMS_MARKER, "\n".join(algorithm_table()))
    return markdown


if __name__ == "__main__":
    print(render())
