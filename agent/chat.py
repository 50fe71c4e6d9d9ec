"""The chat agent: a LangGraph tool-calling loop over the archive and the evaluator.

```
START → think ─┬─→ act ─┬─→ think                    (tools answered)
               │        └─→ confirm → execute → think (an action needs the user's yes)
               └─→ END  (a reply without tool calls, or the model call failed)
```

``think`` calls the model through the project's ``LLMGateway`` (streamed when the UI
wants it) with the tools of ``prompts/chat_tools.j2``; ``act`` runs the tools the model
called (their results or errors go back as observations, fenced as data); actions that
spend budget or start work are prepared in ``act`` and wait in ``confirm`` for the user
through a LangGraph ``interrupt()``, unless the session auto-approves (``--yes``);
``execute`` does them. Threads persist in the SQLite checkpointer of ``.daedalus/chat.db``.
"""

from __future__ import annotations

import json
import operator
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypedDict

from daedalus import prompts
from daedalus.agent import profile
from daedalus.agent.chat_actions import Actions, describe
from daedalus.agent.chat_threads import ThreadIndex, connect, prune_checkpoints
from daedalus.agent.chat_toolbox import Toolbox, render_observation
from daedalus.agent.chat_tools import ArchiveTools, ToolError
from daedalus.agent.security import redact

if TYPE_CHECKING:
    from daedalus.archive.db import Archive
    from daedalus.tools.llm import LLMConfig

MAX_ROUNDS = 12  # model -> tools round trips per user message, then it must answer
MAX_OBSERVATION = 16_000
HISTORY_CHARS = 150_000  # what is sent to the model of a long thread: the newest messages
YES = {"y", "yes", "ok", "okay", "sure", "approve", "approved", "go", "go ahead", "do it", "confirm"}
NO = {"n", "no", "nope", "cancel", "stop", "decline", "don't", "do not", "abort"}


class ChatState(TypedDict, total=False):
    messages: Annotated[list[dict[str, Any]], operator.add]  # OpenAI-format chat messages
    tool_log: Annotated[list[dict[str, Any]], operator.add]  # every call with its structured result
    pending: list[dict[str, Any]]  # prepared actions awaiting confirmation
    decisions: list[dict[str, Any]]
    error: str | None  # the last model call failed (the user's message stays in the thread)
    cost_usd: Annotated[float, operator.add]
    prompt_tokens: Annotated[int, operator.add]
    completion_tokens: Annotated[int, operator.add]


class ChatInput(TypedDict):
    """The narrow input: the user's message."""

    messages: list[dict[str, Any]]


def _noop(*args: Any) -> None:
    return None


@dataclass
class ChatHooks:
    """What the UI sees while a turn runs."""

    on_delta: Callable[[str], None] | None = None  # streamed reply text; None: no streaming
    on_reply_done: Callable[[], None] = _noop
    on_tool: Callable[[str, dict[str, Any], dict[str, Any]], None] = _noop
    on_status: Callable[[str], None] = _noop


@dataclass
class Turn:
    """The outcome of one message (or one answered confirmation)."""

    thread_id: str
    reply: str
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    pending: list[dict[str, Any]] | None = None
    error: str | None = None
    cost_usd: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"thread_id": self.thread_id, "reply": self.reply, "tool_calls": self.tool_calls,
                "pending_confirmation": {"actions": self.pending} if self.pending else None,
                "error": self.error, "cost_usd": round(self.cost_usd, 6)}


def parse_answer(text: str) -> bool | None:
    """True for yes, False for no, None for anything else (a decline with a note)."""
    word = " ".join(text.strip().lower().strip(".!").split())
    return True if word in YES else False if word in NO else None


