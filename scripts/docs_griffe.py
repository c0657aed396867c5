"""A griffe extension for the API reference (mkdocs.yml loads it for mkdocstrings).

gbml_ext's docstrings are written to read well in `help()`; two of their habits render badly
as markdown, and this extension adapts them before griffe parses each docstring:

- Doctests are headed `Example:`; griffe's Google parser knows only `Examples:`, and would
  render the doctest as markdown text (where `x[0][0]` reads as a link). The heading is renamed,
  so every example is shown as Python code.
- A list written right under the line that introduces it (no blank line between, as in
  `DeepLinear`'s `init` argument) would run into that line as one paragraph with literal
  "- " in it; a blank line is put before such a list.

The docstrings themselves, and the doctests pytest runs, are unchanged. `run_on_list_items`
also checks the markdown pages (tests/test_docs_site.py).
"""
from __future__ import annotations

import re
from typing import Any, List, Tuple

import griffe

__all__ = ["ExampleSections", "run_on_list_items", "separate_lists"]

HEADING = re.compile(r"^(\s*)Example:\s*$", flags=re.M)
ITEM = re.compile(r"^\s*(?:[-*+]|\d+\.)\s+\S")
# Lines that open something other than a paragraph: a table row, heading, HTML, image, quote.
_NOT_TEXT = ("|", "#", "<", "![", ">")
# A docstring section's heading (Google style): what follows it is the section, not a paragraph.
SECTION = re.compile(r"^\s*(Args|Arguments|Parameters|Params|Other Parameters|Keyword Args|"
                     r"Keyword Arguments|Returns?|Yields|Receives|Raises|Exceptions|Warns|"
                     r"Warnings?|Examples?|Notes?|Attributes|Methods|Functions|Classes|"
                     r"Modules|Deprecated|Todo|See Also):\s*$")


def run_on_list_items(text: str) -> List[Tuple[int, str]]:
    """The list items that follow a paragraph's line with no blank line between, which
    markdown renders as part of that paragraph: (line number, line) of the first item of each
    such list. Fenced code and doctests are skipped.

    Arguments:
        text: markdown, or a docstring.

    Returns:
        one entry per run-on list, in order; empty when every list stands on its own.

    Example:
        >>> run_on_list_items("Two kinds:\\n- one\\n- two\\n\\nAnd:\\n\\n- three\\n")
        [(2, '- one')]
    """
    found: List[Tuple[int, str]] = []
    fence = doctest = False
    paragraph = False  # inside a paragraph of text that a list item would run into
    in_list = False  # inside a list item (its first line or its continuation lines)
    blank = True
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if stripped.startswith(("```", "~~~")):
            fence, paragraph, in_list, blank = not fence, False, False, False
            continue
        if not stripped:
            doctest, blank = False, True
            continue
        if fence or doctest or stripped.startswith(">>>"):
            doctest = doctest or stripped.startswith(">>>")
            blank = False
            continue
        if ITEM.match(line):
            if paragraph and not blank:
                found.append((number, stripped))
            paragraph, in_list = False, True
        elif blank or not in_list:
            paragraph = not stripped.startswith(_NOT_TEXT) and not SECTION.match(line)
            in_list = False
        blank = False
    return found


def separate_lists(text: str) -> str:
    """`text` with a blank line before each list that `run_on_list_items` finds.

    Example:
        >>> print(separate_lists("Two kinds:\\n    - one\\n    - two"))
        Two kinds:
        <BLANKLINE>
            - one
            - two
    """
    found = run_on_list_items(text)
    if not found:
        return text
    lines = text.splitlines()
    for number, _ in reversed(found):
        lines.insert(number - 1, "")
    return "\n".join(lines)


class ExampleSections(griffe.Extension):
    """Reads an `Example:` docstring section as griffe's `Examples:` section, and puts a
    blank line before a list that follows its introducing line directly."""

    def on_object(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            value = HEADING.sub(r"\1Examples:", obj.docstring.value)
            obj.docstring.value = separate_lists(value)
