"""Per-candidate overhead of the Docker sandbox against the process sandbox, side by side.

Both run the same fork server and the same request; interleaved so machine load hits
both equally. Three ways to pay for a candidate:

* **process**: the process sandbox's warm fork server (the baseline).
* **docker, warm pool**: a started, ready single-use container is waiting when the
  candidate arrives, as it is when the agent spends a few seconds thinking between
  candidates; the round trip includes attaching, the request, the fork inside the
  container and the answer (removal happens in the background).
* **docker, back to back**: candidates arrive with no pause, so each waits for a
  container start in flight (torch import inside the container): the throughput limit.

It also times one cold container start (create to ready) and a full evaluation of a
trivial candidate in each sandbox. Goal (issue 4): under 0.5 s added per candidate with
the warm pool.

    python benchmarks/docker_overhead.py [--candidates 10] [--pool 2]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from daedalus.sandbox import Evaluator, Limits
from daedalus.sandbox.docker import DockerSandbox
from daedalus.sandbox.docker_host import engine_available
from daedalus.sandbox.process import ProcessSandbox
from daedalus.tasks import load_task

ROOT = Path(__file__).resolve().parent.parent
TASK = ROOT / "tests" / "candidates" / "task_swish.py"
CANDIDATE = ROOT / "tests" / "candidates" / "good_fused.py"


def _ms(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered) * 1e3, ordered[int(0.9 * (len(ordered) - 1))] * 1e3


def _probe(box: ProcessSandbox | DockerSandbox, limits: Limits) -> float:
    start = time.perf_counter()
    run = box.run({"probe": True, "limits": limits.model_dump()}, limits)
    elapsed = time.perf_counter() - start
    assert run.result == {"probe": True}, run
    return elapsed


def _full(sandbox: str, n: int, pool: int) -> list[float]:
    task = load_task(str(TASK), {"batch_size": 8, "dim": 1024})
    code = CANDIDATE.read_text()
    quick = Limits(trials=1, timing_budget_s=0.05)
    options: dict[str, Any] = {"pool_size": pool} if sandbox == "docker" else {}
    times = []
    with Evaluator(sandbox=sandbox, limits=quick, **options) as ev:
        ev.evaluate(task, code)
        for _ in range(n):
            if isinstance(ev.sandbox, DockerSandbox):
                ev.sandbox.wait_warm()
            start = time.perf_counter()
            result = ev.evaluate(task, code)
            times.append(time.perf_counter() - start)
            assert result.ok, result.error
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--candidates", type=int, default=10)
    parser.add_argument("--pool", type=int, default=2, help="warm containers kept ready")
    args = parser.parse_args()
    ok, why = engine_available()
    if not ok:
        sys.exit(f"no Docker engine: {why}")
    limits = Limits()
    process = ProcessSandbox()
    process.start()
    docker_box = DockerSandbox(pool_size=args.pool)
    docker_box.start()

    start = time.perf_counter()
    cold_box = DockerSandbox(pool_size=0)
    cold_box._prepare().start_one().remove()
    cold_start = time.perf_counter() - start
    cold_box.close()

    for _ in range(2):  # first-fork paths, page cache
        _probe(process, limits)
    docker_box.wait_warm()
    proc: list[float] = []
    warm: list[float] = []
    for _ in range(args.candidates):
        proc.append(_probe(process, limits))
        docker_box.wait_warm()  # the agent's thinking time lets the pool refill
        warm.append(_probe(docker_box, limits))
    docker_box.wait_warm()
    burst: list[float] = []
    for _ in range(args.candidates):
        burst.append(_probe(docker_box, limits))
    docker_box.close()
    process.close()

    full_proc = _full("process", min(5, args.candidates), args.pool)
    full_docker = _full("docker", min(5, args.candidates), args.pool)

    p_med, p_p90 = _ms(proc)
    w_med, w_p90 = _ms(warm)
    b_med, b_p90 = _ms(burst)
    fp_med, fp_p90 = _ms(full_proc)
    fd_med, fd_p90 = _ms(full_docker)
    print(f"Per-candidate overhead, {args.candidates} candidates, pool of {args.pool}.\n")
    print("| per candidate | median ms | p90 ms | added vs process (median) |")
    print("|---|---:|---:|---:|")
    print(f"| process sandbox (fork server, isolation only) | {p_med:.0f} | {p_p90:.0f} | - |")
    print(f"| docker, warm pool (isolation only) | {w_med:.0f} | {w_p90:.0f} | "
          f"{w_med - p_med:+.0f} ms |")
    print(f"| docker, back to back (waits for container starts) | {b_med:.0f} | {b_p90:.0f} | "
          f"{b_med - p_med:+.0f} ms |")
    print(f"| docker, one cold container start (create to ready) | {cold_start * 1e3:.0f} | - "
          "| - |")
    print(f"| full evaluation, trivial candidate, process | {fp_med:.0f} | {fp_p90:.0f} | - |")
    print(f"| full evaluation, trivial candidate, docker warm pool | {fd_med:.0f} | "
          f"{fd_p90:.0f} | {fd_med - fp_med:+.0f} ms |")
    print()
    print("| goal | target | measured | met |")
    print("|---|---|---|---|")
    added = w_med - p_med
    print(f"| added per candidate, warm pool | < 500 ms | {added:.0f} ms | "
          f"{'yes' if added < 500 else 'NO'} |")


if __name__ == "__main__":
    main()
