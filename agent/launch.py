"""Wiring for a discovery run: build the parts, seed or resume the run, drive the graph.

Shared by `daedalus run` and the chat agent's "start or resume a run" tool.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import closing, contextmanager
from typing import TYPE_CHECKING, Any

from daedalus.agent.config import RunConfig, daedalus_home
from daedalus.agent.memory import statistical_lessons
from daedalus.agent.runtime import Analyst, EventSink, RunContext
from daedalus.archive import store

if TYPE_CHECKING:
    from daedalus.archive.db import Archive
    from daedalus.tasks.model import Task
    from daedalus.tools.proposer import Proposer


class LaunchError(Exception):
    """The run cannot start; the message names the fix."""


def build_proposers(config: RunConfig) -> dict[str, Proposer]:
    from daedalus.agent import planning

    proposers: dict[str, Proposer] = {}
    for arm in planning.arms_for(config):
        if arm.proposer == "builtin":
            from daedalus.tools.builtin import BuiltinProposer

            proposers[arm.key] = BuiltinProposer()
        else:
            from daedalus.agent.profile import build_messages
            from daedalus.tools.llm import LLMConfig, LLMGateway
            from daedalus.tools.llm_proposer import LLMProposer

            gateway = LLMGateway(LLMConfig.from_env(model=arm.model, **llm_options(config)))
            proposers[arm.key] = LLMProposer(
                gateway, edit_format=config.edit_format, build_messages=build_messages
            )
    if not proposers:
        raise LaunchError(
            "no proposer is configured: --proposer llm needs a model (--model provider/name or "
            "DAEDALUS_MODEL); or use --proposer builtin, which needs no LLM"
        )
    return proposers


def llm_options(config: RunConfig) -> dict[str, Any]:
    """The run's LLM settings for ``LLMConfig.from_env`` (None values keep its defaults)."""
    return {"api_base": config.api_base, "temperature": config.temperature,
            "max_tokens": config.max_tokens, "api_key_env": config.api_key_env}


def build_analyst(archive: Archive, task: Task, config: RunConfig, run_id: str) -> Analyst | None:
    """The LLM analyst (first configured model) that distils lessons; None without an LLM."""
    if "llm" not in config.proposers or not (config.models or config.default_model):
        return None
    from daedalus.agent.profile import build_analyst_messages, parse_lessons
    from daedalus.tools.llm import LLMConfig, LLMGateway
    from daedalus.tools.llm_errors import LLMError

    model = config.models[0] if config.models else str(config.default_model)
    gateway = LLMGateway(LLMConfig.from_env(model=model, **llm_options(config)))

    def analyse(task_name: str, entries: list[Any]) -> list[str]:
        with archive.session() as s:
            known = [lesson.text for lesson in store.lessons(s, task=task.key, limit=10)]
            run = store.get_run(s, run_id=run_id)
            remaining = None if config.budget_usd is None else config.budget_usd - run.cost_usd
        if remaining is not None and remaining <= 0:
            return []
        messages = build_analyst_messages(task_name=task_name, category=task.category, results=entries, lessons=known)
        try:
            reply = gateway.complete(messages, max_cost_usd=remaining)
        except LLMError:
            return statistical_lessons(task_name, entries)  # the analyst is optional; never stop a run
        with archive.session() as s, s.begin():
            store.add_spend(
                s, run_id=run_id, prompt_tokens=reply.prompt_tokens,
                completion_tokens=reply.completion_tokens, cost_usd=reply.cost_usd,
            )
        return parse_lessons(reply.text)

    return analyse


@contextmanager
def checkpointer() -> Iterator[Any]:
    """LangGraph's checkpointer: beside the archive, so PostgreSQL when the archive is there."""
    from daedalus.archive.db import default_url

    url = default_url(create_dir=False)
    if url.startswith("postgresql"):
        with postgres_checkpointer(url) as saver:
            yield saver
        return
    from langgraph.checkpoint.sqlite import SqliteSaver

    conn = sqlite3.connect(daedalus_home() / "checkpoints.db", check_same_thread=False)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        # As for the archive (archive/db.py): WAL + NORMAL survives a killed process and
        # skips an fsync per checkpoint (several per iteration). Only a power loss can drop
        # the last few; the run then resumes from the one before them, and from the archive.
        conn.execute("PRAGMA synchronous=NORMAL")
        yield SqliteSaver(conn)
    finally:
        conn.close()


# The checkpoint tables live in their own schema, so the archive's schema stays exactly what
# its migrations make; the lock makes concurrent first runs create them once.
CHECKPOINT_SCHEMA = "daedalus_checkpoints"
_PG_CHECKPOINT_LOCK = 0x0DAEDA2


