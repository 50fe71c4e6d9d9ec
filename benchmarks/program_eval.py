"""Evaluation time per program: in-process (as OpenEvolve runs its evaluator), and in the
process sandbox with and without spare children (``sandbox/spare.py``).

The programs are the peer benchmark's ordinary ones (``benchmarks/peers/scripts.py``:
random search, annealing, restarts with varied parameters) on the shipped
``function_minimization`` task, so the evaluator's own work is the same for all three:

* **in-process**: ``evaluate_stage1`` then ``evaluate_stage2`` of an evaluator module
  imported once in this process, each program written to a file first. No isolation at all.
* **sandbox, fresh child**: ``Evaluator(lean=True, spares=False)``: fork, isolate, import
  the evaluator, evaluate, per program.
* **sandbox, spares**: ``Evaluator(lean=True)`` as runs use it: the next program's child is
  forked, isolated and has imported the evaluator while the current program runs.

Blocks alternate (A B C A B C ...) so drifting machine load hits all three. Wall time is
per evaluation, one at a time; CPU time is every process's user + system time per
evaluation (this process, the fork server and its children), the spares' preparation
included.

    python benchmarks/program_eval.py [--programs 40] [--rounds 3]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.peers.scripts import TASK_DIR, _ordinary, program  # noqa: E402
from daedalus.sandbox import Evaluator, Limits, Status  # noqa: E402
from daedalus.tasks import load_task  # noqa: E402


def _tree_cpu(server_pid: int | None) -> float:
    """This process's CPU plus the fork server's and its reaped children's."""
    own = time.process_time()
    if server_pid is None:
        return own
    fields = Path(f"/proc/{server_pid}/stat").read_text().rsplit(")", 1)[1].split()
    return own + sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def _in_process(module: ModuleType, codes: list[str], workdir: Path) -> list[float]:
    times = []
    for i, code in enumerate(codes):
        path = workdir / f"program_{i}.py"
        path.write_text(code)
        start = time.perf_counter()
        first = module.evaluate_stage1(str(path))
        if first.get("combined_score", 0.0) >= 0.3:
            module.evaluate_stage2(str(path))
        times.append(time.perf_counter() - start)
    return times


def _sandboxed(ev: Evaluator, task: object, codes: list[str]) -> list[float]:
    times = []
    for code in codes:
        start = time.perf_counter()
        result = ev.evaluate(task, code)  # type: ignore[arg-type]
        times.append(time.perf_counter() - start)
        assert result.status is Status.OK, (result.status, result.error)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--programs", type=int, default=40, help="programs per block")
    parser.add_argument("--rounds", type=int, default=3, help="blocks of each kind")
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    codes = [program(block) for _, block in _ordinary(args.programs)]
    task = load_task(str(TASK_DIR))
    spec = importlib.util.spec_from_file_location("bench_evaluator", TASK_DIR / "evaluator.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    limits = Limits(timeout_s=30.0)
    wall: dict[str, list[float]] = {k: [] for k in ("in-process", "fresh", "spares")}
    cpu: dict[str, float] = dict.fromkeys(wall, 0.0)
    with tempfile.TemporaryDirectory() as tmp, \
            Evaluator(limits=limits, lean=True, spares=False) as fresh, \
            Evaluator(limits=limits, lean=True) as spares:  # fmt: skip
        for warm in (fresh, spares):  # start both servers and warm their first-fork paths
            _sandboxed(warm, task, codes[:3])
        _in_process(module, codes[:3], Path(tmp))
        for _ in range(args.rounds):
            for name in wall:
                ev = {"fresh": fresh, "spares": spares}.get(name)
                server = ev.sandbox.server_pid if ev is not None else None  # type: ignore[attr-defined]
                before = _tree_cpu(server)
                if ev is None:
                    wall[name] += _in_process(module, codes, Path(tmp))
                else:
                    wall[name] += _sandboxed(ev, task, codes)
                    time.sleep(0.2)  # let the server reap the last child so its CPU counts
                cpu[name] += _tree_cpu(server) - before
    n = args.programs * args.rounds
    print(f"Evaluation time per program, {n} evaluations each, alternating blocks of "
          f"{args.programs}.\n")
    print("| how | median ms | p90 ms | CPU ms per evaluation (all processes) |")
    print("|---|---:|---:|---:|")
    labels = {"in-process": "in-process evaluator (OpenEvolve's way, no isolation)",
              "fresh": "process sandbox, a fresh child per program",
              "spares": "process sandbox with spares (as runs use it)"}  # fmt: skip
    for name, samples in wall.items():
        ordered = sorted(samples)
        print(f"| {labels[name]} | {statistics.median(ordered) * 1e3:.1f} | "
              f"{ordered[int(0.9 * (len(ordered) - 1))] * 1e3:.1f} | {cpu[name] / n * 1e3:.1f} |")
    print(f"\nmachine: {os.cpu_count()} cores, load average {load_before:.1f} at the start and "
          f"{os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
