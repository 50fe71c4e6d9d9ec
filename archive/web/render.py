"""Jinja2 environment, filters, syntax highlighting and diffs for the review pages.

Autoescaping is on for every template. The only markup that enters a page without being
escaped by Jinja is Pygments' output, and Pygments escapes the source text it formats;
it is wrapped in ``Markup`` here, in Python, so templates never need ``|safe``.
"""

from __future__ import annotations

import difflib
import json
import math
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup

HIGHLIGHT_CSS_CLASS = "hl"
MAX_HIGHLIGHT_CHARS = 400_000  # beyond this, plain escaped text: Pygments gets slow


@lru_cache(maxsize=1)
def environment() -> Environment:
    env = Environment(
        loader=PackageLoader("daedalus.archive.web", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(num=num, when=when, ago=ago, pretty=pretty, short=short, money=money)
    return env


def render(template: str, **context: Any) -> str:
    return environment().get_template(template).render(**context)


def num(value: Any, digits: int = 4) -> str:
    """Numbers to ``digits`` significant figures; anything else as text."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if math.isfinite(value) else str(value)
    return str(value)


def money(value: float | None) -> str:
    return "-" if value is None else f"${value:.4f}"


def when(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if value else "-"


def ago(value: datetime | None) -> str:
    if value is None:
        return "-"
    seconds = (datetime.now(UTC) - value).total_seconds()
    for size, unit in ((86400, "d"), (3600, "h"), (60, "min")):
        if seconds >= size:
            return f"{int(seconds // size)} {unit} ago"
    return f"{max(0, int(seconds))} s ago"


def short(value: str | None, n: int = 10) -> str:
    return (value or "-")[:n]


def pretty(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, default=str)


@lru_cache(maxsize=1)
def _formatter() -> Any:
    from pygments.formatters import HtmlFormatter

    return HtmlFormatter(cssclass=HIGHLIGHT_CSS_CLASS, linenos="table", wrapcode=True)


@lru_cache(maxsize=1)
def highlight_css() -> str:
    from pygments.formatters import HtmlFormatter

    plain = HtmlFormatter(cssclass=HIGHLIGHT_CSS_CLASS).get_style_defs(f".{HIGHLIGHT_CSS_CLASS}")
    return str(plain)


def highlight(code: str, language: str = "python") -> Markup:
    """Code as highlighted HTML (Pygments escapes it); huge inputs as escaped text."""
    if len(code) > MAX_HIGHLIGHT_CHARS:
        return Markup('<pre class="plain">{}</pre>').format(code)
    from pygments import highlight as pyg_highlight
    from pygments.lexers import DiffLexer, PythonLexer

    lexer = DiffLexer() if language == "diff" else PythonLexer()
    return Markup(pyg_highlight(code, lexer, _formatter()))


def unified_diff(old: str, new: str, *, old_name: str, new_name: str) -> tuple[str, int, int]:
    """A unified diff of two programs and its (+added, -removed) line counts."""
    lines = list(
        difflib.unified_diff(
            old.splitlines(keepends=True),
            new.splitlines(keepends=True),
            fromfile=old_name,
            tofile=new_name,
            n=3,
        )
    )
    added = sum(1 for x in lines if x.startswith("+") and not x.startswith("+++"))
    removed = sum(1 for x in lines if x.startswith("-") and not x.startswith("---"))
    text = "".join(x if x.endswith("\n") else x + "\n" for x in lines)
    return text, added, removed
