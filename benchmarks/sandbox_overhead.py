"""Per-candidate isolation overhead: the fork-server sandbox against a cold subprocess.

Side by side in one run, in alternating blocks (A B A B) so slow drift in machine load hits
both, without a cold start evicting the caches right before every fork-server sample:

* **fork server**: one isolated child per candidate, exactly as evaluations get it (PID,
  network and mount namespaces, read-only file system, rlimits, uid drop, captured output,
  result pipe, clean-up), measured as the round trip of a probe request that runs no
  harness work. The server is warm: torch is already imported.
* **cold subprocess**: ``python -c "import torch"`` per candidate, the cost a
  subprocess-per-candidate sandbox pays before doing any work.

Goals (issue 2): under 50 ms per candidate, and at least 25x lower than the cold start.
Wall times stretch with machine load; the CPU time each side burns per candidate (fork
server, its children and this process; or the cold interpreter) does not, so it is
printed too.
Also reports a complete ``Evaluator.evaluate`` of a trivial candidate for context.

    python benchmarks/sandbox_overhead.py [--candidates 20]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from daedalus.sandbox import Evaluator, Limits
from daedalus.sandbox.process import ProcessSandbox
from daedalus.tasks import load_task

ROOT = Path(__file__).resolve().parent.parent
TASK = ROOT / "tests" / "candidates" / "task_swish.py"
CANDIDATE = ROOT / "tests" / "candidates" / "good_fused.py"


def _ms(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered) * 1e3, ordered[int(0.9 * (len(ordered) - 1))] * 1e3


def _server_cpu(pid: int) -> float:
    """CPU seconds of the fork server and its reaped children (utime+stime+cutime+cstime)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--candidates", type=int, default=20)
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    limits = Limits()
    sandbox = ProcessSandbox()
    sandbox.start()
    probe = {"probe": True, "limits": limits.model_dump()}
    for _ in range(3):  # warm the page cache and the server's first-fork paths
        sandbox.run(probe, limits)
    fork: list[float] = []
    cold: list[float] = []
    fork_cpu = cold_cpu = 0.0
    isolation: dict[str, str] = {}
    block = max(1, args.candidates // 2)
    server = sandbox.server_pid
    assert server is not None
    while len(fork) < args.candidates:
        cpu = _server_cpu(server) + time.process_time()
        for _ in range(block):
            start = time.perf_counter()
            run = sandbox.run(probe, limits)
            fork.append(time.perf_counter() - start)
            assert run.result == {"probe": True}, run
            isolation = run.isolation
        time.sleep(0.2)  # let the server reap the last child so its CPU time is counted
        fork_cpu += _server_cpu(server) + time.process_time() - cpu
        cpu = _children_cpu()
        for _ in range(block):
            start = time.perf_counter()
            subprocess.run([sys.executable, "-c", "import torch"], check=True)
            cold.append(time.perf_counter() - start)
        cold_cpu += _children_cpu() - cpu
    sandbox.close()

    task = load_task(str(TASK), {"batch_size": 8, "dim": 1024})
    code = CANDIDATE.read_text()
    quick = Limits(trials=1, timing_budget_s=0.05)
    full: list[float] = []
    with Evaluator(limits=quick) as ev:
        ev.evaluate(task, code)
        for _ in range(min(10, args.candidates)):
            start = time.perf_counter()
            result = ev.evaluate(task, code)
            full.append(time.perf_counter() - start)
            assert result.ok, result.error

    fork_med, fork_p90 = _ms(fork)
    cold_med, cold_p90 = _ms(cold)
    full_med, full_p90 = _ms(full)
    ratio = cold_med / fork_med
    print(f"Per-candidate isolation overhead, {len(fork)} candidates each, alternating "
          "blocks.\n")
    fork_cpu_ms = fork_cpu / len(fork) * 1e3
    cold_cpu_ms = cold_cpu / len(cold) * 1e3
    print("| per candidate | median ms | p90 ms | vs cold start | CPU ms (all processes) |")
    print("|---|---:|---:|---:|---:|")
    print(f"| fork-server sandbox (isolation only) | {fork_med:.1f} | {fork_p90:.1f} | "
          f"{ratio:.0f}x lower | {fork_cpu_ms:.1f} |")
    print(f"| cold `python -c \"import torch\"` | {cold_med:.0f} | {cold_p90:.0f} | 1x | "
          f"{cold_cpu_ms:.0f} |")
    print(f"| full evaluation of a trivial candidate (1 trial, 50 ms timing budget) | "
          f"{full_med:.0f} | {full_p90:.0f} | - | - |")
    print()
    print("| goal | target | measured | met |")
    print("|---|---|---|---|")
    print(f"| isolation overhead | < 50 ms | {fork_med:.1f} ms | "
          f"{'yes' if fork_med < 50 else 'NO'} |")
    print(f"| isolation CPU cost (what wall time is on an idle machine) | < 50 ms | "
          f"{fork_cpu_ms:.1f} ms | {'yes' if fork_cpu_ms < 50 else 'NO'} |")
    print(f"| lower than a cold subprocess | >= 25x | {ratio:.0f}x | "
          f"{'yes' if ratio >= 25 else 'NO'} |")
    cpu_ratio = cold_cpu_ms / fork_cpu_ms if fork_cpu_ms else float("inf")
    print(f"| lower than a cold subprocess, in CPU | >= 25x | {cpu_ratio:.0f}x | "
          f"{'yes' if cpu_ratio >= 25 else 'NO'} |")
    print()
    print("isolation: " + ", ".join(f"{k} {v}" for k, v in isolation.items()))
    print(f"machine: {os.cpu_count()} cores, load average {load_before:.1f} at the start and "
          f"{os.getloadavg()[0]:.1f} at the end (both sides slow down under load; the ratio "
          "is the steadier number)")


if __name__ == "__main__":
    main()
