"""The store API against a real archive: a SQLite file and a PostgreSQL database."""

from __future__ import annotations

import random

import pytest
from sqlalchemy import func, select

from daedalus.archive import store
from daedalus.archive.db import Archive
from daedalus.archive.errors import AmbiguousIdError, ArchiveError, NotFoundError
from daedalus.archive.models import Candidate
from tests.archive_helpers import evaluate, new_candidate, new_run


def test_run_lifecycle_and_spend(archive: Archive) -> None:
    run_id = new_run(archive)
    with archive.session() as s:
        store.add_spend(s, run_id=run_id, iterations=2, prompt_tokens=100, cost_usd=0.25)
        store.add_spend(s, run_id=run_id, iterations=1, completion_tokens=50, device_seconds=3.5)
        run = store.get_run(s, run_id=run_id)
        # The atomic UPDATE must be visible through the ORM object in the same session.
        assert (run.iterations, run.prompt_tokens, run.completion_tokens) == (3, 100, 50)
        assert run.cost_usd == pytest.approx(0.25) and run.device_seconds == pytest.approx(3.5)
        assert run.status == "running" and run.pid is not None and run.finished_at is None
        store.update_run_status(s, run_id=run_id, status="stopped")
    with archive.session(readonly=True) as s:
        run = store.get_run(s, run_id=run_id)
        assert run.status == "stopped" and run.finished_at is not None
        assert run.created_at.tzinfo is not None
    with archive.session() as s:
        assert store.update_run_status(s, run_id=run_id, status="running").finished_at is None
        with pytest.raises(ValueError, match="unknown run status"):
            store.update_run_status(s, run_id=run_id, status="paused")
        with pytest.raises(NotFoundError):
            store.add_spend(s, run_id="000000000000", iterations=1)
    with archive.session(readonly=True) as s:
        # The loop's cheap read of the same counters agrees with the ORM row.
        counters = store.run_counters(s, run_id=run_id)
        assert (counters.iterations, counters.best_score, counters.guidance) == (3, None, [])
        assert counters.cost_usd == pytest.approx(0.25) and counters.device_seconds == pytest.approx(3.5)
        with pytest.raises(NotFoundError):
            store.run_counters(s, run_id=run_id[:6])  # exact ids only


def test_list_and_latest_runs(archive: Archive) -> None:
    a = new_run(archive, "alpha")
    b = new_run(archive, "beta")
    c = new_run(archive, "alpha")
    with archive.session() as s:
        store.update_run_status(s, run_id=c, status="finished")
    with archive.session(readonly=True) as s:
        assert [r.id for r in store.list_runs(s)] == [c, b, a]
        assert [r.id for r in store.list_runs(s, task="alpha")] == [c, a]
        assert [r.id for r in store.list_runs(s, status="finished")] == [c]
        assert store.latest_run(s).id == c  # type: ignore[union-attr]
        assert store.latest_run(s, task="beta").id == b  # type: ignore[union-attr]
        assert store.latest_run(s, task="gamma") is None


def test_prefix_lookup(archive: Archive) -> None:
    with archive.session() as s:
        for rid in ("abc123000001", "abc123000002", "def456000001"):
            store.create_run(s, task="t", run_id=rid)
    with archive.session(readonly=True) as s:
        assert store.get_run(s, run_id="def").id == "def456000001"
        assert store.get_run(s, run_id="ABC123000002").id == "abc123000002"
        assert store.get_run(s, run_id="abc123000001").id == "abc123000001"
        with pytest.raises(AmbiguousIdError, match=r"abc123000001, abc123000002.*more characters"):
            store.get_run(s, run_id="abc")
        with pytest.raises(NotFoundError, match="daedalus archive runs"):
            store.get_run(s, run_id="fff")
        with pytest.raises(NotFoundError):
            store.get_run(s, run_id="a%")  # LIKE wildcards are escaped, not matched
    run_id = "abc123000001"
    cid = new_candidate(archive, run_id)
    with archive.session(readonly=True) as s:
        assert store.get_candidate(s, candidate_id=cid[:6]).id == cid
        with pytest.raises(NotFoundError, match="list --run"):
            store.get_candidate(s, candidate_id="nothex")


def test_candidates_get_sequence_generation_and_task(archive: Archive) -> None:
    run_id = new_run(archive)
    root = new_candidate(archive, run_id, mode="seed")
    child = new_candidate(archive, run_id, parent_id=root, inspirations=[root], island=2)
    with archive.session(readonly=True) as s:
        r, c = store.get_candidate(s, candidate_id=root), store.get_candidate(s, candidate_id=child)
        assert (r.seq, c.seq) == (1, 2)
        assert (r.generation, c.generation) == (0, 1)
        assert c.task == "swish" and c.island == 2 and c.inspirations == [root]
        assert r.status == "pending" and r.evaluation is None
        assert store.get_run(s, run_id=run_id).candidate_count == 2
    with archive.session() as s, pytest.raises(ValueError, match="unknown mode"):
        store.add_candidate(s, run_id=run_id, code="x", code_hash="y", mode="guess")
    with archive.session() as s, pytest.raises(NotFoundError, match="create the run"):
        store.add_candidate(s, run_id="000000000000", code="x", code_hash="y")


