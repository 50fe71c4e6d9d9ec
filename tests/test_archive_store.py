"""The store API against a real archive: a SQLite file and a PostgreSQL database."""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest
from sqlalchemy import func, select

from daedalus.archive import store
from daedalus.archive.db import Archive, open_archive
from daedalus.archive.errors import AmbiguousIdError, ArchiveError, NotFoundError
from daedalus.archive.models import Candidate, Evaluation, Run

FP = {"cpu": "Test CPU", "torch": "2.13.0", "threads": "1"}


@pytest.fixture
def archive(archive_url: str) -> Iterator[Archive]:
    arch = open_archive(archive_url)
    yield arch
    arch.close()


def _run(archive: Archive, task: str = "swish") -> str:
    with archive.session() as s:
        return store.create_run(s, task=task, config={"iterations": 10}).id


def _cand(archive: Archive, run_id: str, **kw: object) -> str:
    code = str(kw.pop("code", f"class ModelNew: {random.random()}"))
    code_hash = str(kw.pop("code_hash", f"h{random.getrandbits(64):x}"))
    with archive.session() as s:
        return store.add_candidate(s, run_id=run_id, code=code, code_hash=code_hash, **kw).id  # type: ignore[arg-type]


def _eval(
    archive: Archive, cid: str, status: str = "ok", score: float = 1.0
) -> store.RecordOutcome:
    with archive.session() as s:
        return store.record_evaluation(
            s,
            candidate_id=cid,
            status=status,
            correct=status == "ok",
            score=score,
            speedup=score if status == "ok" else None,
            error=None if status == "ok" else f"{status} happened",
            metrics={"ref_ms": 2.0, "cand_ms": 2.0 / max(score, 1e-9)},
            fingerprint=FP,
            backend="cpu",
            sandbox="process",
            logs="log line",
        )


def test_run_lifecycle_and_spend(archive: Archive) -> None:
    run_id = _run(archive)
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


def test_list_and_latest_runs(archive: Archive) -> None:
    a = _run(archive, "alpha")
    b = _run(archive, "beta")
    c = _run(archive, "alpha")
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
    cid = _cand(archive, run_id)
    with archive.session(readonly=True) as s:
        assert store.get_candidate(s, candidate_id=cid[:6]).id == cid
        with pytest.raises(NotFoundError, match="list --run"):
            store.get_candidate(s, candidate_id="nothex")


def test_candidates_get_sequence_generation_and_task(archive: Archive) -> None:
    run_id = _run(archive)
    root = _cand(archive, run_id, mode="seed")
    child = _cand(archive, run_id, parent_id=root, inspirations=[root], island=2)
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
    run_id = _run(archive)
    first = _cand(archive, run_id, candidate_id="feedfacefeedface", code="A", code_hash="a")
    again = _cand(archive, run_id, candidate_id="feedfacefeedface", code="A", code_hash="a")
    assert first == again
    with archive.session(readonly=True) as s:
        assert s.scalar(select(func.count()).select_from(Candidate)) == 1
        assert store.get_run(s, run_id=run_id).candidate_count == 1
    other = _run(archive)
    with archive.session() as s, pytest.raises(ArchiveError, match="belongs to run"):
        store.add_candidate(
            s, run_id=other, code="A", code_hash="a", candidate_id="feedfacefeedface"
        )


def test_record_evaluation_is_idempotent_and_tracks_best(archive: Archive) -> None:
    run_id = _run(archive)
    a, b, c = (_cand(archive, run_id) for _ in range(3))
    first = _eval(archive, a, score=1.2)
    assert first.created and first.new_best
    again = _eval(archive, a, score=9.9)  # a retried write must not change anything
    assert not again.created and not again.new_best
    assert again.evaluation.id == first.evaluation.id and again.evaluation.score == 1.2
    assert not _eval(archive, b, score=1.1).new_best
    assert _eval(archive, c, status="incorrect", score=0.0).created
    with archive.session(readonly=True) as s:
        assert s.scalar(select(func.count()).select_from(Evaluation)) == 3
        run = s.get(Run, run_id)
        assert run is not None and (run.best_candidate_id, run.best_score) == (a, 1.2)
        best = store.best_candidate(s, run_id=run_id)
        assert best is not None and best.id == a and best.evaluation is not None
        ev = best.evaluation
        assert ev.fingerprint == FP and len(ev.fingerprint_hash) == 12
        assert ev.fingerprint_hash == store.fingerprint_hash(dict(reversed(FP.items())))
        assert store.get_candidate(s, candidate_id=c).status == "incorrect"
    with archive.session() as s, pytest.raises(ValueError, match="unknown evaluation status"):
        store.record_evaluation(s, candidate_id=b, status="great")


