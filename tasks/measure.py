"""Measure how long each task's reference ``Model.forward`` takes on this machine.

    python -m daedalus.tasks.measure                  # the whole shipped library
    python -m daedalus.tasks.measure swish_scale path/to/19_ReLU.py --set dim=1024

Prints a Markdown table (paste it into docs/tasks.md). One thread, as the evaluator
times candidates; the median of repeated runs after a warm-up. This runs task code, so
it is a developer tool, not something the agent calls.
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass

from daedalus.tasks.loader import list_tasks, load_task, parse_overrides
from daedalus.tasks.model import Task
from daedalus.tasks.runtime import materialise


@dataclass(frozen=True)
class Timing:
    task: Task
    median_ms: float
    iqr_ms: float
    runs: int
    output: str  # shapes and dtypes of the reference outputs


def measure(task: Task, *, min_runs: int = 10, min_seconds: float = 0.5) -> Timing:
    """Median wall time of the reference forward pass, in milliseconds."""
    import torch

    torch.set_num_threads(1)
    loaded = materialise(task)
    torch.manual_seed(task.seed)
    model = loaded.make_model()
    inputs = loaded.get_inputs()
    outputs = loaded.run_reference(model, inputs)
    for _ in range(3):
        loaded.run_reference(model, inputs)
    samples: list[float] = []
    started = time.perf_counter()
    with torch.no_grad():
        while len(samples) < min_runs or time.perf_counter() - started < min_seconds:
            t0 = time.perf_counter()
            model(*inputs)
            samples.append((time.perf_counter() - t0) * 1e3)
    quartiles = statistics.quantiles(samples, n=4)
    shapes = ", ".join(f"{tuple(o.shape)} {str(o.dtype).removeprefix('torch.')}" for o in outputs)
    return Timing(task, statistics.median(samples), quartiles[2] - quartiles[0], len(samples), shapes)


def markdown(timings: list[Timing]) -> str:
    lines = [
        "| task | category | reference ms (median, 1 thread) | output | description |",
        "|---|---|---:|---|---|",
    ]
    for t in timings:
        lines.append(
            f"| `{t.task.key}` | {t.task.category} | {t.median_ms:.1f} | {t.output} | "
            f"{t.task.description} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("tasks", nargs="*", help="task names or paths (default: the library)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="NAME=VALUE")
    args = parser.parse_args(argv)
    overrides = parse_overrides(args.overrides)
    tasks = [load_task(t, overrides) for t in args.tasks] if args.tasks else list_tasks()
    timings = []
    for task in tasks:
        timing = measure(task)
        print(f"{task.key:32s} {timing.median_ms:8.2f} ms  iqr {timing.iqr_ms:6.2f}", flush=True)
        timings.append(timing)
    print()
    print(markdown(timings))


if __name__ == "__main__":
    main()