class ChatSession:
    """One chat thread, new or resumed, with its graph, tools and checkpointer."""

    def __init__(self, *, archive: Archive, home: Path, llm: LLMConfig, thread_id: str | None = None,
                 auto_approve: bool = False, hooks: ChatHooks | None = None) -> None:
        from langgraph.checkpoint.sqlite import SqliteSaver

        from daedalus.tools.llm import LLMGateway

        self._conn = connect(home)
        self.threads = ThreadIndex(self._conn)
        try:
            resumed = self.threads.resolve(thread_id) if thread_id else None
            self.gateway = LLMGateway(llm)
            self.gateway.check()  # a missing key fails here, before a thread is created
        except BaseException:
            self._conn.close()
            raise
        self.thread_id = resumed or self.threads.create(model=llm.model)
        self.hooks = hooks or ChatHooks()
        self.auto_approve = auto_approve
        self.actions = Actions(archive, home=home, llm=llm, status=lambda m: self.hooks.on_status(m))
        self.toolbox = Toolbox(ArchiveTools(archive, home=home), self.actions)
        self.graph = build_chat_graph(self, checkpointer=SqliteSaver(self._conn))
        self._config: Any = {"configurable": {"thread_id": self.thread_id}, "recursion_limit": 500}

    def close(self) -> None:
        self.actions.close()
        self._conn.close()

    def __enter__(self) -> ChatSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ state

    def _state(self) -> dict[str, Any]:
        return dict(self.graph.get_state(self._config).values)

    def history(self) -> list[dict[str, Any]]:
        return list(self._state().get("messages", []))

    def pending(self) -> list[dict[str, Any]] | None:
        """The actions awaiting the user's confirmation, or None."""
        return _waiting(self.graph.get_state(self._config))

    # ------------------------------------------------------------------ turns

    def send(self, text: str) -> Turn:
        if self.pending():
            raise RuntimeError("this thread waits for a confirmation: call answer() first")
        return self._invoke({"messages": [{"role": "user", "content": text}]})

    def answer(self, approve: bool, note: str = "") -> Turn:
        from langgraph.types import Command

        if not self.pending():
            raise RuntimeError("nothing in this thread waits for a confirmation")
        return self._invoke(Command(resume={"approve": approve, "note": note}))

    def _invoke(self, payload: Any) -> Turn:
        before = self._state()
        seen_messages, seen_calls = len(before.get("messages", [])), len(before.get("tool_log", []))
        cost_before = float(before.get("cost_usd", 0.0))
        self.graph.invoke(payload, self._config)
        snapshot = self.graph.get_state(self._config)
        prune_checkpoints(self._conn, self.thread_id, keep=snapshot.config["configurable"]["checkpoint_id"])
        after = dict(snapshot.values)
        new = after.get("messages", [])[seen_messages:]
        texts = [m["content"] for m in new if m.get("role") == "assistant" and m.get("content")]
        pending = _waiting(snapshot)
        turn = Turn(thread_id=self.thread_id, reply="\n\n".join(texts),
                    tool_calls=list(after.get("tool_log", [])[seen_calls:]), pending=pending,
                    error=after.get("error"), cost_usd=float(after.get("cost_usd", 0.0)) - cost_before)
        messages = after.get("messages", [])
        shown = [m for m in messages if m.get("role") in ("user", "assistant") and m.get("content")]
        first_user = next((m["content"] for m in messages if m.get("role") == "user"), "")
        self.threads.touch(self.thread_id, last_text=shown[-1]["content"] if shown else "",
                           messages=len(shown), waiting=bool(pending), first_user_text=first_user)
        return turn


def _waiting(snapshot: Any) -> list[dict[str, Any]] | None:
    for interrupt in snapshot.interrupts:
        value = interrupt.value
        if isinstance(value, dict) and "actions" in value:
            return list(value["actions"])
    return None


