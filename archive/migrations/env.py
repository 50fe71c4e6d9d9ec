"""Alembic environment for the archive.

``daedalus.archive.db.upgrade`` passes an open connection (inside its own transaction) in
``config.attributes["connection"]``; without one, an engine is built from the configured
URL, which is how ``alembic`` commands run against ``alembic_config(url)``.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from daedalus.archive.models import Base

config = context.config
target_metadata = Base.metadata


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite's DDL is transactional once pysqlite stops managing transactions (db.py),
        # so a failed migration leaves no half-built schema behind.
        transactional_ddl=True,
        # SQLite cannot ALTER most things; batch mode rebuilds the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )


def run_migrations_offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError(
            "no database URL: build the config with daedalus.archive.db.alembic_config(url)"
        )
    from daedalus.archive.db import make_engine

    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            _configure(conn)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
