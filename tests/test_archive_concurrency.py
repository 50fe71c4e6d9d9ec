"""Concurrent writers on one archive (SQLite, then PostgreSQL): several processes, several
threads each.

4 processes x 2 threads each write 200 candidates (100 on PostgreSQL) with their evaluations (and spend) into
one run of a *fresh* archive (an empty file, an empty database), all starting at the same
moment, so they also race to create the schema and the run. Nothing may be lost or duplicated and no write may fail
with "database is locked".
"""

from __future__ import annotations

import random
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

from sqlalchemy import func, select

from daedalus.archive import store
from daedalus.archive.db import open_archive
from daedalus.archive.models import Candidate, Evaluation, Run

PROCESSES = 4
THREADS = 2
PER_THREAD = 200
# PostgreSQL's per-row locks make each write cost a round trip: half as many keep it quick.
PER_THREAD_POSTGRES = 100
RUN_ID = "c0ffee000001"


def _score(proc: int, thread: int, i: int) -> float:
    return random.Random(f"{proc}-{thread}-{i}").uniform(0.5, 3.0)


def _thread_work(
    url: str, proc: int, thread: int, out: list[str], errors: list[BaseException]
) -> None:
    per_thread = _per_thread(url)
    try:
        archive = open_archive(url)
        rng = random.Random(proc * 100 + thread)
        mine: list[str] = []
        for i in range(per_thread):
            ok = i % 3 != 0
            with archive.session() as s:
                cand = store.add_candidate(
                    s,
                    run_id=RUN_ID,
                    code=f"# p{proc} t{thread} i{i}",
                    code_hash=f"{proc}-{thread}-{i}",
                    parent_id=rng.choice(mine) if mine else None,
                    island=thread,
                    iteration=i,
                )
                store.record_evaluation(
                    s,
                    candidate_id=cand.id,
                    status="ok" if ok else "incorrect",
                    correct=ok,
                    score=_score(proc, thread, i) if ok else 0.0,
                    fingerprint={"proc": str(proc)},
                )
                store.add_spend(s, run_id=RUN_ID, iterations=1, cost_usd=0.001, device_seconds=0.5)
                mine.append(cand.id)
            if i % 10 == 0:
                # A retried write (e.g. after a crash) must be a no-op...
                with archive.session() as s:
                    again = store.record_evaluation(
                        s, candidate_id=cand.id, status="ok", score=99.0
                    )
                    assert not again.created
                # ...and readers must get through while others write.
                with archive.session(readonly=True) as s:
                    store.top_candidates(s, run_id=RUN_ID, limit=5)
        out.extend(mine)
        archive.close()
    except BaseException as exc:
        errors.append(exc)


def _per_thread(url: str) -> int:
    return PER_THREAD_POSTGRES if url.startswith("postgresql") else PER_THREAD


def _process_work(url: str, proc: int, start_at: float) -> list[str]:
    time.sleep(max(0.0, start_at - time.time()))
    archive = open_archive(url)  # all processes migrate the fresh file at once
    with archive.session() as s:
        # All processes race to create the same run: exactly one insert wins.
        assert store.ensure_run(s, task="race", run_id=RUN_ID).id == RUN_ID
    archive.close()
    out: list[str] = []
    errors: list[BaseException] = []
    threads = [
        threading.Thread(target=_thread_work, args=(url, proc, t, out, errors))
        for t in range(THREADS)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return out


def test_many_processes_and_threads_write_without_loss(archive_url: str) -> None:
    url = archive_url
    start_at = time.time() + 4.0  # after every spawned interpreter has imported SQLAlchemy
    with ProcessPoolExecutor(PROCESSES, mp_context=get_context("spawn")) as pool:
        futures = [pool.submit(_process_work, url, p, start_at) for p in range(PROCESSES)]
        written = [cid for f in futures for cid in f.result(timeout=240)]

    per_thread = _per_thread(url)
    total = PROCESSES * THREADS * per_thread
    assert len(written) == len(set(written)) == total
    with open_archive(url) as archive, archive.session(readonly=True) as s:
        assert s.scalar(select(func.count()).select_from(Run)) == 1
        stored = set(s.scalars(select(Candidate.id)))
        assert stored == set(written)
        seqs = sorted(s.scalars(select(Candidate.seq)))
        assert seqs == list(range(1, total + 1))
        assert s.scalar(select(func.count()).select_from(Evaluation)) == total
        assert s.scalar(select(func.count(func.distinct(Evaluation.candidate_id)))) == total
        run = s.get(Run, RUN_ID)
        assert run is not None
        assert (run.candidate_count, run.iterations) == (total, total)
        assert abs(run.cost_usd - total * 0.001) < 1e-6
        assert abs(run.device_seconds - total * 0.5) < 1e-6
        best = max(
            _score(p, t, i)
            for p in range(PROCESSES)
            for t in range(THREADS)
            for i in range(per_thread)
            if i % 3
        )
        assert run.best_score == best
        assert run.best_candidate_id is not None
        assert store.get_candidate(s, candidate_id=run.best_candidate_id).score == best
        assert store.count_by_status(s, run_id=RUN_ID) == {
            "ok": PROCESSES * THREADS * sum(1 for i in range(per_thread) if i % 3),
            "incorrect": PROCESSES * THREADS * sum(1 for i in range(per_thread) if i % 3 == 0),
        }
