"""Export and import between real SQLite archives: lossless round trip, idempotent
re-import, merging a run that went on, conflicts, truncated files, CSV."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from daedalus.archive import store
from daedalus.archive.db import Archive, open_archive
from daedalus.archive.export import export_csv, export_jsonl, row_to_data
from daedalus.archive.importer import ImportFileError, ImportReport, import_jsonl
from daedalus.archive.models import Base, Candidate, Evaluation, Lesson, Run
from daedalus.archive.review import CandidateFilter
from tests.review_data import Built, build, kernel_code

MODELS: tuple[type[Base], ...] = (Run, Candidate, Evaluation, Lesson)


def _dump(archive: Archive) -> dict[str, dict[str, dict[str, object]]]:
    """Every row of every table, by id, as exported values."""
    with archive.session(readonly=True) as s:
        return {
            m.__tablename__: {row.id: row_to_data(row) for row in s.scalars(select(m))}  # type: ignore[attr-defined]
            for m in MODELS
        }


def _export(archive: Archive, flt: CandidateFilter | None = None) -> str:
    buf = io.StringIO()
    with archive.session(readonly=True) as s:
        export_jsonl(s, buf, flt=flt)
    return buf.getvalue()


def _import(archive: Archive, text: str) -> ImportReport:
    with archive.session() as s:
        return import_jsonl(s, io.StringIO(text), source="test.jsonl")


@pytest.fixture
def source(tmp_path: Path) -> Iterator[tuple[Archive, Built]]:
    built = build(f"sqlite:///{tmp_path / 'src.db'}")
    archive = open_archive(built.url)
    yield archive, built
    archive.close()


def test_jsonl_round_trip_is_lossless_and_reimport_is_a_noop(
    source: tuple[Archive, Built], tmp_path: Path
) -> None:
    src, built = source
    text = _export(src)
    lines = [json.loads(x) for x in text.splitlines()]
    assert lines[0]["type"] == "header" and lines[-1]["type"] == "end"
    assert lines[-1]["counts"] == {"run": 2, "candidate": 22, "evaluation": 20, "lesson": 1}
    with open_archive(f"sqlite:///{tmp_path / 'dst.db'}") as dst:
        report = _import(dst, text)
        assert dict(report.added) == {"run": 2, "candidate": 22, "evaluation": 20, "lesson": 1}
        assert not report.conflicts and not report.warnings
        assert _dump(dst) == _dump(src)  # ids, lineage, denormalised status/score, best, seq
        again = _import(dst, text)
        assert not again.added and not again.conflicts
        assert dict(again.same) == {"run": 2, "candidate": 22, "evaluation": 20, "lesson": 1}
        assert _dump(dst) == _dump(src)
        with dst.session(readonly=True) as s:
            assert [a.id for a in store.lineage(s, candidate_id=built.ids["best"])][
                -1
            ] == built.ids["seed"]
            assert store.best_candidate(s, run_id=built.kernel_run).id == built.ids["best"]  # type: ignore[union-attr]


def test_merging_a_run_that_went_on_elsewhere(
    source: tuple[Archive, Built], tmp_path: Path
) -> None:
    src, built = source
    early = _export(src, CandidateFilter(run_id=built.kernel_run))
    with open_archive(f"sqlite:///{tmp_path / 'dst.db'}") as dst:
        _import(dst, early)
        # The source run goes on: the pending candidate is evaluated, a new best arrives.
        with src.session() as s:
            store.record_evaluation(
                s, candidate_id=built.ids["pending"], status="ok", correct=True, score=9.0
            )
            new = store.add_candidate(
                s,
                run_id=built.kernel_run,
                code=kernel_code(500),
                code_hash="n",
                parent_id=built.ids["pending"],
            )
            store.add_spend(s, run_id=built.kernel_run, iterations=2)
        report = _import(dst, _export(src, CandidateFilter(run_id=built.kernel_run)))
        assert report.added["candidate"] == 1 and report.added["evaluation"] == 1
        assert report.updated["run"] == 1 and not report.conflicts
        with dst.session(readonly=True) as s:
            run = store.get_run(s, run_id=built.kernel_run)
            assert run.best_candidate_id == built.ids["pending"] and run.best_score == 9.0
            assert run.candidate_count == 18 and run.iterations == 16 + 2
            assert store.get_candidate(s, candidate_id=built.ids["pending"]).status == "ok"
            assert store.get_candidate(s, candidate_id=new.id).parent_id == built.ids["pending"]


def test_conflicts_are_reported_and_skipped(source: tuple[Archive, Built], tmp_path: Path) -> None:
    src, built = source
    text = _export(src, CandidateFilter(run_id=built.kernel_run))
    with open_archive(f"sqlite:///{tmp_path / 'dst.db'}") as dst:
        _import(dst, text)
        # Here, the same run went on differently: another candidate took seq 18.
        with dst.session() as s:
            mine = store.add_candidate(
                s, run_id=built.kernel_run, code="# mine\n", code_hash="mine"
            )
        with src.session() as s:
            theirs = store.add_candidate(
                s, run_id=built.kernel_run, code="# theirs\n", code_hash="theirs"
            )
        # And a candidate id was reused with other code (a tampered or foreign file).
        records = [
            json.loads(x)
            for x in _export(src, CandidateFilter(run_id=built.kernel_run)).splitlines()
        ]
        for r in records:
            if r["type"] == "candidate" and r["data"]["id"] == built.ids["wrong"]:
                r["data"]["code_hash"] = "changed"
        report = _import(dst, "\n".join(json.dumps(r) for r in records))
        kinds = {(c.kind, c.id) for c in report.conflicts}
        assert kinds == {("candidate", theirs.id), ("candidate", built.ids["wrong"])}
        assert any("two machines" in c.reason for c in report.conflicts)
        with dst.session(readonly=True) as s:
            assert store.find_candidate(s, candidate_id=theirs.id) is None
            assert store.get_candidate(s, candidate_id=mine.id).seq == 18


def test_a_run_id_clash_skips_the_whole_run(source: tuple[Archive, Built], tmp_path: Path) -> None:
    src, built = source
    with open_archive(f"sqlite:///{tmp_path / 'dst.db'}") as dst:
        with dst.session() as s:
            store.create_run(s, task="other_task", run_id=built.arch_run)
        report = _import(dst, _export(src, CandidateFilter(run_id=built.arch_run)))
        assert [c.kind for c in report.conflicts] == ["run"]
        assert report.skipped["candidate"] == 5 and report.skipped["evaluation"] == 5
        assert not report.added


def test_truncated_or_foreign_files_import_nothing(
    source: tuple[Archive, Built], tmp_path: Path
) -> None:
    src, _ = source
    text = _export(src)
    with open_archive(f"sqlite:///{tmp_path / 'dst.db'}") as dst:
        cut = "\n".join(text.splitlines()[:-5])
        with pytest.raises(ImportFileError, match="cut short"):
            _import(dst, cut)
        with pytest.raises(ImportFileError, match="header"):
            _import(dst, '{"type": "run", "data": {}}\n')
        with pytest.raises(ImportFileError, match="line 1"):
            _import(dst, "not json\n")
        future = text.replace('"version":1', '"version":99', 1)
        with pytest.raises(ImportFileError, match="upgrade"):
            _import(dst, future)
        missing = "\n".join(x for x in text.splitlines() if '"lesson"' not in x[:20])
        with pytest.raises(ImportFileError, match="promises"):
            _import(dst, missing)
        with dst.session(readonly=True) as s:
            assert s.scalars(select(Run)).first() is None


def test_filtered_export_keeps_what_it_can_and_says_what_it_dropped(
    source: tuple[Archive, Built], tmp_path: Path
) -> None:
    src, built = source
    text = _export(src, CandidateFilter(run_id=built.kernel_run, backend="cuda"))
    with open_archive(f"sqlite:///{tmp_path / 'dst.db'}") as dst:
        report = _import(dst, text)
        assert report.added["candidate"] == 4
        assert sum("link was dropped" in w for w in report.warnings) == 4  # parents not exported
        with dst.session(readonly=True) as s:
            assert store.best_candidate(s, run_id=built.kernel_run).id == built.ids["best"]  # type: ignore[union-attr]


def test_csv_export(source: tuple[Archive, Built]) -> None:
    src, built = source
    buf = io.StringIO()
    with src.session(readonly=True) as s:
        rows = export_csv(s, buf, flt=CandidateFilter(task="mqar"))
    table = list(csv.DictReader(io.StringIO(buf.getvalue())))
    assert rows == len(table) == 5
    by_id = {r["id"]: r for r in table}
    a = by_id[built.ids["arch_a"]]
    assert float(a["objective.accuracy"]) == 0.9 and float(a["objective.params"]) == 5000.0
    assert a["status"] == "ok" and a["backend"] == "cpu" and float(a["metric.train_s"]) == 1.5
    assert json.loads(a["features"]) == {} and "code" not in a
    with src.session(readonly=True) as s:
        for r in table:
            c = store.get_candidate(s, candidate_id=r["id"])
            assert (int(r["seq"]), r["run_id"], float(r["score"])) == (c.seq, c.run_id, c.score)
