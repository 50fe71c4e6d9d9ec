"""`daedalus run --executor ray` on a real two-node Ray cluster (head + a second node, both
started with `daedalus worker start` on 127.0.0.1 inside a loopback-only namespace).

One cluster serves the module: a run spreads its evaluations over both nodes, then a run
loses the second node mid-run and still finishes with every candidate evaluated once.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from daedalus.archive.db import open_archive
from daedalus.archive.models import Candidate, Evaluation, Run
from tests.ray_cluster import RayCluster, skip_without_namespace

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

SMALL = ["--set", "dim=4096", "--set", "batch_size=64"]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RayCluster]:
    skip_without_namespace()
    # Two CPUs on the head: room for a replacement worker once the second node is gone.
    with RayCluster(tmp_path_factory.mktemp("ray"), head_cpus=2, node_cpus=1) as c:
        yield c


def _run_args(address: str, iterations: int) -> list[str]:
    return ["daedalus", "run", "swish_scale", *SMALL, "--executor", "ray", "--ray-address", address,
            "--workers", "2", "--iterations", str(iterations), "--json"]  # fmt: skip


def _evaluations(cwd: Path, run_id: str) -> tuple[Run, list[Candidate], list[Evaluation]]:
    with open_archive(f"sqlite:///{cwd / '.daedalus' / 'archive.db'}") as archive, archive.session() as s:
        run = s.get(Run, run_id)
        assert run is not None
        candidates = list(s.scalars(select(Candidate).where(Candidate.run_id == run_id)))
        evaluations = list(s.scalars(select(Evaluation).join(Candidate).where(Candidate.run_id == run_id)))
        per_candidate = s.execute(
            select(Evaluation.candidate_id, func.count()).join(Candidate)
            .where(Candidate.run_id == run_id).group_by(Evaluation.candidate_id)
        ).all()  # fmt: skip
        assert all(n == 1 for _, n in per_candidate)
        return run, candidates, evaluations


def _check_complete(run: Run, candidates: list[Candidate], evaluations: list[Evaluation]) -> None:
    """Nothing lost or doubled: every candidate that needed an evaluation has exactly one."""
    assert run.status == "finished"
    assert not [c.id for c in candidates if c.status == "pending"]
    evaluated = {e.candidate_id for e in evaluations}
    assert len(evaluated) == len(evaluations)
    assert evaluated == {c.id for c in candidates if c.status != "duplicate"}


def _worker(e: Evaluation) -> dict[str, Any]:
    return dict((e.artifacts or {}).get("worker") or {})


def test_a_run_spreads_evaluations_over_both_nodes(cluster: RayCluster, tmp_path: Path) -> None:
    done = cluster.run(_run_args("auto", 4), cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr + cluster.logs()
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    run, candidates, evaluations = _evaluations(tmp_path, summary["run_id"])
    _check_complete(run, candidates, evaluations)
    sandboxed = [e for e in evaluations if e.status != "rejected"]  # the agent's vet rejects some
    assert sandboxed and all(_worker(e).get("executor") == "ray" for e in sandboxed)
    nodes = {_worker(e)["node_id"] for e in sandboxed}
    assert len(nodes) == 2, f"evaluations ran on {nodes}"
    assert all(e.fingerprint for e in sandboxed) and summary["by_status"].get("ok", 0) >= 1


def test_a_node_killed_mid_run_loses_nothing(cluster: RayCluster, tmp_path: Path) -> None:
    probe = cluster.run(["python", "-c", "import ray; ray.init(address='auto', logging_level='ERROR'); "
                         "print(*[n['NodeID'] for n in ray.nodes() if n['Alive'] and "
                         "'node:__internal_head__' in n['Resources']])"], cwd=tmp_path, timeout=120)  # fmt: skip
    head = probe.stdout.strip()
    assert head, probe.stderr
    proc = cluster.popen(_run_args(cluster.address, 10), cwd=tmp_path)
    db = tmp_path / ".daedalus" / "archive.db"
    deadline = time.monotonic() + 240
    seen: list[str] = []
    # Wait until the second node has finished an evaluation, then kill it outright.
    while time.monotonic() < deadline and proc.poll() is None:
        time.sleep(1.0)
        if db.exists():
            with open_archive(f"sqlite:///{db}") as archive, archive.session(readonly=True) as s:
                seen = [_worker(e).get("node_id", "") for e in s.scalars(select(Evaluation))]
            if [n for n in seen if n and n != head]:
                break
    if proc.poll() is not None:
        pytest.fail(f"the run ended before the node could be killed:\n{proc.communicate()[1][-3000:]}")
    second = {n for n in seen if n and n != head}
    assert len(second) == 1, f"the second node never received an evaluation: {seen}"
    cluster.kill_node()
    stdout, stderr = proc.communicate(timeout=360)
    assert proc.returncode == 0, stderr + cluster.logs()
    summary = json.loads(stdout.strip().splitlines()[-1])
    # All 10, unless the built-in catalogue ran dry first (swish_scale has about ten rewrites).
    assert summary["iterations"] == 10 or (
        "built-in catalogue" in (summary["stop_reason"] or "") and summary["iterations"] < 10)
    run, candidates, evaluations = _evaluations(tmp_path, summary["run_id"])
    _check_complete(run, candidates, evaluations)
    assert not [e.candidate_id for e in evaluations if "worker_lost" in (e.flags or [])]
    # The candidate in flight on the dead node was sent again and evaluated once, elsewhere.
    retried = [_worker(e) for e in evaluations if _worker(e).get("attempts", 1) > 1]
    assert retried and all(w["node_id"] == head for w in retried), retried
    after = [_worker(e) for e in sorted(evaluations, key=lambda e: e.created_at)][-3:]
    assert all(w.get("node_id") in (head, None) for w in after), after
