"""Pareto rank of each correct candidate (``candidates.pareto``), kept as results land.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03

Adds the nullable column and its ``(run_id, pareto, seq)`` index, then ranks every run
that declares two or more objectives. Like 0001 it does not import the models; the
arithmetic comes from ``daedalus.archive.front``, which imports no database code.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from daedalus.archive import front

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

runs = sa.table("runs", sa.column("id", sa.String), sa.column("config", sa.JSON))
candidates = sa.table(
    "candidates",
    sa.column("id", sa.String),
    sa.column("run_id", sa.String),
    sa.column("status", sa.String),
    sa.column("pareto", sa.Boolean),
)
evaluations = sa.table(
    "evaluations", sa.column("candidate_id", sa.String), sa.column("objectives", sa.JSON)
)


def upgrade() -> None:
    # Plain ALTER TABLE on SQLite too, never a batch rebuild: dropping the old candidates
    # table would cascade-delete every evaluation (foreign keys are on).
    op.add_column("candidates", sa.Column("pareto", sa.Boolean(), nullable=True))
    op.create_index("ix_candidates_run_pareto_seq", "candidates", ["run_id", "pareto", "seq"])
    if op.get_context().as_sql:
        return  # an offline SQL script ranks nothing; unranked runs are drawn by a full scan
    conn = op.get_bind()
    for run_id, config in conn.execute(sa.select(runs.c.id, runs.c.config)).all():
        spec = front.run_objectives(config)
        if spec is None:
            continue
        rows = conn.execute(
            sa.select(candidates.c.id, evaluations.c.objectives)
            .join(evaluations, evaluations.c.candidate_id == candidates.c.id)
            .where(candidates.c.run_id == run_id, candidates.c.status == "ok")
        ).all()
        ranks = front.rank(((r[0], r[1]) for r in rows), *spec)
        if ranks:
            conn.execute(
                candidates.update()
                .where(candidates.c.id == sa.bindparam("cid"))
                .values(pareto=sa.bindparam("rank")),
                [{"cid": cid, "rank": on} for cid, on in ranks.items()],
            )


def downgrade() -> None:
    op.drop_index("ix_candidates_run_pareto_seq", table_name="candidates")
    op.drop_column("candidates", "pareto")  # SQLite 3.35+ drops a column in place
