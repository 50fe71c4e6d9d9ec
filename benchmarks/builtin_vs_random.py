"""The built-in proposer (adaptive bandit) against uniformly random transformation choice.

For every shipped task in category "fusion", both variants run the same minimal discovery
loop side by side (interleaved, one iteration of each in turn, same seeds): parent = tournament
over the correct candidates so far, modes improve / explore / crossover / fix in a fixed
random mix, every candidate evaluated by the real evaluator (process sandbox, CPU backend,
single-threaded timing). The table reports the best correct speedup each variant reached.

    python benchmarks/builtin_vs_random.py [--iterations 50] [--tasks swish_scale ...]
    python benchmarks/builtin_vs_random.py --per-transform   # each transformation alone

The agent loop proper lives in agent/; this script drives proposer + evaluator directly.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from dataclasses import dataclass, field

from daedalus.sandbox import Evaluator, Limits
from daedalus.tasks import Task, list_tasks, load_task
from daedalus.tools.builtin import TRANSFORMS, BuiltinProposer, reference_as_candidate
from daedalus.tools.builtin.base import float_inputs
from daedalus.tools.builtin.engine import Engine
from daedalus.tools.proposer import ArchiveEntry, Brief, Mode


@dataclass
class Run:
    """One variant's archive for one task."""

    label: str
    proposer: BuiltinProposer
    rng: random.Random
    entries: list[ArchiveEntry] = field(default_factory=list)
    functional: set[str] = field(default_factory=set)
    counts: dict[str, int] = field(default_factory=dict)
    eval_s: float = 0.0

    def best(self) -> ArchiveEntry | None:
        ok = [e for e in self.entries if e.status == "ok"]
        return max(ok, key=lambda e: e.score) if ok else None

    def count(self, key: str) -> None:
        self.counts[key] = self.counts.get(key, 0) + 1


def choose(run: Run, iteration: int) -> tuple[Mode, ArchiveEntry, tuple[ArchiveEntry, ...]]:
    """A small planner: tournament parent, a fixed mode mix, fix the latest failure."""
    ok = [e for e in run.entries if e.status == "ok"]
    failures = [e for e in run.entries if e.status not in ("ok", "rejected")]
    roll = run.rng.random()
    if failures and roll < 0.1 and failures[-1] is run.entries[-1]:
        return "fix", failures[-1], tuple(sorted(ok, key=lambda e: -e.score)[:4])
    if not ok:
        return "improve", run.entries[0], ()
    contenders = run.rng.sample(ok, k=min(3, len(ok)))
    parent = max(contenders, key=lambda e: e.score)
    others = tuple(e for e in sorted(ok, key=lambda e: -e.score) if e is not parent)[:4]
    if roll < 0.2 and others:
        return "crossover", parent, others
    if roll < 0.3:
        return "explore", parent, others
    return "improve", parent, others


def evaluate(
    ev: Evaluator, task: Task, run: Run, code: str, cid: str, description: str, origin: str
) -> ArchiveEntry:
    started = time.monotonic()
    result = ev.evaluate(task, code, known_functional=frozenset(run.functional))
    run.eval_s += time.monotonic() - started
    if result.functional_hash and result.ok:
        run.functional.add(result.functional_hash)
    feedback = result.error or ""
    entry = ArchiveEntry(
        cid, code, str(result.status), result.score, result.speedup, feedback, origin, description
    )
    run.entries.append(entry)
    run.count(str(result.status) if result.stage != "duplicate" else "duplicate")
    head = description.splitlines()[0] if description else "seed"
    print(
        f"    {run.label}: {head} -> {result.status} {result.score:.2f} "
        f"{(result.error or '')[:160]}",
        file=sys.stderr,
    )
    return entry


def iterate(ev: Evaluator, task: Task, run: Run, iteration: int) -> None:
    mode, parent, inspirations = choose(run, iteration)
    brief = Brief(
        task_name=task.name,
        task_source=task.source,
        category=task.category,
        mode=mode,
        parent=parent,
        inspirations=inspirations,
        seed=iteration,
    )
    proposal = run.proposer.propose(brief)
    if proposal.error:
        run.count("no_proposal")
        print(
            f"    {run.label}: {mode} on {parent.candidate_id}: {proposal.error[:120]}",
            file=sys.stderr,
        )
        return
    cid = f"{run.label}-{iteration}"
    entry = evaluate(ev, task, run, proposal.code, cid, proposal.description, f"builtin/{mode}")
    parent_score = parent.score if parent.status == "ok" else 0.0
    run.proposer.observe(proposal, parent_score=parent_score, score=entry.score)


