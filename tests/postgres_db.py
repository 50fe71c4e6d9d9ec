"""Throw-away PostgreSQL databases for tests, one per test, on the server that
``DAEDALUS_TEST_POSTGRES_URL`` names (``.ci/postgres.sh`` starts one on 127.0.0.1)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import create_engine, make_url, text

POSTGRES_ENV = "DAEDALUS_TEST_POSTGRES_URL"
SKIP_REASON = (
    f"PostgreSQL tests need a server: {POSTGRES_ENV} is not set; "
    'run eval "$(bash .ci/postgres.sh)" first (CI does)'
)


def postgres_url() -> str | None:
    return os.environ.get(POSTGRES_ENV, "").strip() or None


def require_postgres() -> str:
    """The server URL, or skip the calling test with the reason and the fix."""
    url = postgres_url()
    if url is None:
        if os.environ.get("DAEDALUS_REQUIRE_POSTGRES") == "1":
            pytest.fail(SKIP_REASON + " (DAEDALUS_REQUIRE_POSTGRES=1: CI must not skip it)")
        pytest.skip(SKIP_REASON)
    return url


@contextmanager
def fresh_database(prefix: str = "t") -> Iterator[str]:
    """Create an empty database, yield its URL, drop it (and its open connections) after."""
    base = make_url(require_postgres())
    name = f"daedalus_{prefix}_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            yield base.set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()
