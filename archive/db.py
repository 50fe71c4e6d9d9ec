"""Opening the archive: the URL, the engine, sessions, and migrations on open.

SQLite is the default (one file under ``./.daedalus/``); any SQLAlchemy URL works through
``DAEDALUS_DATABASE_URL`` (PostgreSQL is the other supported backend).

Concurrency on SQLite, which allows one writer at a time:

- WAL journal, so readers never block the writer and the writer never blocks readers.
- Every write transaction starts with ``BEGIN IMMEDIATE``: it takes the write lock up
  front, so two transactions can never both read and then both try to upgrade to
  writing (the deadlock SQLite reports as "database is locked" without waiting).
- ``busy_timeout`` makes a blocked ``BEGIN IMMEDIATE`` wait for the lock, and the
  ``BEGIN`` itself is retried a bounded number of times before ``ArchiveBusyError``.
  Nothing has run inside the transaction yet at that point, so retrying is always safe.
- Read-only sessions (``session(readonly=True)``) use a deferred ``BEGIN`` and never
  wait for writers.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, create_engine, event, inspect, make_url, text
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool

from daedalus.archive.errors import ArchiveBusyError, SchemaError
from daedalus.archive.migrations import HEAD

if TYPE_CHECKING:
    from alembic.config import Config

ENV_URL = "DAEDALUS_DATABASE_URL"
DEFAULT_DIR = ".daedalus"
DEFAULT_FILE = "archive.db"
BUSY_TIMEOUT_S = 30.0
BEGIN_ATTEMPTS = 5
_READONLY = "daedalus_readonly"
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
# Any constant works; it only has to be the same in every process migrating one database.
_PG_MIGRATION_LOCK = 0x0DAEDA1


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def json_dumps_finite(value: Any) -> str:
    """JSON columns as standard JSON on every database: NaN and infinities (which a metric,
    an objective or a program's score can be) become null. PostgreSQL rejects them outright
    and SQLite would store text that is not JSON; the evaluation's status and error say what
    the value was."""
    return json.dumps(_finite(value))


def default_sqlite_path() -> Path:
    """Where the default SQLite archive lives: ``<cwd>/.daedalus/archive.db``."""
    return Path.cwd() / DEFAULT_DIR / DEFAULT_FILE


def default_url(*, create_dir: bool = True) -> str:
    """``DAEDALUS_DATABASE_URL`` if set, else the SQLite file under ``./.daedalus/``."""
    url = os.environ.get(ENV_URL, "").strip()
    if url:
        return url
    path = default_sqlite_path()
    if create_dir:
        path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


def sqlite_path(url: str) -> Path | None:
    """The file behind a SQLite URL; ``None`` for other databases and in-memory SQLite."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return None
    if not parsed.database or parsed.database == ":memory:":
        return None
    return Path(parsed.database)


def alembic_config(url: str, *, script_location: Path | None = None) -> Config:
    """A programmatic Alembic config for this archive (no alembic.ini needed).

    Pass ``script_location`` pointing at the source tree's ``archive/migrations`` when
    generating a new revision, so the file lands in the repository.
    """
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(script_location or MIGRATIONS_DIR))
    # configparser treats % as interpolation; URL-encoded passwords contain it.
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


class Archive:
    """An open archive: the engine plus session factories.

    ``archive.session()`` yields a Session and the caller owns its transaction. Both
    styles work:

    - ``with archive.session() as s, s.begin(): ...`` commits when the inner block ends;
    - ``with archive.session() as s: ...`` commits whatever the block wrote when it ends
      normally (SQLAlchemy's autobegin), and rolls back if it raises.

    Store functions never commit. Objects stay readable after the block
    (``expire_on_commit=False``); relationships not loaded by then are not.
    """

    def __init__(self, url: str, engine: Engine) -> None:
        self.url = url
        self.engine = engine
        self._maker = sessionmaker(engine, expire_on_commit=False)
        self._read_maker = sessionmaker(
            engine.execution_options(**{_READONLY: True}), expire_on_commit=False
        )

    @contextmanager
    def session(self, *, readonly: bool = False) -> Iterator[Session]:
        """A session; ``readonly=True`` skips the SQLite write lock (do not write in it)."""
        with (self._read_maker if readonly else self._maker)() as session:
            try:
                yield session
            except BaseException:
                session.rollback()
                raise
            # Commit only an open transaction: committing an idle session would autobegin
            # one and take the write lock just to release it. A read-only session is left
            # to close(), which ends its transaction without expiring the loaded objects.
            if not readonly and session.in_transaction():
                session.commit()

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Archive:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Archive({make_url(self.url).render_as_string(hide_password=True)!r})"


