"""Recording evaluations and recognising duplicates (``archive/evaluations.py`` and the
duplicate lookups), against a real archive: a SQLite file and a PostgreSQL database."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from daedalus.archive import store
from daedalus.archive.db import Archive
from daedalus.archive.errors import NotFoundError
from daedalus.archive.models import Evaluation, Run
from tests.archive_helpers import FP, evaluate, new_candidate, new_run


def test_record_evaluation_is_idempotent_and_tracks_best(archive: Archive) -> None:
    run_id = new_run(archive)
    a, b, c = (new_candidate(archive, run_id) for _ in range(3))
    first = evaluate(archive, a, score=1.2)
    assert first.created and first.new_best
    again = evaluate(archive, a, score=9.9)  # a retried write must not change anything
    assert not again.created and not again.new_best
    assert again.evaluation.id == first.evaluation.id and again.evaluation.score == 1.2
    assert not evaluate(archive, b, score=1.1).new_best
    assert evaluate(archive, c, status="incorrect", score=0.0).created
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
    run_id = new_run(archive)
    a, b = new_candidate(archive, run_id), new_candidate(archive, run_id)
    evaluate(archive, a, score=1.5)
    assert not evaluate(archive, b, score=1.5).new_best
    with archive.session(readonly=True) as s:
        assert store.best_candidate(s, run_id=run_id).id == a  # type: ignore[union-attr]
        assert [c.id for c in store.top_candidates(s, run_id=run_id)] == [a, b]


def test_pending_and_duplicates(archive: Archive) -> None:
    run_id = new_run(archive)
    done = new_candidate(archive, run_id, code="A", code_hash="ha")
    evaluate(archive, done)
    waiting = new_candidate(archive, run_id, code="B", code_hash="hb")
    exact = new_candidate(
        archive, run_id, code="A ", code_hash="ha", duplicate_of=done, duplicate_kind="exact"
    )
    late = new_candidate(archive, run_id, code="C", code_hash="hc")
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


def test_non_finite_numbers_in_json_columns_are_stored_as_null(archive: Archive) -> None:
    # PostgreSQL's json type rejects NaN and Infinity outright; a candidate whose score or
    # metric is not finite must still be recorded, the same way on both databases.
    cid = new_candidate(archive, new_run(archive))
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
    run_id = new_run(archive)
    a, b = new_candidate(archive, run_id), new_candidate(archive, run_id)
    first = evaluate(archive, a, score=1.2)
    again = evaluate(archive, a, score=9.9)
    assert first.created and first.new_best and not again.created
    assert again.evaluation.id == first.evaluation.id and again.evaluation.score == 1.2
    with archive.session(readonly=True) as s:
        assert [store.get_candidate(s, candidate_id=c).seq for c in (a, b)] == [1, 2]
        assert store.get_candidate(s, candidate_id=a).status == "ok"
    with archive.session() as s, pytest.raises(NotFoundError, match="create the run"):
        store.add_candidate(s, run_id="000000000000", code="x", code_hash="y")


def test_duplicate_lookups_can_be_scoped_to_one_run(archive: Archive) -> None:
    first, second = new_run(archive), new_run(archive)
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