def test_equal_score_keeps_the_first_best(archive: Archive) -> None:
    run_id = _run(archive)
    a, b = _cand(archive, run_id), _cand(archive, run_id)
    _eval(archive, a, score=1.5)
    assert not _eval(archive, b, score=1.5).new_best
    with archive.session(readonly=True) as s:
        assert store.best_candidate(s, run_id=run_id).id == a  # type: ignore[union-attr]
        assert [c.id for c in store.top_candidates(s, run_id=run_id)] == [a, b]


def test_pending_and_duplicates(archive: Archive) -> None:
    run_id = _run(archive)
    done = _cand(archive, run_id, code="A", code_hash="ha")
    _eval(archive, done)
    waiting = _cand(archive, run_id, code="B", code_hash="hb")
    exact = _cand(
        archive, run_id, code="A ", code_hash="ha", duplicate_of=done, duplicate_kind="exact"
    )
    late = _cand(archive, run_id, code="C", code_hash="hc")
    with archive.session() as s:
        store.mark_duplicate(
            s, candidate_id=late, duplicate_of=done, kind="functional", functional_hash="f1"
        )
    with archive.session(readonly=True) as s:
        assert [c.id for c in store.pending_candidates(s, run_id=run_id)] == [waiting]
        assert store.find_by_code_hash(s, task="swish", code_hash="ha").id == done  # type: ignore[union-attr]
        assert store.find_by_code_hash(s, task="other", code_hash="ha") is None
        assert store.get_candidate(s, candidate_id=exact).status == "duplicate"
        assert store.count_by_status(s, run_id=run_id) == {"ok": 1, "pending": 1, "duplicate": 2}
    with archive.session() as s:
        store.record_evaluation(
            s, candidate_id=waiting, status="ok", score=1.0, functional_hash="f1"
        )
    with archive.session(readonly=True) as s:
        assert store.pending_candidates(s, run_id=run_id) == []
        # the duplicate shares f1, but the original is the one found
        assert store.find_by_functional_hash(s, task="swish", functional_hash="f1").id == waiting  # type: ignore[union-attr]
        assert store.known_functional_hashes(s, task="swish") == {"f1"}
    with archive.session() as s, pytest.raises(ValueError, match="together"):
        store.add_candidate(s, run_id=run_id, code="x", code_hash="x", duplicate_of=done)