@contextmanager
def postgres_checkpointer(url: str) -> Iterator[Any]:
    """A LangGraph ``PostgresSaver`` on the archive's PostgreSQL database."""
    import psycopg
    from langgraph.checkpoint.postgres import PostgresSaver
    from psycopg.rows import dict_row
    from sqlalchemy import make_url

    parsed = make_url(url)
    conninfo = parsed.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(
        conninfo, autocommit=True, prepare_threshold=0, row_factory=dict_row,
        options=f"-c search_path={CHECKPOINT_SCHEMA}",
    ) as conn:  # fmt: skip
        # Polled, never waited for inside a statement: LangGraph's setup builds indexes
        # CONCURRENTLY, which waits for every open transaction, including a statement
        # blocked on this lock in another run (PostgreSQL reports that as a deadlock).
        while not conn.execute("SELECT pg_try_advisory_lock(%s) AS ok",
                               (_PG_CHECKPOINT_LOCK,)).fetchone()["ok"]:  # type: ignore[index]
            time.sleep(0.05)
        try:
            conn.execute(f"CREATE SCHEMA IF NOT EXISTS {CHECKPOINT_SCHEMA}")
            saver = PostgresSaver(conn)
            saver.setup()
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_PG_CHECKPOINT_LOCK,))
        yield saver


def create_run(archive: Archive, task: Task, config: RunConfig) -> str:
    """Create the run and its seed candidate: the reference, renamed to ModelNew."""
    from daedalus.sandbox.static import normalized_hash
    from daedalus.tools.builtin.seed import reference_as_candidate

    # A program task's seed is its initial program as written, an architecture task's its
    # seed design (already a ModelNew); a kernel's is the reference.
    code = task.source if task.kind in ("program", "architecture") else reference_as_candidate(task.source)
    with archive.session() as s, s.begin():
        run = store.create_run(
            s,
            task=task.key,
            task_path=str(task.path),
            kind=task.kind,
            # The objectives and their directions travel with the run (review's Pareto front).
            config={**config.model_dump(mode="json"),
                    "objectives": [{"name": o.name, "direction": o.direction} for o in task.objectives]},
            proposer=",".join(config.proposers),
            model=",".join(config.models) or "builtin",
            host=socket.gethostname(),
            pid=os.getpid(),
        )
        store.add_candidate(
            s,
            candidate_id=uuid.uuid4().hex[:16],
            run_id=run.id,
            task=task.key,
            code=code,
            code_hash=normalized_hash(code),
            mode="seed",
            proposer="reference",
            model="reference",
            description="the task's initial program" if task.kind == "program"
            else "the task's reference implementation, as the first candidate",
        )
        return run.id


def _import_in_background(*, llm: bool) -> threading.Thread:
    """LangGraph and litellm take seconds to import (tens on a loaded machine), and the main
    thread only waits while the sandbox starts: import them meanwhile."""
    import gc
    import importlib

    def load() -> None:
        try:
            for name in ("langgraph.graph", "langgraph.checkpoint.sqlite"):
                importlib.import_module(name)
            if llm:
                from daedalus.tools.llm import warm_litellm

                warm_litellm()
        finally:
            # The imports leave ~500,000 long-lived objects, and while they load the cyclic
            # collector walks them again and again (8 full collections, ~1 s of CPU before
            # the first request, measured): ``daedalus run`` starts with it off. Now move
            # them out of its sight for good and turn it back on for what the run creates.
            gc.freeze()
            gc.enable()

    thread = threading.Thread(target=load, name="daedalus-imports", daemon=True)
    thread.start()
    return thread


def drive(
    archive: Archive,
    task: Task,
    config: RunConfig,
    run_id: str,
    *,
    on_event: EventSink | None = None,
    elapsed_before: float = 0.0,
    context_hook: Any = None,
) -> RunContext:
    """Run (or continue) the graph until a budget is spent or the run is interrupted."""
    from daedalus.agent.executors import ExecutorError, make_executor
    from daedalus.agent.graph import build_graph, thread_config

    _import_in_background(llm="llm" in config.proposers)
    proposers = build_proposers(config)
    try:
        executor = make_executor(config, task_kind=task.kind)
    except ExecutorError as exc:
        raise LaunchError(str(exc)) from exc
    with closing(executor), checkpointer() as saver:
        evaluate = executor.evaluate
        ctx = RunContext(
            archive=archive,
            task=task,
            config=config,
            run_id=run_id,
            proposers=proposers,
            evaluate=evaluate,
            backend=config.backend,
            sandbox=config.sandbox,
            analyst=build_analyst(archive, task, config, run_id),
            on_event=on_event,
            elapsed_before=elapsed_before,
        )
        if context_hook is not None:
            context_hook(ctx)
        with archive.session() as s, s.begin():
            store.update_run_status(s, run_id=run_id, status="running", host=socket.gethostname(), pid=os.getpid())
        ctx.resubmit_pending()
        graph = build_graph(ctx, checkpointer=saver)
        cfg = thread_config(run_id)
        snapshot = graph.get_state(cfg)
        try:
            graph.invoke(None if snapshot.next else {"run_id": run_id}, cfg)
        except ExecutorError as exc:  # the workers went away (e.g. the Ray cluster stopped)
            with archive.session() as s, s.begin():
                store.update_run_status(s, run_id=run_id, status="stopped")
            raise LaunchError(f"{exc}; then continue with: daedalus run --resume {run_id}") from exc
        finally:
            ctx.pool.shutdown()
    return ctx
