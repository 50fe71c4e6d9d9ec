"""Discovery runs on a PostgreSQL archive: two runs write into one database at once, and a
run SIGKILLed mid-way resumes from its PostgreSQL checkpoint with nothing lost or doubled.

Needs ``DAEDALUS_TEST_POSTGRES_URL`` (``.ci/postgres.sh``); each test gets a fresh database.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, inspect, select, text

from daedalus.agent.launch import CHECKPOINT_SCHEMA
from daedalus.archive.db import ENV_URL, open_archive
from daedalus.archive.models import Candidate, Evaluation, Run
from tests.postgres_db import fresh_database

pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]

DAEDALUS = [sys.executable, "-m", "daedalus.agent.cli"]
SMALL = ["--set", "dim=4096", "--set", "batch_size=64"]
ARCHIVE_TABLES = {"runs", "candidates", "evaluations", "lessons", "alembic_version"}


@pytest.fixture
def pg_url() -> Iterator[str]:
    with fresh_database("runs") as url:
        yield url


def _start(args: list[str], cwd: Path, url: str) -> subprocess.Popen[str]:
    env = {**os.environ, ENV_URL: url}
    return subprocess.Popen([*DAEDALUS, *args], cwd=cwd, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip


def _summary(proc: subprocess.Popen[str], timeout: float = 300) -> dict[str, object]:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err[-3000:]
    return dict(json.loads(out.strip().splitlines()[-1]))


def _check_run(url: str, run_id: str, iterations: int) -> int:
    """Every proposal is archived once; each candidate has at most one evaluation and only
    duplicates have none; seq is 1..n. Returns the number of candidates."""
    with open_archive(url) as archive, archive.session(readonly=True) as s:
        run = s.get(Run, run_id)
        assert run is not None and run.status == "finished" and run.iterations == iterations
        candidates = list(s.scalars(select(Candidate).where(Candidate.run_id == run_id)))
        assert sorted(c.seq for c in candidates) == list(range(1, len(candidates) + 1))
        assert run.candidate_count == len(candidates) == iterations + 1  # and the seed
        counts = dict(s.execute(
            select(Evaluation.candidate_id, func.count()).join(Candidate)
            .where(Candidate.run_id == run_id).group_by(Evaluation.candidate_id)
        ).all())  # fmt: skip
        assert set(counts.values()) <= {1}
        assert {c.id for c in candidates if c.status != "duplicate"} == set(counts)
        assert not [c for c in candidates if c.status == "pending"]
        evaluated = s.scalar(select(func.coalesce(func.sum(Evaluation.duration_s), 0.0)).join(Candidate)
                             .where(Candidate.run_id == run_id))  # fmt: skip
        assert abs(run.device_seconds - float(evaluated or 0.0)) < 1e-6
        return len(candidates)


def _checkpoint_threads(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            assert set(inspect(conn).get_table_names()) == ARCHIVE_TABLES  # checkpoints kept apart
            rows = conn.execute(text(f"SELECT DISTINCT thread_id FROM {CHECKPOINT_SCHEMA}.checkpoints"))
            return {r[0] for r in rows}
    finally:
        engine.dispose()


def test_two_runs_write_one_postgres_archive_at_once(pg_url: str, tmp_path: Path) -> None:
    args = ["run", "swish_scale", *SMALL, "--iterations", "5", "--workers", "2", "--json"]
    procs = [_start([*args, "--seed", str(i)], tmp_path, pg_url) for i in range(2)]
    summaries = [_summary(p) for p in procs]
    run_ids = {str(s["run_id"]) for s in summaries}
    assert len(run_ids) == 2
    total = sum(_check_run(pg_url, run_id, 5) for run_id in run_ids)
    with open_archive(pg_url) as archive, archive.session(readonly=True) as s:
        assert s.scalar(select(func.count()).select_from(Candidate)) == total
    assert _checkpoint_threads(pg_url) == run_ids
    assert not (tmp_path / ".daedalus" / "checkpoints.db").exists()
    assert not (tmp_path / ".daedalus" / "archive.db").exists()


def test_a_killed_run_resumes_from_its_postgres_checkpoint(pg_url: str, tmp_path: Path) -> None:
    args = ["run", "swish_scale", *SMALL, "--iterations", "8", "--workers", "2", "--json"]
    # The machine's shared build cache: a build killed with the run leaves torch's lock
    # behind, which the sandbox clears once no live build holds it.
    proc = _start(args, tmp_path, pg_url)
    deadline = time.monotonic() + 240
    run_id = None
    while time.monotonic() < deadline and proc.poll() is None:  # kill it once a few are in
        time.sleep(0.5)
        with open_archive(pg_url) as archive, archive.session(readonly=True) as s:
            run = s.scalars(select(Run)).first()
            if run is not None and run.iterations >= 3:
                run_id = run.id
                break
    if run_id is None or proc.poll() is not None:
        pytest.fail(f"the run ended before it could be killed:\n{proc.communicate()[1][-3000:]}")
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    assert _checkpoint_threads(pg_url) == {run_id}
    resumed = _summary(_start(["run", "--resume", run_id, "--json"], tmp_path, pg_url))
    assert resumed["run_id"] == run_id and resumed["status"] == "finished"
    # All 8 iterations, unless the built-in catalogue ran dry first (swish_scale has about
    # ten distinct rewrites): an early stop the run reports, never a miscount.
    done = int(str(resumed["iterations"]))
    assert done == 8 or ("built-in catalogue" in str(resumed["stop_reason"]) and done < 8)
    _check_run(pg_url, run_id, done)
