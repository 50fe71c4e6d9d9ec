"""Review web app speed: every page on an archive of 100,000 candidates.

Fills a fresh SQLite archive (through the real migrations) by bulk insert with one kernel
run of N candidates (deep lineage, 2-D MAP-Elites features, one objective) and one
architecture run of N candidates with three objectives (so the run page draws a Pareto
front; bulk insert skips record_evaluation, so the fill ranks the front with
``pareto.rebuild`` as recording would have), plus a few small runs and lessons. Then
requests every page and JSON endpoint of ``create_app`` through Starlette's TestClient
(routing, queries, Jinja rendering and middleware included; no network) and prints a
markdown table of medians.

    .venv/bin/python benchmarks/web_pages.py [--candidates 100000] [--repeats 15]

Goal (issue 6): every page renders in under 300 ms (median).
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy import insert, update

from daedalus.archive import pareto, store
from daedalus.archive.db import Archive, open_archive
from daedalus.archive.models import EVALUATION_STATUSES, Candidate, Evaluation, Lesson, Run, new_id

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
APPROACHES = ("eager", "compiled", "cpp", "triton")


def fill_run(
    archive: Archive, *, task: str, n: int, seed: int, multi_objective: bool, kind: str = "kernel"
) -> str:
    """One run of ``n`` candidates: 60% ok, the rest spread over failure statuses; each
    parent is one of the 50 newest candidates, so lineages grow deep like a real run's."""
    rng = random.Random(seed)
    config: dict[str, Any] = {"iterations": n, "budget_usd": 5.0}
    if multi_objective:
        config["objectives"] = [
            {"name": "accuracy", "direction": "max"},
            {"name": "params", "direction": "min"},
            {"name": "latency_ms", "direction": "min"},
        ]
    with archive.session() as s:
        run_id = store.create_run(s, task=task, kind=kind, config=config, model="openai/bench").id
    failures = [st for st in EVALUATION_STATUSES if st != "ok"]
    ids: list[str] = []
    best = (-1.0, "")
    chunk = 10_000
    for start in range(0, n, chunk):
        cands: list[dict[str, Any]] = []
        evals: list[dict[str, Any]] = []
        for i in range(start, min(n, start + chunk)):
            cid = new_id()
            status = "ok" if i == 0 or rng.random() < 0.6 else rng.choice(failures)
            # Scores drift upwards with noise, like an improving search.
            score = rng.lognormvariate(0.0, 0.3) * (1 + i / n) if status == "ok" else 0.0
            if status == "ok" and score > best[0]:
                best = (score, cid)
            features = {"approach": APPROACHES[i % 4], "code_size": rng.randrange(8)}
            objectives: dict[str, float] = {"speedup": score}
            if multi_objective and status == "ok":
                params = rng.randrange(10_000, 2_000_000)
                objectives = {
                    "accuracy": min(1.0, 0.5 + 0.1 * score * rng.random() + params / 8e6),
                    "params": float(params),
                    "latency_ms": rng.uniform(0.2, 5.0),
                }
            cands.append(
                {
                    "id": cid,
                    "run_id": run_id,
                    "task": task,
                    "seq": i + 1,
                    "code": CODE.format(i=i, scale=rng.random()),
                    "code_hash": f"{rng.getrandbits(128):032x}",
                    "parent_id": rng.choice(ids[-50:]) if ids else None,
                    "island": i % 4,
                    "generation": i // 50,
                    "iteration": i,
                    "mode": "seed" if i == 0 else "improve",
                    "proposer": "builtin",
                    "description": f"transformation {i % 17} applied to the parent",
                    "features": features,
                    "cell": "|".join(f"{k}={features[k]}" for k in sorted(features)),
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
                    "objectives": objectives if status == "ok" else {},
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
        # What recording each result one by one keeps up (store.record_evaluation).
        pareto.rebuild(s, run_id=run_id)
        s.execute(
            update(Run)
            .where(Run.id == run_id)
            .values(candidate_count=n, iterations=n, best_score=best[0], best_candidate_id=best[1])
        )
        s.execute(
            insert(Lesson),
            [
                {
                    "id": new_id(),
                    "run_id": run_id,
                    "task": task,
                    "iteration": k * 100,
                    "text": f"lesson {k}: fusing the chain helps; <b>markup</b> stays text",
                }
                for k in range(30)
            ],
        )
    return run_id


def fill(archive: Archive, *, n: int, seed: int) -> dict[str, str]:
    for k in range(8):
        fill_run(archive, task=f"small_task_{k}", n=20, seed=seed + k, multi_objective=False)
    kernel = fill_run(archive, task="bench_kernel", n=n, seed=seed, multi_objective=False)
    arch = fill_run(
        archive, task="bench_arch", n=n, seed=seed + 99, multi_objective=True, kind="architecture"
    )
    return {"kernel": kernel, "arch": arch}


def main() -> None:
    from fastapi.testclient import TestClient

    from daedalus.archive.web import create_app

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--db", help="reuse (or create) this SQLite file instead of a temp one")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(args.db) if args.db else Path(tmp) / "bench.db"
        fresh = not path.exists()
        archive = open_archive(f"sqlite:///{path}")
        t0 = time.perf_counter()
        if fresh:
            fill(archive, n=args.candidates, seed=args.seed)
        fill_s = time.perf_counter() - t0
        with archive.session(readonly=True) as s:
            kernel = store.latest_run(s, task="bench_kernel")
            arch = store.latest_run(s, task="bench_arch")
            assert kernel is not None and arch is not None, "--db holds no benchmark runs"
            best = store.best_candidate(s, run_id=kernel.id)
            assert best is not None
            failed = store.recent_failures(s, run_id=kernel.id, limit=1)[0]
            total = s.query(Candidate).count()
        client = TestClient(create_app(archive), base_url="http://127.0.0.1")
        with archive.session(readonly=True) as s:
            small = store.latest_run(s, task="small_task_0")
            assert small is not None
            small_best = store.best_candidate(s, run_id=small.id)
            assert small_best is not None
        # One-time process costs (imports, template compilation) are paid on a small run
        # first, so "cold" below is the first request for that page's own data.
        warm = ("/", f"/runs/{small.id}", f"/runs/{small.id}/panels/pareto", "/hardware")
        for url in (*warm, f"/candidates/{small_best.id}"):
            client.get(url)
        k, a = kernel.id, arch.id
        pages = [
            ("runs overview", "/"),
            (
                "runs overview, filtered (backend + fingerprint)",
                "/?backend=cpu&fingerprint=benchfp",
            ),
            ("run page, kernel run (panels load separately)", f"/runs/{k}"),
            ("run page, 3-objective run", f"/runs/{a}"),
            ("panel: progress (best score, statuses)", f"/runs/{k}/panels/progress"),
            ("panel: MAP-Elites grid", f"/runs/{k}/panels/grid"),
            ("panel: lineage of the top 5", f"/runs/{k}/panels/lineage"),
            ("panel: Pareto front (60k correct, 3 objectives)", f"/runs/{a}/panels/pareto"),
            ("run candidates, page 1", f"/runs/{k}/candidates"),
            ("run candidates, status=ok by score", f"/runs/{k}/candidates?status=ok&order=score"),
            ("candidate search, no match (bounded scan)", "/candidates?q=no-such-text-anywhere"),
            ("candidate search by task + status", "/candidates?task=bench_kernel&status=incorrect"),
            ("candidate page (best, with diff)", f"/candidates/{best.id}"),
            ("candidate page (failure, logs)", f"/candidates/{failed.id}"),
            ("hardware page", "/hardware"),
            ("JSON: runs", "/api/runs"),
            ("JSON: run summary (live poll)", f"/api/runs/{k}"),
            ("JSON: run history + Pareto", f"/api/runs/{a}/history"),
            ("JSON: candidates", f"/api/runs/{k}/candidates?limit=100"),
            ("JSON: candidate", f"/api/candidates/{best.id}"),
        ]
        rows = []
        for name, url in pages:
            walls, cpus = [], []
            for _ in range(args.repeats + 1):
                t0, c0 = time.perf_counter(), time.process_time()
                response = client.get(url)
                walls.append((time.perf_counter() - t0) * 1000)
                cpus.append((time.process_time() - c0) * 1000)
                assert response.status_code == 200, (url, response.status_code, response.text[:300])
            rows.append(
                (
                    name,
                    walls[0],
                    statistics.median(walls[1:]),
                    statistics.median(cpus[1:]),
                    cpus[0],
                    len(response.content),
                )
            )
        archive.close()

    print(
        f"Review web app: {total:,} candidates + evaluations in the archive (SQLite, WAL; two "
        f"runs of {args.candidates:,} and 8 small runs). In-process TestClient; 'cold' is the "
        f"first request for the page (empty panel cache), then the median of {args.repeats}. "
        "CPU ms is this process's CPU time (what the page costs on an idle machine); wall ms "
        f"includes waiting for a busy CPU. Fill (bulk insert): {fill_s:.1f} s.\n"
    )
    print("| page | cold wall ms | cold CPU ms | median wall ms | median CPU ms | KiB | < 300 ms |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for name, cold, median, cpu, cold_cpu, size in rows:
        verdict = "yes" if max(cold_cpu, cpu) < 300 else "NO"
        print(
            f"| {name} | {cold:.1f} | {cold_cpu:.1f} | {median:.1f} | {cpu:.1f} | "
            f"{size / 1024:.0f} | {verdict} |"
        )


if __name__ == "__main__":
    main()
