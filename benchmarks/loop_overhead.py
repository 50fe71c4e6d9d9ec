"""The discovery loop's own overhead per iteration, excluding proposal and evaluation time.

Drives the real LangGraph graph, SQLite checkpointer, archive writes, planner and vetting
with an instant proposer and an instant evaluator, so what is left is the loop itself.
Goal: under 50 ms per iteration.

    python benchmarks/loop_overhead.py [--iterations 300] [--workers 2]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from daedalus.agent.config import RunConfig
from daedalus.agent.graph import build_graph, thread_config
from daedalus.agent.launch import checkpointer, create_run
from daedalus.agent.runtime import RunContext
from daedalus.archive.db import open_archive
from daedalus.sandbox.result import EvaluationResult, Status
from daedalus.tasks import load_task
from daedalus.tools.proposer import Brief, Proposal


class InstantProposer:
    """Returns the parent with one constant changed: a new program, at no cost."""

    name = "builtin"

    def __init__(self) -> None:
        self.n = 0

    def propose(self, brief: Brief) -> Proposal:
        self.n += 1
        return Proposal(code=brief.parent.code + f"\n_VARIANT = {self.n}\n", description=f"variant {self.n}")

    def observe(self, proposal: Proposal, *, parent_score: float, score: float) -> None:
        return None


def instant_evaluate(task: Any, code: str, known: frozenset[str]) -> EvaluationResult:
    speedup = random.uniform(0.8, 1.5)
    return EvaluationResult(status=Status.OK, correct=True, speedup=speedup, score=speedup,
                            metrics={"speedup": speedup}, duration_s=0.0)


def measure(iterations: int, workers: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)
        archive = open_archive(f"sqlite:///{Path(tmp) / 'archive.db'}")
        task = load_task("swish_scale")
        config = RunConfig(task="swish_scale", iterations=iterations, workers=workers)
        run_id = create_run(archive, task, config)
        times: list[float] = []
        last = [time.perf_counter()]

        def on_event(kind: str, data: dict[str, Any]) -> None:
            if kind == "proposed":
                now = time.perf_counter()
                times.append(now - last[0])
                last[0] = now

        ctx = RunContext(archive=archive, task=task, config=config, run_id=run_id,
                         proposers={"builtin:builtin": InstantProposer()}, evaluate=instant_evaluate,
                         backend="cpu", sandbox="none", on_event=on_event)
        ctx.resubmit_pending()
        with checkpointer() as saver:
            graph = build_graph(ctx, checkpointer=saver)
            start, cpu_start = time.perf_counter(), time.process_time()
            graph.invoke({"run_id": run_id}, thread_config(run_id))
            total, cpu = time.perf_counter() - start, time.process_time() - cpu_start
        ctx.pool.shutdown()
        archive.close()
    steady = times[5:] or times
    return {"iterations": float(iterations), "total_s": total, "mean_ms": 1000 * total / iterations,
            "median_ms": 1000 * statistics.median(steady), "p95_ms": 1000 * sorted(steady)[int(0.95 * (len(steady) - 1))],
            "cpu_ms": 1000 * cpu / iterations}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    r = measure(args.iterations, args.workers)
    print("| iterations | workers | mean wall ms/iteration | median | p95 | CPU ms/iteration | goal |")
    print("|---|---|---|---|---|---|---|")
    print(f"| {int(r['iterations'])} | {args.workers} | {r['mean_ms']:.1f} | {r['median_ms']:.1f} "
          f"| {r['p95_ms']:.1f} | {r['cpu_ms']:.1f} | < 50 ms |")
    print(f"\nload average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
