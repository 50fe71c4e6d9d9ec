"""`daedalus eval`: evaluate one candidate against one task."""

from __future__ import annotations

import typer


def eval_command() -> None:
    """Evaluate one candidate file against a task."""
    raise typer.Exit(2)
