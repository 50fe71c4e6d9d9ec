"""Prompt templates. Every word Daedalus says to a model lives in a ``*.j2`` file here.

``render(name, **ctx)`` renders ``<name>.j2`` with StrictUndefined (a missing variable is
an error, not an empty string) and no autoescaping (prompts are text, not HTML).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import jinja2

# resolve(): in a strict editable install this file is a link into the source tree, and
# templates added since the last install are only found beside the real file.
TEMPLATE_DIR = Path(__file__).resolve().parent


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATE_DIR),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
    )


def names() -> list[str]:
    """Template names without the ``.j2`` suffix."""
    return sorted(p.stem for p in TEMPLATE_DIR.glob("*.j2"))


def exists(name: str) -> bool:
    return (TEMPLATE_DIR / f"{name}.j2").is_file()


def render(name: str, **ctx: object) -> str:
    """Render ``<name>.j2``. Raises ``jinja2.TemplateNotFound`` or ``UndefinedError``."""
    return environment().get_template(f"{name}.j2").render(**ctx).strip() + "\n"