def test_add_candidate_with_known_id_is_idempotent(archive: Archive) -> None:
    run_id = new_run(archive)
    first = new_candidate(archive, run_id, candidate_id="feedfacefeedface", code="A", code_hash="a")
    again = new_candidate(archive, run_id, candidate_id="feedfacefeedface", code="A", code_hash="a")
    assert first == again
    with archive.session(readonly=True) as s:
        assert s.scalar(select(func.count()).select_from(Candidate)) == 1
        assert store.get_run(s, run_id=run_id).candidate_count == 1
    other = new_run(archive)
    with archive.session() as s, pytest.raises(ArchiveError, match="belongs to run"):
        store.add_candidate(
            s, run_id=other, code="A", code_hash="a", candidate_id="feedfacefeedface"
        )


def test_top_candidates_islands_and_sampling(archive: Archive) -> None:
    run_id = new_run(archive)
    scores: dict[str, tuple[int, float]] = {}
    for i in range(24):
        cid = new_candidate(archive, run_id, island=i % 3)
        score = 1.0 + i / 10
        evaluate(
            archive, cid, status="ok" if i % 4 else "runtime_error", score=score if i % 4 else 0.0
        )
        if i % 4:
            scores[cid] = (i % 3, score)
    ranked = sorted(scores, key=lambda k: -scores[k][1])
    with archive.session(readonly=True) as s:
        assert [c.id for c in store.top_candidates(s, run_id=run_id, limit=5)] == ranked[:5]
        assert [c.id for c in store.top_candidates(s, task="swish", limit=3)] == ranked[:3]
        island1 = [k for k in ranked if scores[k][0] == 1]
        assert [c.id for c in store.island_members(s, run_id=run_id, island=1)] == island1
        assert [c.id for c in store.top_candidates(s, run_id=run_id, island=1, limit=2)] == island1[
            :2
        ]
        failures = store.top_candidates(s, run_id=run_id, status="runtime_error", limit=100)
        assert len(failures) == 6
        rng = random.Random(7)
        picks = [store.sample_parent(s, run_id=run_id, rng=rng, top_k=4).id for _ in range(200)]  # type: ignore[union-attr]
        # Tournament of 3 from the top 4: only the top two can ever win, the best most often.
        assert set(picks) == set(ranked[:2]) and picks.count(ranked[0]) > picks.count(ranked[1])
        on_island = store.sample_parent(s, run_id=run_id, rng=rng, island=2)
        assert on_island is not None and on_island.island == 2 and on_island.status == "ok"
        drawn = {store.random_candidate(s, run_id=run_id, rng=rng).id for _ in range(300)}  # type: ignore[union-attr]
        assert drawn == set(scores)  # every ok candidate reachable, no failure ever drawn
        assert store.random_candidate(s, run_id=run_id, rng=rng, status="timeout") is None
        with pytest.raises(ValueError):
            store.top_candidates(s, task="swish", island=1)
    empty = new_run(archive)
    with archive.session(readonly=True) as s:
        assert store.sample_parent(s, run_id=empty, rng=random.Random(0)) is None
        assert store.best_candidate(s, run_id=empty) is None


def test_cell_elites(archive: Archive) -> None:
    run_id = new_run(archive)
    expected: dict[str, str] = {}
    best: dict[str, float] = {}
    rng = random.Random(3)
    for _ in range(40):
        cell = f"{rng.randrange(5)}-{rng.randrange(2)}"
        score = round(rng.uniform(0.5, 2.0), 1)  # coarse, so ties happen
        cid = new_candidate(archive, run_id, cell=cell, features={"approach": cell})
        evaluate(archive, cid, score=score)
        if score > best.get(cell, -1.0):
            best[cell], expected[cell] = score, cid
    failing = new_candidate(archive, run_id, cell="9-9")
    evaluate(archive, failing, status="incorrect", score=0.0)
    with archive.session(readonly=True) as s:
        elites = store.cell_elites(s, run_id=run_id)
    assert [c.cell for c in elites] == sorted(expected)
    assert {c.cell: c.id for c in elites} == expected
    assert all(c.evaluation is not None for c in elites)


def test_recent_failures_newest_first(archive: Archive) -> None:
    run_id = new_run(archive)
    statuses = ["ok", "compile_error", "incorrect", "ok", "timeout", "incorrect", "ok", "rejected"]
    ids = []
    for st in statuses:
        cid = new_candidate(archive, run_id)
        evaluate(archive, cid, status=st, score=1.0 if st == "ok" else 0.0)
        ids.append(cid)
    with archive.session(readonly=True) as s:
        failures = store.recent_failures(s, run_id=run_id, limit=3)
    assert [c.id for c in failures] == [ids[7], ids[5], ids[4]]
    assert (
        failures[0].evaluation is not None and failures[0].evaluation.error == "rejected happened"
    )


