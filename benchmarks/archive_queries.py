"""Archive query speed on a large archive: parent selection and top-k on 100,000 candidates.

Fills a fresh SQLite archive (through the real migrations) with N candidates and their
evaluations by bulk insert, then times the planner's and reviewer's hot queries through
the store API, each repeat in its own read transaction, and prints a markdown table.

    .venv/bin/python benchmarks/archive_queries.py [--candidates 100000] [--repeats 200]

Goals (issue 3): parent selection < 10 ms, top-20 < 50 ms (median).
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import insert, update
from sqlalchemy.orm import Session

from daedalus.archive import store
from daedalus.archive.db import Archive, open_archive
from daedalus.archive.models import EVALUATION_STATUSES, Candidate, Evaluation, Run, new_id

TASK = "bench_task"
CODE = '''import torch
import torch.nn as nn


class ModelNew(nn.Module):
    """Candidate {i}: a fused elementwise chain."""

    def __init__(self) -> None:
        super().__init__()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.sigmoid(x).mul_(x)
        return y.mul_({scale})
'''


def fill(archive: Archive, *, n: int, islands: int, cells: int, seed: int) -> str:
    """A run with ``n`` candidates: 60% ok, the rest spread over failure statuses."""
    rng = random.Random(seed)
    with archive.session() as s:
        run_id = store.create_run(s, task=TASK, proposer="builtin").id
    failures = [st for st in EVALUATION_STATUSES if st != "ok"]
    chunk = 10_000
    ids: list[str] = []
    best = (-1.0, "")
    for start in range(0, n, chunk):
        cands: list[dict[str, Any]] = []
        evals: list[dict[str, Any]] = []
        for i in range(start, min(n, start + chunk)):
            cid = new_id()
            status = "ok" if rng.random() < 0.6 else rng.choice(failures)
            score = rng.lognormvariate(0.0, 0.3) if status == "ok" else 0.0
            if status == "ok" and score > best[0]:
                best = (score, cid)
            cands.append(
                {
                    "id": cid,
                    "run_id": run_id,
                    "task": TASK,
                    "seq": i + 1,
                    "code": CODE.format(i=i, scale=rng.random()),
                    "code_hash": f"{rng.getrandbits(128):032x}",
                    "functional_hash": f"{rng.getrandbits(64):016x}",
                    "parent_id": rng.choice(ids) if ids else None,
                    "island": i % islands,
                    "generation": i // 1000,
                    "iteration": i,
                    "mode": "improve",
                    "features": {"approach": i % cells, "code_size": 400},
                    "cell": f"{i % cells}",
                    "status": status,
                    "score": score,
                }
            )
            evals.append(
                {
                    "id": new_id(),
                    "candidate_id": cid,
                    "status": status,
                    "correct": status == "ok",
                    "score": score,
                    "speedup": score if status == "ok" else None,
                    "stage": "timing" if status == "ok" else "check",
                    "metrics": {"ref_ms": 1.0, "cand_ms": 1.0 / score if score else 0.0},
                    "logs": "" if status == "ok" else "Traceback (most recent call last): ...",
                    "fingerprint": {"cpu": "bench", "torch": "2.13.0"},
                    "fingerprint_hash": "benchfp00000",
                    "backend": "cpu",
                    "sandbox": "process",
                }
            )
            ids.append(cid)
        with archive.session() as s:
            s.execute(insert(Candidate), cands)
            s.execute(insert(Evaluation), evals)
    with archive.session() as s:
        s.execute(
            update(Run)
            .where(Run.id == run_id)
            .values(candidate_count=n, best_score=best[0], best_candidate_id=best[1])
        )
    return run_id


def timed(archive: Archive, fn: Callable[[Session], object], repeats: int) -> list[float]:
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        with archive.session(readonly=True) as s:
            fn(s)
        samples.append((time.perf_counter() - t0) * 1000)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--islands", type=int, default=4)
    parser.add_argument("--cells", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        archive = open_archive(f"sqlite:///{Path(tmp) / 'bench.db'}")
        t0 = time.perf_counter()
        run_id = fill(
            archive, n=args.candidates, islands=args.islands, cells=args.cells, seed=args.seed
        )
        fill_s = time.perf_counter() - t0
        with archive.session(readonly=True) as s:
            some_id = store.top_candidates(s, run_id=run_id, limit=1)[0].id
        rng = random.Random(args.seed)

        cases: list[tuple[str, Callable[[Session], object], str]] = [
            (
                "sample_parent (tournament 3 of top-10, whole run)",
                lambda s: store.sample_parent(s, run_id=run_id, rng=rng),
                "< 10 ms",
            ),
            (
                "sample_parent (tournament 3 of top-10, one island)",
                lambda s: store.sample_parent(
                    s, run_id=run_id, rng=rng, island=rng.randrange(args.islands)
                ),
                "< 10 ms",
            ),
            (
                "random_candidate (ok, by random seq)",
                lambda s: store.random_candidate(s, run_id=run_id, rng=rng),
                "< 10 ms",
            ),
            (
                "top_candidates (run, top-20)",
                lambda s: store.top_candidates(s, run_id=run_id, limit=20),
                "< 50 ms",
            ),
            (
                "top_candidates (task across runs, top-20)",
                lambda s: store.top_candidates(s, task=TASK, limit=20),
                "< 50 ms",
            ),
            ("best_candidate (run)", lambda s: store.best_candidate(s, run_id=run_id), ""),
            ("recent_failures (5)", lambda s: store.recent_failures(s, run_id=run_id), ""),
            (
                f"cell_elites ({args.cells} cells)",
                lambda s: store.cell_elites(s, run_id=run_id),
                "",
            ),
            ("count_by_status", lambda s: store.count_by_status(s, run_id=run_id), ""),
            (
                "pending_candidates (none pending)",
                lambda s: store.pending_candidates(s, run_id=run_id),
                "",
            ),
            (
                "get_candidate (8-char prefix)",
                lambda s: store.get_candidate(s, candidate_id=some_id[:8]),
                "",
            ),
            ("lineage (ancestors chain)", lambda s: store.lineage(s, candidate_id=some_id), ""),
        ]
        rows = []
        for name, fn, goal in cases:
            samples = timed(archive, fn, args.repeats)
            median = statistics.median(samples)
            p95 = sorted(samples)[int(0.95 * (len(samples) - 1))]
            verdict = ""
            if goal:
                verdict = "yes" if median < float(goal.split()[1]) else "NO"
            rows.append((name, median, p95, goal, verdict))
        archive.close()

    print(
        f"Archive queries: {args.candidates:,} candidates + evaluations (SQLite, WAL), "
        f"{args.islands} islands, {args.cells} cells, median of {args.repeats} repeats, "
        f"each in its own read transaction. Fill (bulk insert): {fill_s:.1f} s.\n"
    )
    print("| query | median ms | p95 ms | goal | met |")
    print("|---|---:|---:|---|---|")
    for name, median, p95, goal, verdict in rows:
        print(f"| {name} | {median:.2f} | {p95:.2f} | {goal} | {verdict} |")


if __name__ == "__main__":
    main()
