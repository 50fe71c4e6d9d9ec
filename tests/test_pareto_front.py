"""The Pareto front kept in the archive (archive/pareto.py): after every recorded result it
equals a brute-force front over the run's declared objectives (mixed directions, ties,
missing and non-finite values), and so do ``rebuild``, the full scan and the migration."""

from __future__ import annotations

import math
import random
from typing import Any

from alembic import command
from sqlalchemy import func, insert, select, update

from daedalus.archive import front, pareto, review_charts, store
from daedalus.archive.db import Archive, alembic_config, open_archive
from daedalus.archive.models import Candidate, Evaluation, new_id

OBJECTIVES = [
    {"name": "accuracy", "direction": "max"},
    {"name": "params", "direction": "min"},
    {"name": "latency_ms", "direction": "min"},
]
NAMES = ("accuracy", "latency_ms", "params")  # sorted, as the front reports them
SIGNS = {"accuracy": 1.0, "latency_ms": -1.0, "params": -1.0}


def brute_front(results: dict[str, dict[str, Any]]) -> set[str]:
    """Ids no other ranked result dominates (oriented by hand, compared pairwise)."""
    vectors = {}
    for cid, objectives in results.items():
        values: list[Any] = [objectives.get(n) for n in NAMES]
        if all(isinstance(v, int | float) and math.isfinite(v) for v in values):
            vectors[cid] = tuple(SIGNS[n] * float(v) for n, v in zip(NAMES, values, strict=True))

    def beats(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
        return all(x >= y for x, y in zip(a, b, strict=True)) and any(
            x > y for x, y in zip(a, b, strict=True)
        )

    return {c for c, v in vectors.items() if not any(beats(w, v) for w in vectors.values())}


def random_objectives(rng: random.Random) -> dict[str, Any]:
    # Few distinct values, so exact ties and equal coordinates are common.
    objectives: dict[str, Any] = {
        "accuracy": rng.randrange(6) / 5,
        "params": float(rng.randrange(1, 6) * 1000),
        "latency_ms": rng.choice([0.5, 1.0, 1.5, 2.0]),
        "extra_score": rng.random(),  # not declared: not part of the front
    }
    roll = rng.random()
    if roll < 0.05:
        del objectives["params"]
    elif roll < 0.08:
        objectives["latency_ms"] = float("nan")
    return objectives


def add_result(archive: Archive, run_id: str, k: int, objectives: dict[str, Any], ok: bool) -> str:
    with archive.session() as s:
        c = store.add_candidate(s, run_id=run_id, code=f"# {k}", code_hash=f"h{k}")
        store.record_evaluation(
            s,
            candidate_id=c.id,
            status="ok" if ok else "incorrect",
            correct=ok,
            score=float(objectives.get("accuracy", 0.0)),
            objectives=objectives,
        )
        return c.id


def flags(archive: Archive, run_id: str) -> dict[str, bool | None]:
    with archive.session(readonly=True) as s:
        rows = s.execute(select(Candidate.id, Candidate.pareto).where(Candidate.run_id == run_id))
        return {cid: on for cid, on in rows}


def check(archive: Archive, run_id: str, results: dict[str, dict[str, Any]]) -> None:
    expected = brute_front(results)
    kept = flags(archive, run_id)
    assert {c for c, on in kept.items() if on} == expected
    ranked = {c for c, on in kept.items() if on is not None}
    assert ranked == {c for c in results if brute_front({c: results[c]})}  # finite, all three
    with archive.session(readonly=True) as s:
        drawn = review_charts.pareto(s, run_id=run_id, sample=7)
    assert drawn is not None and drawn.names == NAMES
    assert drawn.directions == ("max", "min", "min")
    assert {p.candidate_id for p in drawn.front} == expected
    assert drawn.evaluated == len(ranked)
    assert len(drawn.others) <= 7 and not {p.candidate_id for p in drawn.others} & expected
    for p in drawn.front:
        assert p.values == tuple(results[p.candidate_id][n] for n in NAMES)


def test_kept_front_matches_brute_force_as_results_arrive(archive_url: str) -> None:
    rng = random.Random(7)
    with open_archive(archive_url) as archive:
        with archive.session() as s:
            run_id = store.create_run(s, task="t", config={"objectives": OBJECTIVES}).id
        results: dict[str, dict[str, Any]] = {}
        for k in range(120):
            objectives = random_objectives(rng)
            ok = rng.random() < 0.8
            cid = add_result(archive, run_id, k, objectives, ok)
            if ok:
                results[cid] = objectives
            if k % 20 == 19:
                check(archive, run_id, results)
        # A newcomer that dominates the whole front takes it over alone ...
        best = {"accuracy": 1.0, "params": 500.0, "latency_ms": 0.25}
        results[add_result(archive, run_id, 1000, best, True)] = best
        check(archive, run_id, results)
        assert brute_front(results) == {c for c, v in results.items() if v == best}
        # ... an exact tie joins it, and one better on a single axis only joins too.
        for k, point in enumerate([dict(best), {**best, "accuracy": 0.9, "params": 100.0}]):
            results[add_result(archive, run_id, 1001 + k, point, True)] = point
        check(archive, run_id, results)
        assert len(brute_front(results)) == 3
        # rebuild (bulk imports) reaches the same ranks from scratch.
        before = flags(archive, run_id)
        with archive.session() as s:
            s.execute(update(Candidate).where(Candidate.run_id == run_id).values(pareto=None))
            assert pareto.rebuild(s, run_id=run_id) == 3
        assert flags(archive, run_id) == before


def test_unranked_runs_are_scanned_in_full(tmp_path: Any) -> None:
    """A run filled by bulk insert (no ranks yet) and one without declared objectives
    still draw the exact front, by the full scan."""
    rng = random.Random(3)
    with open_archive(f"sqlite:///{tmp_path / 'a.db'}") as archive:
        with archive.session() as s:
            bulk = store.create_run(s, task="t", config={"objectives": OBJECTIVES}).id
            plain = store.create_run(s, task="t").id  # directions from the names
        for run_id in (bulk, plain):
            results: dict[str, dict[str, Any]] = {}
            cands: list[dict[str, Any]] = []
            evals: list[dict[str, Any]] = []
            for k in range(200):
                cid, objectives = new_id(), random_objectives(rng)
                results[cid] = objectives
                cands.append(dict(id=cid, run_id=run_id, task="t", seq=k + 1, code="",
                                  code_hash=f"h{k}", status="ok", score=objectives["accuracy"]))  # fmt: skip
                evals.append(dict(id=new_id(), candidate_id=cid, status="ok", correct=True,
                                  objectives=objectives))  # fmt: skip
            with archive.session() as s:
                s.execute(insert(Candidate), cands)
                s.execute(insert(Evaluation), evals)
                best = max(results, key=lambda c: results[c]["accuracy"])
                store.get_run(s, run_id=run_id).best_candidate_id = best
                if run_id == plain:  # the best's numeric objectives name the axes
                    results[best]["params"] = results[best]["latency_ms"] = 1.0
                    s.execute(update(Evaluation).where(Evaluation.candidate_id == best)
                              .values(objectives=results[best]))  # fmt: skip
                    for v in results.values():
                        v.pop("extra_score")
                    s.execute(update(Evaluation), [{"id": e["id"], "objectives": results[e["candidate_id"]]} for e in evals])  # fmt: skip
            with archive.session(readonly=True) as s:
                drawn = review_charts.pareto(s, run_id=run_id)
            assert drawn is not None and drawn.names == NAMES
            assert {p.candidate_id for p in drawn.front} == brute_front(results)


def test_migration_ranks_existing_runs(archive_url: str) -> None:
    rng = random.Random(11)
    with open_archive(archive_url) as archive:
        with archive.session() as s:
            run_id = store.create_run(s, task="t", config={"objectives": OBJECTIVES}).id
        results = {}
        for k in range(60):
            objectives = random_objectives(rng)
            results[add_result(archive, run_id, k, objectives, True)] = objectives
        kept = flags(archive, run_id)
        cfg = alembic_config(archive_url)
        with archive.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "0001")
    with open_archive(archive_url) as archive:  # opening upgrades, and 0002 ranks the run
        assert flags(archive, run_id) == kept
        with archive.session(readonly=True) as s:  # the downgrade rebuilt no table
            assert s.scalar(select(func.count()).select_from(Evaluation)) == 60
        assert {c for c, on in kept.items() if on} == brute_front(results)


def test_run_objectives_and_orientation() -> None:
    assert front.run_objectives({}) is None
    assert front.run_objectives({"objectives": OBJECTIVES[:1]}) is None
    assert front.run_objectives({"objectives": [{"name": "loss"}, {"name": "acc"}]}) == (
        ("acc", "loss"),
        ("max", "min"),
    )
    assert front.oriented({"a": 2, "b": 3.0}, ("a", "b"), ("max", "min")) == (2.0, -3.0)
    assert front.oriented({"a": 2, "b": math.inf}, ("a", "b"), ("max", "min")) is None
    assert front.oriented({"a": "2", "b": 1}, ("a", "b"), ("max", "min")) is None
    assert front.oriented(None, ("a",), ("max",)) is None
