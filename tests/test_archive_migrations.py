"""The Alembic migrations: they build the schema, agree with the models, and round-trip,
the same on SQLite and PostgreSQL."""

from __future__ import annotations

import io

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text

from daedalus.archive import store
from daedalus.archive.db import alembic_config, open_archive
from daedalus.archive.errors import SchemaError
from daedalus.archive.migrations import HEAD
from daedalus.archive.models import Base

TABLES = {"runs", "candidates", "evaluations", "lessons", "alembic_version"}


def test_fresh_archive_gets_the_full_schema(archive_url: str) -> None:
    with open_archive(archive_url) as archive:
        insp = inspect(archive.engine)
        assert set(insp.get_table_names()) == TABLES
        cand_indexes = {ix["name"] for ix in insp.get_indexes("candidates")}
        assert {
            "ix_candidates_run_status_score",
            "ix_candidates_run_status_cell_score",
        } <= cand_indexes
        unique = [ix for ix in insp.get_indexes("candidates") if ix["unique"]]
        assert [ix["column_names"] for ix in unique] == [["run_id", "seq"]]
        with archive.engine.connect() as conn:
            assert MigrationContext.configure(conn).get_current_revision() == HEAD


def test_models_and_migrations_agree(archive_url: str) -> None:
    """What `alembic check` does: autogenerate against the migrated schema finds nothing."""
    with (
        open_archive(archive_url) as archive,
        archive.engine.connect() as conn,
    ):
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(ctx, Base.metadata) == []


def test_head_constant_matches_the_scripts() -> None:
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    assert script.get_current_head() == HEAD
    assert len(script.get_heads()) == 1


def test_downgrade_to_base_and_reopen(archive_url: str) -> None:
    url = archive_url
    with open_archive(url) as archive:
        cfg = alembic_config(url)
        with archive.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "base")
        assert set(inspect(archive.engine).get_table_names()) == {"alembic_version"}
    with open_archive(url) as archive:  # opening upgrades again
        assert set(inspect(archive.engine).get_table_names()) == TABLES


def test_reopening_keeps_data(archive_url: str) -> None:
    url = archive_url
    with open_archive(url) as archive, archive.session() as s:
        run_id = store.create_run(s, task="t").id
    with open_archive(url) as archive, archive.session(readonly=True) as s:
        assert store.get_run(s, run_id=run_id).task == "t"


def test_unknown_revision_is_a_clear_error(archive_url: str) -> None:
    url = archive_url
    with open_archive(url) as archive, archive.engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = 'fromthefuture'"))
    with pytest.raises(SchemaError, match=r"newer version\. Fix: upgrade daedalus"):
        open_archive(url)


@pytest.mark.parametrize("dialect", ["postgresql", "sqlite"])
def test_migrations_render_for_each_backend(dialect: str) -> None:
    """Offline mode compiles every statement for the dialect without a server, so
    SQLite-only constructs in the migrations would fail here for PostgreSQL."""
    cfg = alembic_config(f"{dialect}://user@localhost/db" if dialect != "sqlite" else "sqlite://")
    buf = io.StringIO()
    cfg.output_buffer = buf
    command.upgrade(cfg, "head", sql=True)
    sql = buf.getvalue()
    assert (
        "CREATE TABLE candidates" in sql and "CREATE UNIQUE INDEX uq_candidates_run_id_seq" in sql
    )
    if dialect == "postgresql":
        assert "TIMESTAMP WITHOUT TIME ZONE" in sql and "BOOLEAN" in sql
