"""MQAR discovery: the best design a built-in run finds, against the shipped reference designs.

    .venv/bin/python -m benchmarks.mqar_discovery --minutes 30

1. Runs ``daedalus run mqar --proposer builtin --time-limit MINUTES*60`` in a fresh working
   directory (its own archive), starting from the linear-attention seed.
2. Re-evaluates, one after another in one sandbox (so latency is measured under the same
   conditions), the run's best design and the two reference designs: linear attention
   (sub-quadratic, the seed) and softmax attention (quadratic: evaluated with the
   complexity check switched off, as the accuracy ceiling it is).
3. Prints a markdown table (test accuracy, parameters, latency, score, measured
   complexity exponent) and the run's statistics, ready for benchmarks/README.md.

``--set NAME=VALUE`` passes task overrides to both the run and the re-evaluations (a smoke
test: ``--minutes 1 --set full_steps=60 --set proxy_steps=20``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def _daedalus() -> str:
    return str(Path(sys.executable).with_name("daedalus"))


def run_discovery(workdir: Path, minutes: float, workers: int, sets: list[str]) -> dict[str, Any]:
    command = [_daedalus(), "run", "mqar", "--proposer", "builtin", "--iterations", "100000",
               "--time-limit", str(int(minutes * 60)), "--workers", str(workers), "--json",
               *[arg for item in sets for arg in ("--set", item)]]  # fmt: skip
    started = time.monotonic()
    done = subprocess.run(command, cwd=workdir, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"daedalus run failed ({done.returncode}):\n{done.stderr[-3000:]}")
    summary: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    summary["wall_s"] = time.monotonic() - started
    return summary


def _archive_facts(workdir: Path, run_id: str) -> tuple[str, dict[str, int], list[dict[str, Any]]]:
    """The best design's code, the run's status counts and its Pareto front."""
    os.environ["DAEDALUS_DATABASE_URL"] = f"sqlite:///{workdir / '.daedalus' / 'archive.db'}"
    from daedalus.archive import review_charts, store
    from daedalus.archive.db import open_archive

    archive = open_archive(os.environ["DAEDALUS_DATABASE_URL"])
    with archive.session(readonly=True) as s:
        best = store.best_candidate(s, run_id=run_id)
        if best is None:
            raise SystemExit(f"run {run_id} found no correct design; nothing to compare")
        counts = store.count_by_status(s, run_id=run_id)
        front = review_charts.pareto(s, run_id=run_id)
        points = [{"id": p.candidate_id, **dict(zip(front.names, p.values, strict=True))}
                  for p in front.front] if front else []  # fmt: skip
        code = best.code
    archive.close()
    return code, counts, points


def evaluate_designs(designs: dict[str, tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    from daedalus.sandbox import Evaluator
    from daedalus.tasks import load_task

    results: dict[str, Any] = {}
    with Evaluator(sandbox="process") as evaluator:
        for label, (code, overrides) in designs.items():
            result = evaluator.evaluate(load_task("mqar", overrides), code)
            results[label] = result
    return results


def table(results: dict[str, Any]) -> str:
    lines = ["| design | status | test accuracy | params | latency ms (16 x 32 tokens) | "
             "score | time exponent |", "|---|---|---:|---:|---:|---:|---:|"]
    for label, r in results.items():
        m = r.metrics
        exponent = f"{m['complexity_exponent']:.2f}" if "complexity_exponent" in m else "not checked"
        if r.ok:
            lines.append(f"| {label} | ok | {m['accuracy']:.4f} | {int(m['params']):,} | "
                         f"{m['latency_ms']:.3f} | {r.score:.4f} | {exponent} |")
        else:
            lines.append(f"| {label} | {r.status} ({r.stage}) | - | - | - | 0 | {exponent} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--workdir", type=Path, default=None, help="Keep the run's archive here.")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="NAME=VALUE")
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="daedalus-mqar-"))
    workdir.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    summary = run_discovery(workdir, args.minutes, args.workers, args.sets)
    load_after = os.getloadavg()
    best_code, counts, front = _archive_facts(workdir, summary["run_id"])
    from daedalus.tasks import load_task, parse_overrides

    task = load_task("mqar")
    overrides = parse_overrides(args.sets)
    designs = {
        f"best found ({summary['run_id']})": (best_code, overrides),
        "linear attention (reference, seed)": (task.files["linear_attention.py"], overrides),
        "softmax attention (reference, quadratic)": (task.files["softmax_attention.py"],
                                                     {**overrides, "subquadratic": False}),
    }
    results = evaluate_designs(designs)
    print(f"## MQAR discovery ({args.minutes:g}-minute built-in run, {args.workers} workers)\n")
    print(table(results))
    print(f"\nrun {summary['run_id']}: {summary.get('iterations')} proposals, statuses "
          f"{', '.join(f'{k}={v}' for k, v in sorted(counts.items()))}; "
          f"{summary['wall_s']:.0f} s wall; load average {load_before[0]:.1f} before, "
          f"{load_after[0]:.1f} after; archive in {workdir}")
    print(f"Pareto front (accuracy, latency_ms, params): {len(front)} designs")
    for point in front:
        print(f"  {point['id'][:12]}: " + ", ".join(f"{k}={v:.4g}" for k, v in point.items()
                                                   if k != "id"))
    print("\nbest design:\n```python\n" + best_code.strip() + "\n```")


if __name__ == "__main__":
    main()
