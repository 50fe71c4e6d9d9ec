"""`daedalus run`: an autonomous discovery run."""

from __future__ import annotations

import typer


def run_command() -> None:
    """Launch an autonomous discovery run."""
    raise typer.Exit(2)
