"""The discovery agent as a LangGraph graph: plan -> propose -> vet -> evaluate -> record -> reflect.

``plan`` routes: propose when there is room for another evaluation, record when the pool is
full (wait for a result), finish when a budget is spent and nothing is in flight. The graph is
compiled with a checkpointer whose thread id is the run id, so ``--resume`` continues it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from daedalus.agent.state import RunInput, RunState

if TYPE_CHECKING:
    from langchain_core.runnables import RunnableConfig
    from langgraph.checkpoint.base import BaseCheckpointSaver
    from langgraph.graph.state import CompiledStateGraph

    from daedalus.agent.runtime import RunContext

# Every iteration is ~6 graph steps; the budget, not LangGraph, decides when a run ends.
RECURSION_LIMIT = 10_000_000


def build_graph(ctx: RunContext, *, checkpointer: BaseCheckpointSaver[Any] | None = None) -> CompiledStateGraph[Any, Any, Any, Any]:
    from langgraph.graph import END, START, StateGraph

    def plan(state: RunState) -> dict[str, Any]:
        plan_state, reason = ctx.plan(proposals=state.get("proposals", 0))
        return {"plan": plan_state, "stop_reason": reason, "proposal": None, "candidate_id": None}

    def route_plan(state: RunState) -> Literal["propose", "record", "finish"]:
        if state.get("plan"):
            return "propose"
        # Interrupted: stop now; in-flight candidates stay pending and --resume re-evaluates them.
        if state.get("stop_reason") == "interrupted":
            return "finish"
        if state.get("stop_reason") and len(ctx.pool) == 0:
            return "finish"
        return "record"

    def propose(state: RunState) -> dict[str, Any]:
        assert state["plan"] is not None
        return {"proposal": ctx.propose(state["plan"]), "proposals": 1}

    def vet(state: RunState) -> dict[str, Any]:
        proposal = state.get("proposal")
        return {"candidate_id": ctx.vet(proposal) if proposal else None, "proposal": None}

    def evaluate(state: RunState) -> dict[str, Any]:
        if state.get("candidate_id"):
            ctx.submit(state["candidate_id"])  # type: ignore[arg-type]
        return {"candidate_id": None}

    def record(state: RunState) -> dict[str, Any]:
        # Block only when there is nothing else useful to do: the pool is full (every worker
        # busy and the lookahead queued) or we are stopping.
        full = len(ctx.pool) >= ctx.pool.capacity
        block = full or bool(state.get("stop_reason")) or not state.get("plan")
        done = ctx.record(block=block and len(ctx.pool) > 0)
        return {"recorded": done, "since_reflect": state.get("since_reflect", 0) + done}

    def route_record(state: RunState) -> Literal["reflect", "plan"]:
        return "reflect" if state.get("since_reflect", 0) >= ctx.config.reflect_every else "plan"

    def reflect(state: RunState) -> dict[str, Any]:
        ctx.reflect()
        return {"since_reflect": 0}

    def finish(state: RunState) -> dict[str, Any]:
        ctx.finish(state.get("stop_reason") or "finished")
        return {}

    graph = StateGraph(RunState, input_schema=RunInput)
    for name, node in (
        ("plan", plan),
        ("propose", propose),
        ("vet", vet),
        ("evaluate", evaluate),
        ("record", record),
        ("reflect", reflect),
        ("finish", finish),
    ):
        graph.add_node(name, node)
    graph.add_edge(START, "plan")
    graph.add_conditional_edges("plan", route_plan)
    graph.add_edge("propose", "vet")
    graph.add_edge("vet", "evaluate")
    graph.add_edge("evaluate", "record")
    graph.add_conditional_edges("record", route_record)
    graph.add_edge("reflect", "plan")
    graph.add_edge("finish", END)
    return graph.compile(checkpointer=checkpointer)


def thread_config(run_id: str) -> RunnableConfig:
    return {"configurable": {"thread_id": run_id}, "recursion_limit": RECURSION_LIMIT}