def _window(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The newest messages that fit ``HISTORY_CHARS``, starting at a user message."""
    kept: list[dict[str, Any]] = []
    size = 0
    for message in reversed(messages):
        size += len(str(message.get("content") or "")) + len(json.dumps(message.get("tool_calls", [])))
        if size > HISTORY_CHARS and kept:
            break
        kept.append(message)
    kept.reverse()
    while len(kept) > 1 and kept[0].get("role") != "user":
        kept.pop(0)  # never start with tool results whose calls were cut off
    return kept


def _answered(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every tool call followed by a result: a turn cut off by Ctrl-C or a crash left some
    unanswered, and providers reject a history like that."""
    answered = {m.get("tool_call_id") for m in messages if m.get("role") == "tool"}
    fixed: list[dict[str, Any]] = []
    for message in messages:
        fixed.append(message)
        for call in message.get("tool_calls") or []:
            if call["id"] not in answered:
                fixed.append({"role": "tool", "tool_call_id": call["id"],
                              "name": call["function"]["name"],
                              "content": "error: interrupted before this tool ran"})
    return fixed


def _rounds(messages: list[dict[str, Any]]) -> int:
    count = 0
    for message in reversed(messages):
        if message.get("role") == "user":
            break
        count += message.get("role") == "assistant"
    return count


def _tool_message(call: dict[str, Any], name: str, result: dict[str, Any]) -> dict[str, Any]:
    text = profile.clip(render_observation(result), MAX_OBSERVATION)
    return {"role": "tool", "tool_call_id": call["id"], "name": name,
            "content": profile.fence(text, label=f"{name} result")}


def _log(call: dict[str, Any], name: str, args: dict[str, Any], result: dict[str, Any]) -> dict[str, Any]:
    return {"id": call["id"], "name": name, "arguments": args, "ok": "error" not in result, "result": result}


def build_chat_graph(session: ChatSession, *, checkpointer: Any = None) -> Any:
    from langgraph.graph import END, START, StateGraph
    from langgraph.types import interrupt

    from daedalus.tools.llm_errors import LLMError

    hooks = lambda: session.hooks  # noqa: E731 - the UI may swap hooks between turns
    toolbox = session.toolbox

    def think(state: ChatState) -> dict[str, Any]:
        messages = state.get("messages", [])
        tools = toolbox.openai_tools() if _rounds(messages) < MAX_ROUNDS else None
        system = prompts.render("chat_system", auto_approve=session.auto_approve)
        try:
            completion = session.gateway.complete(
                [{"role": "system", "content": system}, *_answered(_window(messages))], tools=tools,
                on_delta=hooks().on_delta)
        except LLMError as exc:
            return {"error": redact(str(exc))}
        finally:
            hooks().on_reply_done()
        calls = completion.tool_calls if tools else []  # none were offered: ignore any
        message: dict[str, Any] = {"role": "assistant", "content": completion.text or (None if calls else "")}
        if calls:
            message["tool_calls"] = [
                {"id": c.get("id") or f"call_{uuid.uuid4().hex[:12]}", "type": "function",
                 "function": {"name": c["name"], "arguments": c.get("arguments") or "{}"}}
                for c in calls]
        return {"messages": [message], "error": None, "cost_usd": completion.cost_usd,
                "prompt_tokens": completion.prompt_tokens,
                "completion_tokens": completion.completion_tokens}

    def route_think(state: ChatState) -> Literal["act", "__end__"]:
        last = (state.get("messages") or [{}])[-1]
        return "act" if last.get("role") == "assistant" and last.get("tool_calls") else "__end__"

    def act(state: ChatState) -> dict[str, Any]:
        messages, log, pending = [], [], []
        for call in state["messages"][-1]["tool_calls"]:
            name = str((call.get("function") or {}).get("name") or "")
            args: dict[str, Any] = {}
            try:
                name, args = toolbox.parse(call)
            except ToolError as exc:
                result: dict[str, Any] = {"error": str(exc)}
            else:
                if name in toolbox.confirmed:
                    result, action = toolbox.prepare(name, args)
                    if action is not None:
                        pending.append({"call": call, "name": name, "arguments": args, "action": action})
                        continue
                else:
                    result = toolbox.run(name, args)
            hooks().on_tool(name, args, result)
            messages.append(_tool_message(call, name, result))
            log.append(_log(call, name, args, result))
        return {"messages": messages, "tool_log": log, "pending": pending}

    def route_act(state: ChatState) -> Literal["confirm", "think"]:
        return "confirm" if state.get("pending") else "think"

    def confirm(state: ChatState) -> dict[str, Any]:
        pending = state.get("pending") or []
        if session.auto_approve:
            return {"decisions": [{"approve": True, "note": "approved in advance (--yes)"}] * len(pending)}
        answer = interrupt({"actions": [describe(p["action"]) for p in pending]})
        if isinstance(answer, dict):
            decision = {"approve": bool(answer.get("approve")), "note": str(answer.get("note") or "")}
        else:
            decision = {"approve": bool(answer), "note": ""}
        return {"decisions": [decision] * len(pending)}

    def execute(state: ChatState) -> dict[str, Any]:
        messages, log = [], []
        for item, decision in zip(state.get("pending") or [], state.get("decisions") or [], strict=True):
            if decision["approve"]:
                hooks().on_status(item["action"]["summary"])
                result = toolbox.execute(item["action"])
            else:
                result = {"declined": True, "action": item["action"]["summary"],
                          "user_note": decision["note"] or "(none)",
                          "note": "the user declined; nothing was run or archived"}
            hooks().on_tool(item["name"], item["arguments"], result)
            messages.append(_tool_message(item["call"], item["name"], result))
            log.append(_log(item["call"], item["name"], item["arguments"], result))
        return {"messages": messages, "tool_log": log, "pending": [], "decisions": []}

    graph = StateGraph(ChatState, input_schema=ChatInput)
    for name, node in (("think", think), ("act", act), ("confirm", confirm), ("execute", execute)):
        graph.add_node(name, node)
    graph.add_edge(START, "think")
    graph.add_conditional_edges("think", route_think, {"act": "act", "__end__": END})
    graph.add_conditional_edges("act", route_act)
    graph.add_edge("confirm", "execute")
    graph.add_edge("execute", "think")
    return graph.compile(checkpointer=checkpointer)
