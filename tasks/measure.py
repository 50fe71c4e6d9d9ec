"""Measure how long each task's reference ``Model.forward`` takes on this machine.

    python -m daedalus.tasks.measure                  # the whole shipped library
    python -m daedalus.tasks.measure swish_scale path/to/19_ReLU.py --set dim=1024

Prints a Markdown table (paste it into docs/tasks.md). One thread, as the evaluator
times candidates; the median of repeated runs after a warm-up, and with ``--rounds N``
the smallest median of N rounds (on a shared machine the load comes and goes). This runs
task code, so it is a developer tool, not something the agent calls.

glibc's malloc returns big freed blocks to the kernel, so a forward pass that allocates
large temporaries can pay page faults on every call, and whether it does depends on the
process's allocation history: the same task measured 11 ms or 46 ms. By default this tool
re-executes itself with thresholds that keep freed memory for reuse (the steady state of
a long-running process); ``--default-malloc`` measures the allocator as it comes.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import time
from dataclasses import dataclass

from daedalus.tasks.loader import list_tasks, load_task, parse_overrides
from daedalus.tasks.model import Task
from daedalus.tasks.runtime import materialise

STEADY_MALLOC = {"MALLOC_MMAP_THRESHOLD_": "33554432", "MALLOC_TRIM_THRESHOLD_": "4294967296"}


@dataclass(frozen=True)
class Timing:
    task: Task
    median_ms: float  # wall clock
    iqr_ms: float
    cpu_ms: float  # median thread CPU time: what the run costs when it is not waiting
    runs: int
    output: str  # shapes and dtypes of the reference outputs


def measure(task: Task, *, min_runs: int = 10, min_seconds: float = 0.5) -> Timing:
    """Median wall time of the reference forward pass, in milliseconds."""
    import torch

    torch.set_num_threads(1)
    loaded = materialise(task)
    torch.manual_seed(task.seed)
    model = loaded.make_model().eval()
    inputs = loaded.get_inputs()
    outputs = loaded.run_reference(model, inputs)
    for _ in range(3):
        loaded.run_reference(model, inputs)
    samples: list[float] = []
    cpu: list[float] = []
    started = time.perf_counter()
    with torch.no_grad():
        while len(samples) < min_runs or time.perf_counter() - started < min_seconds:
            t0, c0 = time.perf_counter(), time.thread_time()
            model(*inputs)
            cpu.append((time.thread_time() - c0) * 1e3)
            samples.append((time.perf_counter() - t0) * 1e3)
    quartiles = statistics.quantiles(samples, n=4)
    shapes = ", ".join(f"{tuple(o.shape)} {str(o.dtype).removeprefix('torch.')}" for o in outputs)
    return Timing(
        task,
        statistics.median(samples),
        quartiles[2] - quartiles[0],
        statistics.median(cpu),
        len(samples),
        shapes,
    )


def markdown(timings: list[Timing]) -> str:
    lines = [
        "| task | category | wall ms | CPU ms | output | description |",
        "|---|---|---:|---:|---|---|",
    ]
    for t in timings:
        lines.append(
            f"| `{t.task.key}` | {t.task.category} | {t.median_ms:.1f} | {t.cpu_ms:.1f} | {t.output} | "
            f"{t.task.description} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("tasks", nargs="*", help="task names or paths (default: the library)")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="NAME=VALUE"
    )
    parser.add_argument("--rounds", type=int, default=1, help="keep the best of N rounds")
    parser.add_argument("--default-malloc", action="store_true", help="do not tune glibc malloc")
    args = parser.parse_args(argv)
    if not args.default_malloc and any(os.environ.get(k) != v for k, v in STEADY_MALLOC.items()):
        # malloc reads these once at start-up, so they only take effect in a fresh process.
        command = [sys.executable, "-m", "daedalus.tasks.measure", *argv]
        os.execve(sys.executable, command, {**os.environ, **STEADY_MALLOC})
    overrides = parse_overrides(args.overrides)
    tasks = [load_task(t, overrides) for t in args.tasks] if args.tasks else list_tasks()
    best: dict[str, Timing] = {}
    for round_ in range(max(1, args.rounds)):
        for task in tasks:
            timing = measure(task)
            print(
                f"round {round_ + 1}  {task.key:32s} {timing.median_ms:8.2f} ms  "
                f"iqr {timing.iqr_ms:6.2f}  cpu {timing.cpu_ms:8.2f} ms",
                flush=True,
            )
            # Load on a shared machine only ever adds time, so each metric keeps its best round.
            if task.key in best:
                kept = best[task.key]
                timing = dataclasses.replace(
                    timing if timing.median_ms < kept.median_ms else kept,
                    cpu_ms=min(timing.cpu_ms, kept.cpu_ms),
                )
            best[task.key] = timing
    print()
    print(markdown([best[t.key] for t in tasks]))


if __name__ == "__main__":
    main()
