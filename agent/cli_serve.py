"""`daedalus serve`: the read-only review web app on loopback (or elsewhere, with a token).

The web stack (FastAPI, uvicorn, Jinja2, the archive) is imported inside the command, so
`daedalus --help` stays fast.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from typing import Annotated

import typer
from rich.console import Console
from rich.text import Text

TOKEN_ENV = "DAEDALUS_SERVE_TOKEN"


@dataclass(frozen=True)
class ServePlan:
    """What `serve` will do, decided before anything binds (so tests can check it)."""

    host: str
    port: int
    token: str | None
    url: str


class ServeError(ValueError):
    """The options are unsafe or invalid; the message says what to change."""


def plan(host: str, port: int, token: str | None) -> ServePlan:
    """Validate the options: a non-loopback bind needs a token; ``auto`` makes one."""
    from daedalus.archive.web.app import check_token
    from daedalus.archive.web.security import is_loopback

    if not 1 <= port <= 65535:
        raise ServeError(f"port {port} is out of range. Fix: use --port between 1 and 65535.")
    if token == "auto":
        token = secrets.token_urlsafe(24)
    if token is None and not is_loopback(host):
        raise ServeError(
            f"refusing to serve the archive on {host!r} without an access token: anyone who "
            "can reach that address could read every candidate, log and prompt. Fix: add "
            f"--token auto (or --token YOUR-TOKEN, or set {TOKEN_ENV}), or bind to 127.0.0.1 "
            "and use an SSH tunnel."
        )
    try:
        check_token(token)
    except ValueError as exc:
        raise ServeError(str(exc)) from exc
    shown = f"[{host}]" if ":" in host else host
    if host in ("0.0.0.0", "::"):
        shown = "127.0.0.1"  # the wildcard is not an address a browser can open
    url = f"http://{shown}:{port}/" + (f"?token={token}" if token else "")
    return ServePlan(host, port, token, url)


def serve_command(
    host: Annotated[
        str, typer.Option(help="Address to bind; anything but loopback needs --token.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    token: Annotated[
        str | None,
        typer.Option(
            help=f"Access token every request must carry ('auto' makes one; or set {TOKEN_ENV})."
        ),
    ] = None,
) -> None:
    """Serve the archive as read-only web pages: runs, charts, candidates, diffs."""
    import uvicorn

    from daedalus.archive.errors import ArchiveError
    from daedalus.archive.web import create_app, open_readonly

    err = Console(stderr=True, highlight=False)
    try:
        the_plan = plan(host, port, token or os.environ.get(TOKEN_ENV) or None)
        archive = open_readonly()
    except (ServeError, ArchiveError) as exc:
        err.print(Text(f"error: {exc}", style="red"))
        raise typer.Exit(2) from exc
    hosts = {host} if the_plan.token is None else set()
    app = create_app(archive, token=the_plan.token, allowed_hosts=hosts)
    err.print(Text(f"Daedalus review of {archive!r} (read-only)", style="bold"))
    err.print(Text(f"open {the_plan.url}", style="green"))
    if the_plan.token:
        err.print(
            Text(
                "The token travels in plain HTTP: on an untrusted network put this behind "
                "TLS (a reverse proxy) or an SSH tunnel.",
                style="yellow",
            )
        )
    try:
        uvicorn.run(app, host=the_plan.host, port=the_plan.port, log_level="warning")
    finally:
        archive.close()