def test_lineage_children_and_lessons(archive: Archive) -> None:
    run_id = new_run(archive)
    chain = [new_candidate(archive, run_id, mode="seed")]
    for _ in range(4):
        chain.append(new_candidate(archive, run_id, parent_id=chain[-1]))
    sibling = new_candidate(archive, run_id, parent_id=chain[2])
    with archive.session(readonly=True) as s:
        assert [c.id for c in store.lineage(s, candidate_id=chain[-1])] == chain[-2::-1]
        assert store.lineage(s, candidate_id=chain[0]) == []
        assert [c.id for c in store.children(s, candidate_id=chain[2])] == [chain[3], sibling]
        assert [c.generation for c in store.lineage(s, candidate_id=sibling)] == [2, 1, 0]
    other = new_run(archive)
    with archive.session() as s:
        store.add_lesson(s, run_id=run_id, task="swish", iteration=5, text="in-place ops help")
        store.add_lesson(s, run_id=other, task="swish", iteration=1, text="avoid .item()")
        store.add_lesson(s, run_id=other, task="gelu", iteration=1, text="other task")
    with archive.session(readonly=True) as s:
        assert [x.text for x in store.lessons(s, task="swish")] == [
            "avoid .item()",
            "in-place ops help",
        ]
        assert [x.text for x in store.lessons(s, task="swish", run_id=run_id)] == [
            "in-place ops help"
        ]
        assert len(store.lessons(s, task="swish", limit=1)) == 1


def test_list_candidates_orders(archive: Archive) -> None:
    run_id = new_run(archive)
    a, b, c = (new_candidate(archive, run_id) for _ in range(3))
    evaluate(archive, a, score=2.0)
    evaluate(archive, b, status="timeout", score=0.0)
    with archive.session(readonly=True) as s:
        assert [x.id for x in store.list_candidates(s, run_id=run_id)] == [c, b, a]
        assert [x.id for x in store.list_candidates(s, run_id=run_id, order="score")] == [a, b, c]
        assert [x.id for x in store.list_candidates(s, run_id=run_id, status="timeout")] == [b]


def test_session_rolls_back_on_error(archive: Archive) -> None:
    run_id = new_run(archive)
    with pytest.raises(RuntimeError), archive.session() as s:
        store.add_candidate(s, run_id=run_id, code="x", code_hash="x")
        raise RuntimeError("boom")
    with archive.session(readonly=True) as s:
        assert store.get_run(s, run_id=run_id).candidate_count == 0
        assert s.scalar(select(func.count()).select_from(Candidate)) == 0


def test_resume_helpers(archive: Archive) -> None:
    with archive.session() as s, s.begin():
        run = store.create_run(s, task="t", host="node-7", pid=4242)
        assert (run.host, run.pid) == ("node-7", 4242)
        cid = store.add_candidate(
            s, run_id=run.id, code="x", code_hash="x", candidate_id="ab" * 8
        ).id
    with archive.session() as s:
        assert store.find_candidate(s, candidate_id=cid) is not None
        assert store.find_candidate(s, candidate_id=cid[:4]) is None  # exact ids only
        assert store.candidate_status(s, candidate_id=cid) == "pending"
        assert store.candidate_status(s, candidate_id=cid[:4]) is None
        store.set_features(
            s, candidate_id=cid, features={"approach": "fused", "code_size": 3}, cell="fused|0"
        )
        store.set_run_elapsed(s, run_id=run.id, elapsed_s=12.5)
        store.update_run_status(s, run_id=run.id, status="running", host="node-8", pid=99)
    with archive.session(readonly=True) as s:
        c = store.get_candidate(s, candidate_id=cid)
        assert (c.features, c.cell) == ({"approach": "fused", "code_size": 3}, "fused|0")
        again = store.get_run(s, run_id=run.id)
        assert (again.elapsed_s, again.host, again.pid) == (12.5, "node-8", 99)
        with pytest.raises(NotFoundError):
            store.set_run_elapsed(s, run_id="000000000000", elapsed_s=1.0)


def test_recent_candidates(archive: Archive) -> None:
    run_id = new_run(archive)
    ids = [new_candidate(archive, run_id) for _ in range(5)]
    evaluate(archive, ids[3], status="timeout", score=0.0)
    with archive.session(readonly=True) as s:
        recent = store.recent_candidates(s, run_id=run_id, limit=3)
    assert [c.id for c in recent] == ids[:1:-1]
    assert recent[1].evaluation is not None and recent[1].evaluation.status == "timeout"
