"""Timing fidelity of the CPU backend: does the protocol measure what candidates really cost?

1. **Known ratio**: the reference is one ``x @ w``; the candidate computes it twice (exactly
   twice the work, same allocations per product). Goal: speedup 0.5 +/- 0.05.
2. **Repeatability**: ten evaluations of that candidate with the same warm Evaluator.
   Goal: coefficient of variation of the speedup under 5 %.

Runs through the real sandbox (fork server, isolation, interleaved adaptive timing) with
the default protocol (one thread, CPU-time clock). Prints Markdown tables.

    python benchmarks/timing_fidelity.py [--evaluations 10] [--size 256] [--budget 6]
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from daedalus.sandbox import Evaluator, Limits
from daedalus.tasks import Task

TASK = """
import torch
import torch.nn as nn


class Model(nn.Module):
    def __init__(self, n):
        super().__init__()
        self.w = nn.Parameter(torch.randn(n, n) / n ** 0.5)

    def forward(self, x):
        return x @ self.w


n = {size}


def get_inputs():
    return [torch.randn(n, n)]


def get_init_inputs():
    return [n]
"""

TWICE = """
import torch
import torch.nn as nn


class ModelNew(nn.Module):
    def __init__(self, n):
        super().__init__()
        self.w = nn.Parameter(torch.randn(n, n) / n ** 0.5)

    def forward(self, x):
        first = x @ self.w
        second = x @ self.w
        return second if first.shape == second.shape else first
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--evaluations", type=int, default=10)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--budget", type=float, default=Limits().timing_budget_s)
    args = parser.parse_args()
    task = Task(name=f"matmul{args.size}", kind="kernel",
                path=Path(__file__).resolve().with_name("fidelity_matmul.py"),
                source=TASK.format(size=args.size))
    limits = Limits(timing_budget_s=args.budget)
    speedups: list[float] = []
    cand_ms: list[float] = []
    walls: list[float] = []
    rows = []
    with Evaluator(limits=limits) as ev:
        for i in range(args.evaluations):
            result = ev.evaluate(task, TWICE)
            assert result.ok and result.speedup is not None, result.error
            m = result.metrics
            speedups.append(result.speedup)
            cand_ms.append(m["cand_ms"])
            walls.append(m["ref_wall_ms"] / m["cand_wall_ms"])
            rows.append(f"| {i + 1} | {m['ref_ms']:.3f} | {m['cand_ms']:.3f} | "
                        f"{result.speedup:.3f} | {walls[-1]:.3f} | {int(m['repeats'])} | "
                        f"{max(m['ref_iqr_rel'], m['cand_iqr_rel']):.1%} | "
                        f"{', '.join(result.flags) or '-'} |")
        clock = result.artifacts.get("timing_clock", "?")
    mean = statistics.fmean(speedups)
    cv = statistics.stdev(speedups) / mean if len(speedups) > 1 else 0.0
    cv_ms = statistics.stdev(cand_ms) / statistics.fmean(cand_ms) if len(cand_ms) > 1 else 0.0
    wall_mean = statistics.fmean(walls)
    print(f"Candidate doing exactly twice the reference's work (x @ w, n={args.size}), "
          f"{args.evaluations} evaluations, clock {clock}, budget {args.budget:g} s.\n")
    print("| # | ref ms | cand ms | speedup | wall-clock speedup | repeats | max IQR/median "
          "| flags |")
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    print("\n".join(rows))
    print()
    print("| goal | target | measured | met |")
    print("|---|---|---|---|")
    ok_ratio = all(abs(s - 0.5) <= 0.05 for s in speedups)
    print(f"| twice the work | speedup 0.5 +/- 0.05 | mean {mean:.3f} (range "
          f"{min(speedups):.3f}-{max(speedups):.3f}) | {'yes' if ok_ratio else 'NO'} |")
    print(f"| repeatability | CV < 5 % | speedup CV {cv:.1%}, cand_ms CV {cv_ms:.1%} | "
          f"{'yes' if cv < 0.05 else 'NO'} |")
    print(f"| (wall clock, for reference) | - | mean speedup {wall_mean:.3f} | - |")


if __name__ == "__main__":
    main()
