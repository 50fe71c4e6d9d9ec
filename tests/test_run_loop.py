"""`daedalus run` end to end: the real graph, archive, sandbox and built-in proposer.

The kill test SIGKILLs the run at random moments and checks that --resume finishes it
with no candidate lost or duplicated and the budget accounting intact.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from daedalus.archive.db import open_archive
from daedalus.archive.models import Candidate, Evaluation, Run

DAEDALUS = [sys.executable, "-m", "daedalus.agent.cli"]
# A small swish_scale keeps each evaluation well under a second.
# Short candidate limits keep slow builds (C++, torch.compile) from dominating the test.
SMALL = ["--set", "dim=4096", "--set", "batch_size=64", "--timeout", "20", "--compile-timeout", "25"]


def _run(args: list[str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*DAEDALUS, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout)


def _archive(cwd: Path) -> Any:
    return open_archive(f"sqlite:///{cwd / '.daedalus' / 'archive.db'}")


def test_builtin_run_archives_scored_candidates_and_says_how_to_review(tmp_path: Path) -> None:
    out = _run(["run", "swish_scale", *SMALL, "--iterations", "6", "--workers", "2", "--json"], tmp_path)
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert summary["status"] == "finished"
    assert summary["iterations"] == 6
    assert sum(summary["by_status"].values()) == 7  # six proposals and the seed
    assert summary["by_status"].get("pending", 0) == 0
    best = _run(["archive", "best", "--run", summary["run_id"], "--json"], tmp_path)
    assert best.returncode == 0, best.stderr
    payload = json.loads(best.stdout)
    assert payload["status"] == "ok" and payload["score"] > 0 and "class ModelNew" in payload["code"]
    human = _run(["run", "swish_scale", *SMALL, "--iterations", "1"], tmp_path)
    assert human.returncode == 0, human.stderr
    assert "daedalus archive best --run" in human.stdout


def test_builtin_run_stops_when_the_catalogue_has_nothing_new(tmp_path: Path) -> None:
    # GELU is one library call: the catalogue's only rewrite is torch.compile, so the run
    # must stop after it instead of burning 40 iterations on "no transformation applies".
    args = ["run", "gelu", "--set", "dim=1024", "--set", "batch_size=16", "--timeout", "20",
            "--compile-timeout", "10", "--iterations", "40", "--json"]
    out = _run(args, tmp_path)
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert summary["status"] == "finished"
    assert "built-in catalogue has no new rewrite" in summary["stop_reason"]
    assert "--proposer llm" in summary["stop_reason"]
    assert 1 <= summary["iterations"] <= 3
    counts = _counts(tmp_path, summary["run_id"])
    assert counts["iterations"] == counts["proposals"] == summary["iterations"]
    assert counts["pending"] == 0
    with _archive(tmp_path).session() as s:
        dry = s.scalar(select(func.count()).select_from(Evaluation).join(Candidate).where(
            Candidate.run_id == summary["run_id"], Evaluation.error.like("no transformation applies%")))
    assert dry == 0  # exhausted parents are skipped, not archived as rejections
    # A resumed run re-learns that nothing is left (cheap proposer calls) and stops again.
    again = _run(["run", "--resume", summary["run_id"], "--json"], tmp_path)
    assert again.returncode == 0, again.stderr
    resumed = json.loads(again.stdout.strip().splitlines()[-1])
    assert resumed["iterations"] == summary["iterations"]
    assert "built-in catalogue has no new rewrite" in resumed["stop_reason"]
    # A second, fresh run of the same task in the same archive measures its own seed and
    # candidates (duplicates are recognised within a run), so it finds what the first found.
    second = _run(args, tmp_path)
    assert second.returncode == 0, second.stderr
    fresh = json.loads(second.stdout.strip().splitlines()[-1])
    assert fresh["run_id"] != summary["run_id"]
    assert fresh["iterations"] == summary["iterations"]
    with _archive(tmp_path).session() as s:
        statuses = {
            (c.mode, c.status)
            for c in s.scalars(select(Candidate).where(Candidate.run_id == fresh["run_id"]))
        }
    assert ("seed", "ok") in statuses
    assert not any(status == "duplicate" for _, status in statuses)


def _counts(cwd: Path, run_id: str) -> dict[str, Any]:
    archive = _archive(cwd)
    with archive.session() as s:
        run = s.get(Run, run_id)
        assert run is not None
        candidates = s.scalar(select(func.count()).select_from(Candidate).where(Candidate.run_id == run_id))
        proposals = s.scalar(
            select(func.count()).select_from(Candidate).where(Candidate.run_id == run_id, Candidate.mode != "seed")
        )
        evaluations = s.scalar(
            select(func.count()).select_from(Evaluation).join(Candidate).where(Candidate.run_id == run_id)
        )
        duplicates = s.scalar(
            select(func.count()).select_from(Candidate).where(Candidate.run_id == run_id, Candidate.status == "duplicate")
        )
        pending = s.scalar(
            select(func.count()).select_from(Candidate).where(Candidate.run_id == run_id, Candidate.status == "pending")
        )
        device = s.scalar(
            select(func.coalesce(func.sum(Evaluation.duration_s), 0.0)).join(Candidate).where(Candidate.run_id == run_id)
        )
        return {
            "iterations": run.iterations, "candidates": candidates or 0, "proposals": proposals or 0,
            "evaluations": evaluations or 0, "duplicates": duplicates or 0, "pending": pending or 0,
            "device_seconds": run.device_seconds, "evaluated_seconds": float(device or 0.0),
            "status": run.status,
        }


@pytest.mark.slow
def test_sigkill_at_random_moments_then_resume_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    rng = random.Random(7)
    iterations = 12
    args = ["run", "swish_scale", *SMALL, "--iterations", str(iterations), "--workers", "2", "--json"]
    run_id: str | None = None
    kills = 0
    for _attempt in range(12):
        cmd = [*DAEDALUS, *(args if run_id is None else ["run", "--resume", run_id, "--json"])]
        proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(rng.uniform(1.5, 6.0))
        if proc.poll() is None and kills < 5:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            kills += 1
        else:
            proc.wait(timeout=600)
        if run_id is None:
            archive = _archive(tmp_path)
            with archive.session() as s:
                run_id = s.scalars(select(Run.id)).first()
            if run_id is None:
                continue  # killed before the run was created: start again
        counts = _counts(tmp_path, run_id)
        # Invariants hold after every kill, not only at the end.
        assert counts["iterations"] == counts["proposals"]
        assert counts["evaluations"] + counts["pending"] + counts["duplicates"] >= counts["candidates"] - counts["duplicates"]
        if counts["status"] == "finished":
            break
    assert kills >= 5, "the run finished before it could be killed five times; make it longer"
    assert run_id is not None
    final = _run(["run", "--resume", run_id, "--json"], tmp_path)
    assert final.returncode == 0, final.stderr
    summary = json.loads(final.stdout.strip().splitlines()[-1])
    counts = _counts(tmp_path, run_id)
    assert counts["status"] == "finished"
    assert counts["iterations"] == counts["proposals"] == summary["iterations"]
    # The budget is spent exactly, unless the built-in catalogue ran dry first (a legitimate
    # early stop: swish_scale has about ten distinct rewrites).
    if "built-in catalogue" in (summary["stop_reason"] or ""):
        assert counts["iterations"] <= iterations
    else:
        assert counts["iterations"] == iterations
    assert counts["pending"] == 0
    # Every candidate ends with exactly one record (an evaluation, or a duplicate link).
    assert counts["evaluations"] + counts["duplicates"] >= counts["candidates"]
    assert counts["evaluations"] <= counts["candidates"]
    assert counts["device_seconds"] == pytest.approx(counts["evaluated_seconds"], rel=0.05, abs=1.0)
    time.sleep(1.0)
    assert not _forkservers_in(tmp_path), "fork servers outlived their killed runs"


def _forkservers_in(cwd: Path) -> list[int]:
    """Fork-server processes started by runs in this test's directory."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
            if b"daedalus.sandbox.forkserver" in cmdline and Path(os.readlink(proc / "cwd")) == cwd:
                found.append(int(proc.name))
        except OSError:
            continue
    return found