def open_archive(
    url: str | None = None, *, migrate: bool = True, busy_timeout_s: float = BUSY_TIMEOUT_S
) -> Archive:
    """Open (and by default create or upgrade) the archive at ``url`` or ``default_url()``."""
    url = url or default_url()
    engine = make_engine(url, busy_timeout_s=busy_timeout_s)
    if migrate:
        try:
            upgrade(engine, url)
        except BaseException:
            engine.dispose()
            raise
    return Archive(url, engine)


def make_engine(url: str, *, busy_timeout_s: float = BUSY_TIMEOUT_S) -> Engine:
    """An engine with the archive's SQLite settings (WAL, locking, retries); no migration."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True, json_serializer=json_dumps_finite)
    path = sqlite_path(url)
    kwargs: dict[str, Any] = {"connect_args": {"timeout": busy_timeout_s}}
    if path is None:
        # One shared connection, or every pooled connection would see its own empty database.
        kwargs = {"connect_args": {"check_same_thread": False}, "poolclass": StaticPool}
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, json_serializer=json_dumps_finite, **kwargs)
    _install_sqlite_hooks(engine, busy_timeout_s=busy_timeout_s, wal=path is not None)
    return engine


def _is_busy(exc: BaseException) -> bool:
    if not isinstance(exc, sqlite3.OperationalError):
        return False
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    return "locked" in str(exc) or "busy" in str(exc)


def _retry_busy(conn: sqlite3.Connection, sql: str, *, what: str, timeout_s: float) -> Any:
    for attempt in range(BEGIN_ATTEMPTS):
        try:
            return conn.execute(sql).fetchall()
        except sqlite3.OperationalError as exc:
            if not _is_busy(exc):
                raise
            if attempt == BEGIN_ATTEMPTS - 1:
                raise ArchiveBusyError(
                    f"the SQLite archive stayed locked by another writer for "
                    f"{BEGIN_ATTEMPTS} x {timeout_s:.0f} s while trying to {what}. "
                    "Fix: stop the stuck process that holds it, or move concurrent runs to "
                    "PostgreSQL with DAEDALUS_DATABASE_URL=postgresql+psycopg://..."
                ) from exc
            time.sleep(0.05 * 2**attempt)
    raise AssertionError("unreachable")


def _install_sqlite_hooks(engine: Engine, *, busy_timeout_s: float, wal: bool) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: sqlite3.Connection, _record: object) -> None:
        # Hand transaction control to the "begin" hook below instead of pysqlite's
        # implicit BEGIN, which is always DEFERRED.
        dbapi_conn.isolation_level = None
        dbapi_conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
        dbapi_conn.execute("PRAGMA foreign_keys = ON")
        if wal:
            _retry_busy(
                dbapi_conn, "PRAGMA journal_mode = WAL", what="enable WAL", timeout_s=busy_timeout_s
            )
            # WAL + NORMAL survives a killed process (the run's SIGKILL tests); only a power
            # loss can drop the last commits, which costs re-evaluating a few candidates.
            dbapi_conn.execute("PRAGMA synchronous = NORMAL")

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        mode = "DEFERRED" if conn.get_execution_options().get(_READONLY) else "IMMEDIATE"
        dbapi_conn = conn.connection.driver_connection
        _retry_busy(
            dbapi_conn, f"BEGIN {mode}", what="start a transaction", timeout_s=busy_timeout_s
        )


def _current_revision(engine: Engine) -> str | None:
    with engine.connect().execution_options(**{_READONLY: True}) as conn:
        if not inspect(conn).has_table("alembic_version"):
            return None
        return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()


def upgrade(engine: Engine, url: str) -> None:
    """Bring the schema to the newest revision; one cheap read when it is already there."""
    current = _current_revision(engine)
    if current == HEAD:
        return
    from alembic import command
    from alembic.script import ScriptDirectory
    from alembic.util.exc import CommandError

    cfg = alembic_config(url)
    script = ScriptDirectory.from_config(cfg)
    if current is not None:
        try:
            script.get_revision(current)
        except CommandError as exc:
            raise SchemaError(
                f"the archive at {make_url(url).render_as_string(hide_password=True)} has "
                f"schema revision {current!r}, which this Daedalus does not know (head is "
                f"{HEAD!r}); it was probably written by a newer version. Fix: upgrade "
                f"daedalus, or point {ENV_URL} at another database."
            ) from exc
    # One transaction for the whole upgrade; on SQLite it is BEGIN IMMEDIATE, so processes
    # opening a fresh archive at the same moment migrate it one after another, and Alembic
    # re-reads the version inside the lock and finds nothing left to do.
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_MIGRATION_LOCK})
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