def compare(ev: Evaluator, task: Task, iterations: int, seed: int) -> tuple[Run, Run, float]:
    seed_code = reference_as_candidate(task.source)
    runs = [
        Run("adaptive", BuiltinProposer(selection="adaptive"), random.Random(seed)),
        Run("random", BuiltinProposer(selection="random"), random.Random(seed)),
    ]
    for run in runs:
        evaluate(ev, task, run, seed_code, f"{run.label}-seed", "", "seed")
    ref_ms = runs[0].entries[0]
    for iteration in range(iterations):
        for run in runs:  # interleaved, so machine noise hits both variants alike
            iterate(ev, task, run, iteration)
        best = {
            r.label: max((e.score for e in r.entries if e.status == "ok"), default=0.0)
            for r in runs
        }
        print(
            f"  {task.name} iteration {iteration + 1}/{iterations}: best "
            f"{best['adaptive']:.2f}x adaptive, {best['random']:.2f}x random",
            file=sys.stderr,
        )
    return runs[0], runs[1], ref_ms.score


def lineage_of(entry: ArchiveEntry | None) -> str:
    if entry is None or not entry.description:
        return "seed"
    return entry.description.splitlines()[1].removeprefix("lineage: ")


def per_transform(ev: Evaluator, tasks: list[Task]) -> None:
    """Each transformation applied alone to each task's seed, evaluated once."""
    names = [t.name for t in TRANSFORMS]
    print("| task | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for task in tasks:
        seed = reference_as_candidate(task.source)
        engine = Engine(float_inputs(task.source))
        cells = []
        for transform in TRANSFORMS:
            applied = engine.apply(seed, transform)
            if applied is None:
                cells.append("-")
                continue
            result = ev.evaluate(task, applied.code)
            cells.append(
                f"{result.speedup:.2f}" if result.ok and result.speedup else str(result.status)
            )
            print(f"  {task.name} {transform.name}: {cells[-1]}", file=sys.stderr)
        print(f"| {task.name} | " + " | ".join(cells) + " |", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=50)
    parser.add_argument("--tasks", nargs="*", help="task names (default: every fusion task)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--per-transform",
        action="store_true",
        help="evaluate each transformation alone on each task's seed",
    )
    args = parser.parse_args(argv)
    tasks = (
        [load_task(n) for n in args.tasks]
        if args.tasks
        else [t for t in list_tasks() if t.category == "fusion"]
    )
    started = time.monotonic()
    with Evaluator(sandbox="process", backend="cpu", limits=Limits(threads=1)) as ev:
        if args.per_transform:
            per_transform(ev, tasks)
            return
        rows = []
        for task in tasks:
            task_started = time.monotonic()
            adaptive, rand, _ = compare(ev, task, args.iterations, args.seed)
            rows.append((task, adaptive, rand))
            # Each row as soon as its task is done, so a long run interrupted keeps its rows.
            print(f"{table_row(task, adaptive, rand)} <!-- {time.monotonic() - task_started:.0f} s -->",
                  flush=True)
    print(
        f"\nBuilt-in proposer, {args.iterations} iterations per variant per task, seed "
        f"{args.seed}, process sandbox, CPU backend, 1 thread; wall "
        f"{time.monotonic() - started:.0f} s.\n"
    )
    print(
        "| task | adaptive best | random best | adaptive lineage of best | "
        "random lineage of best | adaptive ok/fail/dup/none | random ok/fail/dup/none |"
    )
    print("|---|---|---|---|---|---|---|")
    for task, adaptive, rand in rows:
        print(table_row(task, adaptive, rand))


def table_row(task: Task, adaptive: Run, rand: Run) -> str:
    cells = []
    for run in (adaptive, rand):
        best = run.best()
        cells.append(f"{best.score:.2f}x" if best else "none")
    for run in (adaptive, rand):
        cells.append(lineage_of(run.best()))
    for run in (adaptive, rand):
        c = run.counts
        fails = sum(v for k, v in c.items() if k not in ("ok", "duplicate", "no_proposal"))
        cells.append(f"{c.get('ok', 0)}/{fails}/{c.get('duplicate', 0)}/{c.get('no_proposal', 0)}")
    return f"| {task.name} | " + " | ".join(cells) + " |"


if __name__ == "__main__":
    main()
