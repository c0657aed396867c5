"""A griffe extension for the API reference (mkdocs.yml loads it for mkdocstrings).

gbml_ext's docstrings head their doctests `Example:`; griffe's Google parser knows only
`Examples:`, and would render the doctest as markdown text (where `x[0][0]` reads as a link).
This extension renames the heading before parsing, so every example is shown as Python code.
The docstrings themselves, and the doctests pytest runs, are unchanged.
"""
from __future__ import annotations

import re
from typing import Any

import griffe

HEADING = re.compile(r"^(\s*)Example:\s*$", flags=re.M)


class ExampleSections(griffe.Extension):
    """Reads an `Example:` docstring section as griffe's `Examples:` section."""

    def on_object(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = HEADING.sub(r"\1Examples:", obj.docstring.value)
