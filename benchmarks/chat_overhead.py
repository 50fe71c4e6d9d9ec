"""What `daedalus chat` adds on top of the model: graph, checkpoints and archive tools.

A scripted OpenAI-compatible stub on 127.0.0.1 answers instantly, so the times below are
the agent's own (litellm's client, the LangGraph graph and its SQLite checkpoints, the
archive tools), not a model's. The archive holds N candidates (bulk-filled as in
``archive_queries.py``); the long thread has T earlier turns.

    .venv/bin/python -m benchmarks.chat_overhead [--candidates 100000] [--turns 200] [--repeats 20]

Goals (issue 5): the agent adds < 50 ms per model call beyond the bare client call, each
archive tool answers in < 100 ms on 100,000 candidates, and resuming a 200-turn thread
(open + one turn) takes < 1 s.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from benchmarks.archive_queries import fill
from daedalus.agent.chat import ChatHooks, ChatSession
from daedalus.archive import store
from daedalus.archive.db import open_archive
from daedalus.tools.llm import LLMGateway
from tests.stub_llm import STUB_API_KEY, STUB_KEY_ENV, Reply, StubLLM, ToolCall


def median_ms(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered) * 1000, ordered[int(0.9 * (len(ordered) - 1))] * 1000


def time_it(fn: Callable[[], Any], repeats: int) -> list[float]:
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--candidates", type=int, default=100_000)
    parser.add_argument("--turns", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    os.environ[STUB_KEY_ENV] = STUB_API_KEY
    rows: list[tuple[str, float, float, str]] = []

    with tempfile.TemporaryDirectory() as tmp, StubLLM(lambda request: "ok") as stub:
        home = Path(tmp) / ".daedalus"
        archive = open_archive(f"sqlite:///{home / 'archive.db'}")
        t0 = time.perf_counter()
        run_id = fill(archive, n=args.candidates, islands=2, cells=16, seed=1)
        print(f"filled {args.candidates} candidates in {time.perf_counter() - t0:.1f} s")
        with archive.session() as s:
            best = store.best_candidate(s, run_id=run_id)
            failed = store.recent_failures(s, run_id=run_id, limit=1)[0]
            assert best is not None
            best_id, failed_id = best.id, failed.id
        config = stub.llm_config()

        # The bare client call, for reference: litellm to the stub and back.
        gateway = LLMGateway(config)
        message = [{"role": "user", "content": "hi"}]
        gateway.complete(message)
        bare = time_it(lambda: gateway.complete(message), args.repeats)
        rows.append(("model call, bare LLMGateway.complete", *median_ms(bare), "reference"))

        session = ChatSession(archive=archive, home=home, llm=config, hooks=ChatHooks())
        inside: list[float] = []  # time spent in the model call during each turn
        complete = session.gateway.complete

        def timed_complete(*a: Any, **k: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return complete(*a, **k)
            finally:
                inside.append(time.perf_counter() - t0)

        session.gateway.complete = timed_complete  # type: ignore[method-assign]
        session.send("warm up")
        inside.clear()
        turn = time_it(lambda: session.send("hello"), args.repeats)
        rows.append(("chat turn, no tools (1 model call)", *median_ms(turn), ""))
        overhead = [t - m for t, m in zip(turn, inside, strict=True)]
        med, p90 = median_ms(overhead)
        rows.append(("  agent's share of it (graph, checkpoint, pruning)", med, p90,
                     "goal < 50" + (" ✓" if med < 50 else " ✗")))

        calls: dict[str, dict[str, Any]] = {
            "top_candidates": {"run": run_id, "limit": 5},
            "show_candidate": {"candidate": best_id},
            "explain_failure": {"candidate": failed_id},
            "diff_candidates": {"a": failed_id, "b": best_id},
            "show_run": {"run": run_id},
            "list_runs": {},
        }
        tools = session.toolbox
        for name, arguments in calls.items():
            tools.run(name, arguments)
            samples = time_it(partial(tools.run, name, arguments), args.repeats)
            med, p90 = median_ms(samples)
            rows.append((f"tool {name} ({args.candidates:,} candidates)", med, p90,
                         "goal < 100" + (" ✓" if med < 100 else " ✗")))

        script: list[Reply | str] = [Reply(tool_calls=[ToolCall(n, a) for n, a in calls.items()]), "done"]

        def tool_turn() -> None:
            stub.script(list(script))
            session.send("look around")

        samples = time_it(tool_turn, max(3, args.repeats // 4))
        rows.append(("chat turn calling all 6 read tools (2 model calls)", *median_ms(samples), ""))
        session.close()

        # A long thread: T earlier turns, then open it again and send one message.
        stub.script(lambda request: "ok")
        long = ChatSession(archive=archive, home=home, llm=config, hooks=ChatHooks())
        for i in range(args.turns):
            long.send(f"message {i} " + "x" * 200)
        thread_id = long.thread_id
        long.close()
        db_mb = sum(f.stat().st_size for f in home.glob("chat.db*")) / 1e6

        def resume() -> None:
            again = ChatSession(archive=archive, home=home, llm=config, thread_id=thread_id,
                                hooks=ChatHooks())
            again.send("and now?")
            again.close()

        samples = time_it(resume, max(3, args.repeats // 4))
        med, p90 = median_ms(samples)
        rows.append((f"resume a {args.turns}-turn thread (open + 1 turn)", med, p90,
                     "goal < 1000" + (" ✓" if med < 1000 else " ✗")))

    print()
    print(f"chat.db after the {args.turns}-turn thread and the other turns: {db_mb:.1f} MB")
    print()
    print("| measurement | median ms | p90 ms | note |")
    print("|---|---:|---:|---|")
    for name, med, p90, note in rows:
        print(f"| {name} | {med:.1f} | {p90:.1f} | {note} |")


if __name__ == "__main__":
    main()
