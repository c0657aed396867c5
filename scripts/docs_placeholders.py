"""Keeps `<name>`-style placeholders visible on the documentation site.

Docstrings and pages write placeholders such as runs/<name>/seed<seed> in plain text, as
`help()` shows them. Markdown passes `<name>` through as an HTML tag, which the browser then
hides, so the page would read "runs//seed". mkdocs loads this file as a hook (mkdocs.yml,
`hooks:`): in each page's HTML it escapes every tag that is neither a void element nor closed
anywhere on the page, which is what a placeholder is (real markup always closes, or is void).
Code is untouched: markdown already escapes `<` there.

Example:
    >>> escape_placeholders('<p>runs/<name>/seed<seed>, <em>kept</em><br></p>')
    '<p>runs/&lt;name&gt;/seed&lt;seed&gt;, <em>kept</em><br></p>'
"""
from __future__ import annotations

import html
import re
from typing import Any

__all__ = ["escape_placeholders", "on_page_content"]

# Elements that never take a closing tag.
VOID = frozenset("area base br col embed hr img input link meta param source track wbr".split())
TAG = re.compile(r"<(/?)([A-Za-z][A-Za-z0-9_-]*)((?:\s[^<>]*)?)>")


def escape_placeholders(text: str) -> str:
    """`text` (HTML) with each placeholder tag escaped, so that it shows as written.

    Arguments:
        text: a page's HTML.

    Returns:
        the same HTML, placeholders as `&lt;name&gt;`.
    """
    closed = {m.group(2).lower() for m in TAG.finditer(text) if m.group(1)}

    def fix(match: re.Match) -> str:
        name = match.group(2).lower()
        if match.group(1) or match.group(0).endswith("/>") or name in VOID or name in closed:
            return match.group(0)
        return html.escape(match.group(0), quote=False)

    return TAG.sub(fix, text)


def on_page_content(html_text: str, page: Any, **kwargs: Any) -> str:
    """mkdocs hook: escapes the placeholders of every page's HTML."""
    return escape_placeholders(html_text)
