"""Review queries on a real SQLite archive: filters, paging, charts data, lineage trees."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import update

from daedalus.archive import front, review, review_charts, review_tree, store
from daedalus.archive.db import Archive, open_archive
from daedalus.archive.models import Candidate
from daedalus.archive.review import CandidateFilter as F
from tests.review_data import CPU_FP, Built, build


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    return build(f"sqlite:///{tmp_path_factory.mktemp('rq') / 'a.db'}")


@pytest.fixture
def archive(built: Built) -> Iterator[Archive]:
    with open_archive(built.url) as a:
        yield a


def test_filters_by_status_backend_fingerprint_task_and_search(
    built: Built, archive: Archive
) -> None:
    fp = store.fingerprint_hash(CPU_FP)
    with archive.session(readonly=True) as s:
        everything = review.filter_candidates(s, flt=F(), limit=500)
        assert len(everything) == 12 + 5 + 5
        cuda = review.filter_candidates(s, flt=F(backend="cuda"), limit=500)
        assert cuda and {c.evaluation.backend for c in cuda if c.evaluation} == {"cuda"}
        assert len(cuda) == 4  # steps 3, 6, 9, 12
        on_cpu = review.filter_candidates(
            s, flt=F(fingerprint=fp[:6], run_id=built.kernel_run), limit=500
        )
        assert {c.evaluation.fingerprint_hash for c in on_cpu if c.evaluation} == {fp}
        assert len(on_cpu) == 13 - 4 + 2  # seed + cpu chain steps + the two failures
        failed = review.filter_candidates(s, flt=F(task="swish_scale", status="compile_error"))
        assert [c.id for c in failed] == [built.ids["bad"]]
        found = review.filter_candidates(s, flt=F(search="step 7 fused"))
        assert len(found) == 1 and found[0].description.startswith("step 7")
        by_id = review.filter_candidates(s, flt=F(search=built.ids["wrong"][:8]))
        assert [c.id for c in by_id] == [built.ids["wrong"]]
        in_code = review.filter_candidates(s, flt=F(search="design c"))
        assert [c.id for c in in_code] == [built.ids["arch_c"]]
        assert review.filter_candidates(s, flt=F(backend="npu")) == []
        best = review.best_matching(s, flt=F(run_id=built.kernel_run, backend="cuda"))
        assert best is not None and best.id == built.ids["best"]  # step 12 ran on cuda
        best_cpu = review.best_matching(s, flt=F(run_id=built.kernel_run, backend="cpu"))
        assert best_cpu is not None and best_cpu.score == pytest.approx(2.1)


def test_filter_runs(built: Built, archive: Archive) -> None:
    with archive.session(readonly=True) as s:
        assert [r.id for r in review.filter_runs(s, backend="cuda")] == [built.kernel_run]
        assert {r.id for r in review.filter_runs(s, backend="cpu")} == {
            built.kernel_run,
            built.arch_run,
        }
        assert review.filter_runs(s, fingerprint="ffff") == []
        assert [r.id for r in review.filter_runs(s, search="mqa")] == [built.arch_run]
        assert [r.id for r in review.filter_runs(s, status="finished")] == [built.arch_run]


def test_browse_pages_with_a_cursor_and_bounded_scans(built: Built, archive: Archive) -> None:
    with archive.session(readonly=True) as s:
        seen: list[str] = []
        cursor = None
        while True:
            page = review.browse(s, flt=F(run_id=built.kernel_run), limit=5, cursor=cursor)
            seen += [c.id for c in page.items]
            if page.cursor is None:
                break
            cursor = page.cursor
        seqs = [store.get_candidate(s, candidate_id=i).seq for i in seen]
        assert seqs == sorted(seqs, reverse=True) and len(seqs) == 17 and len(set(seen)) == 17
        # A search that matches one old candidate, with a scan bound of 5 rows per request:
        # partial pages with a cursor, until the match is found.
        cursor, scans, hits = None, 0, []
        while True:
            page = review.browse(
                s, flt=F(search="step 2 fused"), limit=10, cursor=cursor, scan_limit=5
            )
            scans += 1
            hits += page.items
            if page.cursor is None:
                break
            assert page.partial and page.scanned <= 5
            cursor = page.cursor
        assert [c.description[:6] for c in hits] == ["step 2"] and scans > 3
        with pytest.raises(ValueError, match="cursor"):
            review.browse(s, flt=F(), cursor="nonsense")


def test_history_counts_and_best_so_far(built: Built, archive: Archive) -> None:
    with archive.session(readonly=True) as s:
        hist = review_charts.history(s, run_id=built.kernel_run, buckets=4)
    assert hist.ends[-1] == 17 and len(hist.ends) == 4
    assert sum(sum(c.values()) for c in hist.counts) == 17
    totals: dict[str, int] = {}
    for counts in hist.counts:
        for k, v in counts.items():
            totals[k] = totals.get(k, 0) + v
    assert totals == {"ok": 13, "compile_error": 1, "incorrect": 1, "duplicate": 1, "pending": 1}
    known = [b for b in hist.best_so_far if b is not None]
    assert known == sorted(known) and known[-1] == pytest.approx(2.2)
    assert hist.improved[0]


def test_pareto_front_and_directions(built: Built, archive: Archive) -> None:
    with archive.session(readonly=True) as s:
        front = review_charts.pareto(s, run_id=built.arch_run)
        assert review_charts.pareto(s, run_id=built.kernel_run) is None  # one objective
        run = store.get_run(s, run_id=built.arch_run)
    assert front is not None
    assert front.names == ("accuracy", "params") and front.directions == ("max", "min")
    assert {p.candidate_id for p in front.front} == built.front
    assert front.evaluated == 5 and len(front.others) == 2
    run.config = {}
    assert review_charts.objective_directions(
        run, ["latency_ms", "n_params", "accuracy", "loss"]
    ) == {
        "latency_ms": "min",
        "n_params": "min",
        "accuracy": "max",
        "loss": "min",
    }


def test_front_mask_matches_brute_force() -> None:
    import numpy as np

    rng = np.random.default_rng(0)
    for dims in (2, 3, 4):
        for pts in (rng.random((300, dims)), rng.integers(0, 4, (300, dims)).astype(float)):
            pts[5] = pts[6]  # an exact tie on the front must keep both
            mask = front.front_mask(pts)
            brute = [not any((q >= p).all() and (q > p).any() for q in pts) for p in pts]
            assert list(mask) == brute
    # Values whose normalised sums round to the same number: the tie-break keeps it exact.
    # (All three sum to 1.0; an argmax alone would put the dominated first row on the front.)
    tiny = np.array([[1.0, 0.0], [1.0, 1e-300], [0.0, 1.0]])
    assert list(front.front_mask(tiny)) == [False, True, True]
    assert list(front.front_mask(np.zeros((0, 2)))) == []


def test_elites_grid(built: Built, archive: Archive) -> None:
    with archive.session(readonly=True) as s:
        grid = review_charts.elites_grid(store.cell_elites(s, run_id=built.kernel_run))
    assert grid is not None and grid.x_axis == "approach" and grid.y_axis == "code_size"
    assert grid.x_values == ["compiled", "cpp", "eager"] and grid.y_values == ["0", "1"]
    best = grid.cells[("eager", "0")]  # step 12: eager, code_size 0, the run's best
    assert best.id == built.ids["best"]


def test_lineage_trees_fold_chains(built: Built, archive: Archive) -> None:
    with archive.session(readonly=True) as s:
        nodes = review_tree.ancestry(s, leaf_ids=[built.ids["best"]])
        below, more = review_tree.descendants(s, candidate_id=built.ids["seed"], depth=1, limit=3)
    assert len(nodes) == 13  # best + 12 ancestors
    forest = review_tree.build_tree(nodes, keep=[built.ids["best"]])
    assert len(forest) == 1 and forest[0].node.id == built.ids["seed"]
    (only,) = forest[0].children
    assert only.node.id == built.ids["best"] and only.hidden_above == 11
    rows, cut = review_tree.tree_rows(forest)
    assert [r.prefix for r in rows] == ["", "└─ "] and cut == 0
    unfolded = review_tree.build_tree(nodes, fold=False)
    rows, _ = review_tree.tree_rows(unfolded)
    assert len(rows) == 13
    # depth 1 from the seed: 3 of its 4 children loaded, the 4th and step 1's child counted
    step1 = below[0]
    assert [n.seq for n in below] == [2, 14, 15]  # step 1, the typo, the wrong one
    assert more == {built.ids["seed"]: 1, step1.id: 1}


def test_cycle_in_corrupted_data_terminates(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cyc.db'}"
    built = build(url, chain=3)
    with open_archive(url) as archive:
        with archive.session() as s:
            s.execute(
                update(Candidate)
                .where(Candidate.id == built.ids["seed"])
                .values(parent_id=built.ids["best"])
            )
        with archive.session(readonly=True) as s:
            nodes = review_tree.ancestry(s, leaf_ids=[built.ids["best"]])
    assert len(nodes) == 4
    forest = review_tree.build_tree(nodes)
    rows, _ = review_tree.tree_rows(forest)
    assert len(rows) <= 4


def test_hardware(built: Built, archive: Archive) -> None:
    with archive.session(readonly=True) as s:
        rows = review.hardware(s)
        cuda = review.hardware(s, backend="cuda")
    by_hash = {h.fingerprint_hash: h for h in rows}
    cpu = by_hash[store.fingerprint_hash(CPU_FP)]
    assert cpu.backend == "cpu" and cpu.fingerprint == CPU_FP and cpu.evaluations == 9 + 2 + 5
    assert [h.backend for h in cuda] == ["cuda"] and cuda[0].evaluations == 4