def test_top_candidates_islands_and_sampling(archive: Archive) -> None:
    run_id = _run(archive)
    scores: dict[str, tuple[int, float]] = {}
    for i in range(24):
        cid = _cand(archive, run_id, island=i % 3)
        score = 1.0 + i / 10
        _eval(
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
    empty = _run(archive)
    with archive.session(readonly=True) as s:
        assert store.sample_parent(s, run_id=empty, rng=random.Random(0)) is None
        assert store.best_candidate(s, run_id=empty) is None


def test_cell_elites(archive: Archive) -> None:
    run_id = _run(archive)
    expected: dict[str, str] = {}
    best: dict[str, float] = {}
    rng = random.Random(3)
    for _ in range(40):
        cell = f"{rng.randrange(5)}-{rng.randrange(2)}"
        score = round(rng.uniform(0.5, 2.0), 1)  # coarse, so ties happen
        cid = _cand(archive, run_id, cell=cell, features={"approach": cell})
        _eval(archive, cid, score=score)
        if score > best.get(cell, -1.0):
            best[cell], expected[cell] = score, cid
    failing = _cand(archive, run_id, cell="9-9")
    _eval(archive, failing, status="incorrect", score=0.0)
    with archive.session(readonly=True) as s:
        elites = store.cell_elites(s, run_id=run_id)
    assert [c.cell for c in elites] == sorted(expected)
    assert {c.cell: c.id for c in elites} == expected
    assert all(c.evaluation is not None for c in elites)


def test_recent_failures_newest_first(archive: Archive) -> None:
    run_id = _run(archive)
    statuses = ["ok", "compile_error", "incorrect", "ok", "timeout", "incorrect", "ok", "rejected"]
    ids = []
    for st in statuses:
        cid = _cand(archive, run_id)
        _eval(archive, cid, status=st, score=1.0 if st == "ok" else 0.0)
        ids.append(cid)
    with archive.session(readonly=True) as s:
        failures = store.recent_failures(s, run_id=run_id, limit=3)
    assert [c.id for c in failures] == [ids[7], ids[5], ids[4]]
    assert (
        failures[0].evaluation is not None and failures[0].evaluation.error == "rejected happened"
    )


def test_lineage_children_and_lessons(archive: Archive) -> None:
    run_id = _run(archive)
    chain = [_cand(archive, run_id, mode="seed")]
    for _ in range(4):
        chain.append(_cand(archive, run_id, parent_id=chain[-1]))
    sibling = _cand(archive, run_id, parent_id=chain[2])
    with archive.session(readonly=True) as s:
        assert [c.id for c in store.lineage(s, candidate_id=chain[-1])] == chain[-2::-1]
        assert store.lineage(s, candidate_id=chain[0]) == []
        assert [c.id for c in store.children(s, candidate_id=chain[2])] == [chain[3], sibling]
        assert [c.generation for c in store.lineage(s, candidate_id=sibling)] == [2, 1, 0]
    other = _run(archive)
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
    run_id = _run(archive)
    a, b, c = (_cand(archive, run_id) for _ in range(3))
    _eval(archive, a, score=2.0)
    _eval(archive, b, status="timeout", score=0.0)
    with archive.session(readonly=True) as s:
        assert [x.id for x in store.list_candidates(s, run_id=run_id)] == [c, b, a]
        assert [x.id for x in store.list_candidates(s, run_id=run_id, order="score")] == [a, b, c]
        assert [x.id for x in store.list_candidates(s, run_id=run_id, status="timeout")] == [b]


def test_session_rolls_back_on_error(archive: Archive) -> None:
    run_id = _run(archive)
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
    run_id = _run(archive)
    ids = [_cand(archive, run_id) for _ in range(5)]
    _eval(archive, ids[3], status="timeout", score=0.0)
    with archive.session(readonly=True) as s:
        recent = store.recent_candidates(s, run_id=run_id, limit=3)
    assert [c.id for c in recent] == ids[:1:-1]
    assert recent[1].evaluation is not None and recent[1].evaluation.status == "timeout"


def test_non_finite_numbers_in_json_columns_are_stored_as_null(archive: Archive) -> None:
    # PostgreSQL's json type rejects NaN and Infinity outright; a candidate whose score or
    # metric is not finite must still be recorded, the same way on both databases.
    cid = _cand(archive, _run(archive))
    with archive.session() as s:
        store.record_evaluation(
            s, candidate_id=cid, status="incorrect", correct=False, score=0.0,
            error="non-finite score: combined_score=nan",
            metrics={"ref_ms": float("inf"), "nested": [1.0, float("-inf")]},
            objectives={"combined_score": float("nan")},
        )  # fmt: skip
    with archive.session() as s:
        ev = s.scalars(select(Evaluation).where(Evaluation.candidate_id == cid)).one()
        assert ev.metrics == {"ref_ms": None, "nested": [1.0, None]}
        assert ev.objectives == {"combined_score": None}
        assert ev.error == "non-finite score: combined_score=nan"


def test_writes_without_returning(archive: Archive, monkeypatch: pytest.MonkeyPatch) -> None:
    """SQLite before 3.35 has no RETURNING: the same writes take two statements instead."""
    dialect = archive.engine.dialect
    monkeypatch.setattr(dialect, "insert_returning", False)
    monkeypatch.setattr(dialect, "update_returning", False)
    run_id = _run(archive)
    a, b = _cand(archive, run_id), _cand(archive, run_id)
    first = _eval(archive, a, score=1.2)
    again = _eval(archive, a, score=9.9)
    assert first.created and first.new_best and not again.created
    assert again.evaluation.id == first.evaluation.id and again.evaluation.score == 1.2
    with archive.session(readonly=True) as s:
        assert [store.get_candidate(s, candidate_id=c).seq for c in (a, b)] == [1, 2]
        assert store.get_candidate(s, candidate_id=a).status == "ok"
    with archive.session() as s, pytest.raises(NotFoundError, match="create the run"):
        store.add_candidate(s, run_id="000000000000", code="x", code_hash="y")


def test_duplicate_lookups_can_be_scoped_to_one_run(archive: Archive) -> None:
    first, second = _run(archive), _run(archive)
    with archive.session() as s:
        old = store.add_candidate(s, run_id=first, code="x = 1", code_hash="h1")
        store.record_evaluation(s, candidate_id=old.id, status="ok", score=1.0, functional_hash="f1")
        assert store.find_by_code_hash(s, task="swish", code_hash="h1").id == old.id  # type: ignore[union-attr]
        assert store.find_by_code_hash(s, task="swish", code_hash="h1", run_id=second) is None
        assert store.find_by_functional_hash(s, task="swish", functional_hash="f1", run_id=second) is None
        assert store.known_functional_hashes(s, task="swish", run_id=second) == set()
        assert store.known_functional_hashes(s, task="swish", run_id=first) == {"f1"}
        mine = store.add_candidate(s, run_id=second, code="x = 1", code_hash="h1")
        store.record_evaluation(s, candidate_id=mine.id, status="ok", score=1.0, functional_hash="f1")
        found = store.find_by_functional_hash(s, task="swish", functional_hash="f1", run_id=second)
        assert found is not None and found.id == mine.id
