"""Open an archive for reading only, enforced by the database, not by good manners.

SQLite is opened with ``mode=ro`` (the library refuses every write) plus
``PRAGMA query_only``; PostgreSQL sessions start with ``default_transaction_read_only``.
Nothing is created or migrated: review of a missing or outdated archive is an error
that says what to run.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from urllib.parse import quote

from sqlalchemy import Engine, create_engine, event, inspect, make_url, text

from daedalus.archive.db import BUSY_TIMEOUT_S, ENV_URL, Archive, default_url, sqlite_path
from daedalus.archive.errors import ArchiveError, SchemaError
from daedalus.archive.migrations import HEAD


def _sqlite_engine(path: Path) -> Engine:
    uri = f"file:{quote(str(path.resolve()))}?mode=ro"

    def connect() -> sqlite3.Connection:
        # check_same_thread=False: the web server hands pooled connections between threads.
        return sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_S, check_same_thread=False)

    engine = create_engine("sqlite://", creator=connect)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: sqlite3.Connection, _record: object) -> None:
        dbapi_conn.execute("PRAGMA query_only = ON")
        dbapi_conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")

    return engine


def _check_schema(engine: Engine, shown: str) -> None:
    with engine.connect() as conn:
        if not inspect(conn).has_table("alembic_version"):
            raise ArchiveError(
                f"{shown} is not a Daedalus archive (it has no schema version). Fix: point "
                f"{ENV_URL} at the archive a run wrote, or run `daedalus run TASK` first."
            )
        current = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    if current != HEAD:
        raise SchemaError(
            f"the archive at {shown} has schema revision {current!r} but this Daedalus reads "
            f"{HEAD!r}. Fix: run `daedalus archive runs` once (it upgrades the archive), or "
            "upgrade daedalus if the archive was written by a newer version."
        )


def open_readonly(url: str | None = None) -> Archive:
    """The archive at ``url`` (default: ``DAEDALUS_DATABASE_URL`` or ``./.daedalus/``),
    opened so that no write can succeed."""
    url = url or default_url(create_dir=False)
    parsed = make_url(url)
    shown = parsed.render_as_string(hide_password=True)
    path = sqlite_path(url)
    if parsed.get_backend_name() == "sqlite":
        if path is None:
            raise ArchiveError(
                "an in-memory SQLite archive cannot be reviewed from another process. Fix: "
                f"set {ENV_URL} to the archive file."
            )
        if not path.exists():
            raise ArchiveError(
                f"no archive at {path}. Fix: run `daedalus run TASK` in this directory "
                f"first, or set {ENV_URL} to the archive you want to review."
            )
        engine = _sqlite_engine(path)
    else:
        options = {"options": "-c default_transaction_read_only=on"}
        engine = create_engine(url, pool_pre_ping=True, connect_args=options)
    try:
        _check_schema(engine, shown)
    except BaseException:
        engine.dispose()
        raise
    return Archive(url, engine)
