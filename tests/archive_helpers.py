"""Small builders for the archive store tests (test_archive_store, test_archive_evaluations)."""

from __future__ import annotations

import random

from daedalus.archive import store
from daedalus.archive.db import Archive

FP = {"cpu": "Test CPU", "torch": "2.13.0", "threads": "1"}


def new_run(archive: Archive, task: str = "swish") -> str:
    with archive.session() as s:
        return store.create_run(s, task=task, config={"iterations": 10}).id


def new_candidate(archive: Archive, run_id: str, **kw: object) -> str:
    code = str(kw.pop("code", f"class ModelNew: {random.random()}"))
    code_hash = str(kw.pop("code_hash", f"h{random.getrandbits(64):x}"))
    with archive.session() as s:
        return store.add_candidate(s, run_id=run_id, code=code, code_hash=code_hash, **kw).id  # type: ignore[arg-type]


def evaluate(
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
