"""Evaluation throughput: the Ray executor with 1, 2 and 4 workers against the local executor.

Everything runs in one go inside a loopback-only network namespace (the script re-executes
itself under ``unshare -n -p``), where it starts a one-node Ray cluster on 127.0.0.1 with
``daedalus worker start --head`` (token auth, no usage stats, no dashboard). For each
executor and worker count it evaluates the same small swish_scale candidate N times
through the run's own ``EvaluationPool`` (K in flight) and reports:

* **evals/min**: N over the wall time, once the executor is warm (start-up is its own column);
* **eval s**: the mean evaluation time measured inside the evaluator (the same work either way);
* **overhead ms**: per evaluation, the time the run waited beyond the evaluation itself
  (median): Ray's scheduling, serialisation and the actor round trip, or the local pool's;
* a no-op actor round trip, Ray's floor for one dispatch.

On this 2-core machine more workers than cores cannot add throughput; what the table shows
is what Ray costs per evaluation and that the executors do the same work.

    python benchmarks/ray_throughput.py [--evaluations 24] [--workers 1,2,4]
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from daedalus.agent.action import EvaluationPool
from daedalus.agent.executors import Executor, LocalExecutor, RayExecutor
from daedalus.sandbox import Evaluator
from daedalus.sandbox.result import Limits
from daedalus.tasks import load_task
from daedalus.tools.builtin.seed import reference_as_candidate

PORT = 6391
INSIDE = "DAEDALUS_BENCH_NAMESPACE"
OVERRIDES = {"dim": 4096, "batch_size": 64}


def _reexec_in_namespace() -> int:
    env = {**os.environ, INSIDE: "1", "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16),
           "RAY_USAGE_STATS_ENABLED": "0", "RAY_TMPDIR": f"/tmp/drb-{secrets.token_hex(4)}"}  # fmt: skip
    cmd = ["unshare", "-n", "-p", "-f", "--mount-proc", sys.executable, *sys.argv]
    try:
        return subprocess.run(cmd, env=env, check=False).returncode
    finally:
        shutil.rmtree(env["RAY_TMPDIR"], ignore_errors=True)


def _start_head(cpus: int) -> None:
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    Path(os.environ["RAY_TMPDIR"]).mkdir(parents=True, exist_ok=True)
    daedalus = [sys.executable, "-m", "daedalus.agent.cli"]
    done = subprocess.run(
        [*daedalus, "worker", "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(PORT),
         "--num-cpus", str(cpus)], capture_output=True, text=True, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"the Ray head did not start:\n{done.stdout}\n{done.stderr}")


def _measure(executor: Executor, task: Any, code: str, *, workers: int, evaluations: int) -> dict[str, float]:
    waited: dict[str, float] = {}

    def timed(t: Any, c: str, known: frozenset[str]) -> Any:
        started = time.perf_counter()
        result = executor.evaluate(t, c, known)
        result.artifacts["bench_wait_s"] = time.perf_counter() - started
        return result

    pool = EvaluationPool(timed, workers=workers)
    # Warm every worker once (first-use caches, the task module) before the clock starts.
    for i in range(workers):
        pool.submit(f"warm{i}", task, code, frozenset())
    while len(pool):
        pool.harvest(block=True, timeout=5)
    started = time.perf_counter()
    submitted = 0
    inner: list[float] = []
    statuses: set[str] = set()
    while len(inner) < evaluations:
        while submitted < evaluations and len(pool) < workers:
            pool.submit(f"c{submitted}", task, code, frozenset())
            submitted += 1
        for item in pool.harvest(block=True, timeout=5):
            inner.append(item.result.duration_s)
            waited[item.candidate_id] = float(item.result.artifacts["bench_wait_s"]) - item.result.duration_s
            statuses.add(str(item.result.status))
    wall = time.perf_counter() - started
    pool.shutdown()
    if statuses != {"ok"}:
        raise SystemExit(f"evaluations did not all succeed: {statuses}")
    return {
        "wall_s": wall,
        "per_min": evaluations / wall * 60,
        "eval_s": statistics.mean(inner),
        "overhead_ms": statistics.median(waited.values()) * 1e3,
    }


def _noop_round_trip(executor: RayExecutor, calls: int = 200) -> float:
    import ray

    actor = executor._take()
    samples = []
    for _ in range(calls):
        started = time.perf_counter()
        ray.get(actor.ready.remote())
        samples.append(time.perf_counter() - started)
    executor._idle.put(actor)
    return statistics.median(samples) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--evaluations", type=int, default=24)
    parser.add_argument("--workers", default="1,2,4")
    args = parser.parse_args()
    if os.environ.get(INSIDE) != "1":
        raise SystemExit(_reexec_in_namespace())
    counts = [int(k) for k in args.workers.split(",")]
    _start_head(max(counts))
    task = load_task("swish_scale", OVERRIDES)
    code = reference_as_candidate(task.source)
    # A short timing budget keeps each evaluation to a few seconds, so dispatch costs show.
    limits = Limits(timing_budget_s=1.0)
    rows: list[tuple[str, int, float, dict[str, float]]] = []
    noop = None
    for workers in counts:
        for name in ("local", "ray"):
            t0 = time.perf_counter()
            executor: Executor
            if name == "local":
                executor = LocalExecutor(Evaluator(sandbox="process", backend="cpu", limits=limits))
            else:
                executor = RayExecutor(address=f"127.0.0.1:{PORT}", sandbox="process", backend="cpu",
                                       limits=limits, workers=workers)  # fmt: skip
            try:
                # Start-up ends when the first evaluation can begin (every worker warm).
                stats = _measure(executor, task, code, workers=workers, evaluations=args.evaluations)
                startup = time.perf_counter() - t0 - stats["wall_s"]
                if isinstance(executor, RayExecutor) and noop is None:
                    noop = _noop_round_trip(executor)
            finally:
                executor.close()
            rows.append((name, workers, startup, stats))
            print(f"  {name} x{workers}: {stats['per_min']:.1f} evals/min", file=sys.stderr, flush=True)
    load = os.getloadavg()
    print(f"\nswish_scale[batch_size=64,dim=4096], {args.evaluations} evaluations per row, "
          f"load average at the end {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}\n")  # fmt: skip
    print("| executor | workers | evals/min | eval s (in evaluator) | overhead ms/eval (median) | start-up + warm-up s |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, workers, startup, s in rows:
        print(f"| {name} | {workers} | {s['per_min']:.1f} | {s['eval_s']:.3f} | {s['overhead_ms']:.1f} | {startup:.1f} |")
    if noop is not None:
        print(f"\nRay no-op actor round trip (median of 200): {noop:.2f} ms")


if __name__ == "__main__":
    main()
