"""Initial schema: runs, candidates, evaluations, lessons.

Revision ID: 0001
Revises:
Create Date: 2026-11-23

Kept free of imports from daedalus.archive.models so that later model changes cannot
rewrite history; tests/test_archive_migrations.py checks models and migrations agree.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _id(name: str = "id") -> sa.Column:
    return sa.Column(name, sa.String(32), nullable=False)


def upgrade() -> None:
    op.create_table(
        "runs",
        _id(),
        sa.Column("task", sa.String(255), nullable=False),
        sa.Column("task_path", sa.Text(), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("proposer", sa.String(64), nullable=False),
        sa.Column("model", sa.String(255), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.Column("host", sa.String(255), nullable=True),
        sa.Column("pid", sa.Integer(), nullable=True),
        sa.Column("iterations", sa.Integer(), nullable=False),
        sa.Column("prompt_tokens", sa.Integer(), nullable=False),
        sa.Column("completion_tokens", sa.Integer(), nullable=False),
        sa.Column("cost_usd", sa.Float(), nullable=False),
        sa.Column("device_seconds", sa.Float(), nullable=False),
        sa.Column("elapsed_s", sa.Float(), nullable=False),
        sa.Column("candidate_count", sa.Integer(), nullable=False),
        sa.Column("best_candidate_id", sa.String(32), nullable=True),
        sa.Column("best_score", sa.Float(), nullable=True),
        sa.Column("guidance", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_runs")),
    )
    op.create_index("ix_runs_created_at", "runs", ["created_at"])
    op.create_index("ix_runs_status_created_at", "runs", ["status", "created_at"])
    op.create_index("ix_runs_task_created_at", "runs", ["task", "created_at"])

    op.create_table(
        "candidates",
        _id(),
        _id("run_id"),
        sa.Column("task", sa.String(255), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("code", sa.Text(), nullable=False),
        sa.Column("code_hash", sa.String(64), nullable=False),
        sa.Column("functional_hash", sa.String(64), nullable=True),
        sa.Column("parent_id", sa.String(32), nullable=True),
        sa.Column("inspirations", sa.JSON(), nullable=False),
        sa.Column("island", sa.Integer(), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("iteration", sa.Integer(), nullable=False),
        sa.Column("proposer", sa.String(64), nullable=False),
        sa.Column("model", sa.String(255), nullable=False),
        sa.Column("mode", sa.String(16), nullable=False),
        sa.Column("prompt", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("instruction", sa.Text(), nullable=True),
        sa.Column("features", sa.JSON(), nullable=False),
        sa.Column("cell", sa.String(255), nullable=True),
        sa.Column("duplicate_of", sa.String(32), nullable=True),
        sa.Column("duplicate_kind", sa.String(16), nullable=True),
        sa.Column("prompt_tokens", sa.Integer(), nullable=False),
        sa.Column("completion_tokens", sa.Integer(), nullable=False),
        sa.Column("cost_usd", sa.Float(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("score", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(
            ["duplicate_of"],
            ["candidates.id"],
            name=op.f("fk_candidates_duplicate_of_candidates"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["parent_id"],
            ["candidates.id"],
            name=op.f("fk_candidates_parent_id_candidates"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name=op.f("fk_candidates_run_id_runs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_candidates")),
    )
    op.create_index("uq_candidates_run_id_seq", "candidates", ["run_id", "seq"], unique=True)
    op.create_index("ix_candidates_run_status_score", "candidates", ["run_id", "status", "score"])
    op.create_index("ix_candidates_run_status_seq", "candidates", ["run_id", "status", "seq"])
    op.create_index(
        "ix_candidates_run_island_status_score",
        "candidates",
        ["run_id", "island", "status", "score"],
    )
    op.create_index(
        "ix_candidates_run_status_cell_score", "candidates", ["run_id", "status", "cell", "score"]
    )
    op.create_index("ix_candidates_task_status_score", "candidates", ["task", "status", "score"])
    op.create_index("ix_candidates_task_code_hash", "candidates", ["task", "code_hash"])
    op.create_index("ix_candidates_task_functional_hash", "candidates", ["task", "functional_hash"])
    op.create_index("ix_candidates_parent_id", "candidates", ["parent_id"])
    op.create_index("ix_candidates_duplicate_of", "candidates", ["duplicate_of"])

    op.create_table(
        "evaluations",
        _id(),
        _id("candidate_id"),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("correct", sa.Boolean(), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("speedup", sa.Float(), nullable=True),
        sa.Column("stage", sa.String(64), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("objectives", sa.JSON(), nullable=False),
        sa.Column("logs", sa.Text(), nullable=False),
        sa.Column("artifacts", sa.JSON(), nullable=False),
        sa.Column("fingerprint", sa.JSON(), nullable=False),
        sa.Column("fingerprint_hash", sa.String(16), nullable=False),
        sa.Column("backend", sa.String(32), nullable=False),
        sa.Column("sandbox", sa.String(32), nullable=False),
        sa.Column("duration_s", sa.Float(), nullable=False),
        sa.Column("flags", sa.JSON(), nullable=False),
        sa.Column("overrides", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["candidate_id"],
            ["candidates.id"],
            name=op.f("fk_evaluations_candidate_id_candidates"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_evaluations")),
        sa.UniqueConstraint("candidate_id", name=op.f("uq_evaluations_candidate_id")),
    )
    op.create_index("ix_evaluations_backend", "evaluations", ["backend"])
    op.create_index("ix_evaluations_fingerprint_hash", "evaluations", ["fingerprint_hash"])

    op.create_table(
        "lessons",
        _id(),
        _id("run_id"),
        sa.Column("task", sa.String(255), nullable=False),
        sa.Column("iteration", sa.Integer(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name=op.f("fk_lessons_run_id_runs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_lessons")),
    )
    op.create_index("ix_lessons_run_id_created_at", "lessons", ["run_id", "created_at"])
    op.create_index("ix_lessons_task_created_at", "lessons", ["task", "created_at"])


def downgrade() -> None:
    # Dropping a table drops its indexes on both SQLite and PostgreSQL.
    op.drop_table("lessons")
    op.drop_table("evaluations")
    op.drop_table("candidates")
    op.drop_table("runs")
