"""The chat agent in process: scripted conversations (real litellm against the stub server on
127.0.0.1) that call every archive tool, refine a candidate into a new archived child, answer
confirmations yes and no, and feed tool and model errors back without crashing."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from typing import Any

import pytest

from daedalus.agent.chat import ChatHooks, ChatSession
from daedalus.agent.chat_toolbox import tool_specs
from daedalus.archive import store
from tests.chat_helpers import HOSTILE, WRONG, World, make_world, tool_results, variant
from tests.stub_llm import Reply, StubLLM, ToolCall


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    return make_world(tmp_path_factory.mktemp("chat-world"))


@pytest.fixture
def chat(world: World, stub_llm: StubLLM) -> Iterator[Any]:
    """``chat(auto_approve=False)`` opens a session on the world's archive (closed after)."""
    opened: list[ChatSession] = []
    events: list[tuple[str, Any]] = []

    def open_session(*, auto_approve: bool = False, thread_id: str | None = None) -> ChatSession:
        hooks = ChatHooks(on_delta=lambda t: events.append(("delta", t)),
                          on_tool=lambda n, a, r: events.append(("tool", (n, a, r))),
                          on_status=lambda m: events.append(("status", m)))
        session = ChatSession(archive=world.archive, home=world.home, llm=stub_llm.llm_config(),
                              thread_id=thread_id, auto_approve=auto_approve, hooks=hooks)
        opened.append(session)
        return session

    open_session.events = events  # type: ignore[attr-defined]
    yield open_session
    for session in opened:
        session.close()


def _candidate(world: World, candidate_id: str) -> Any:
    with world.archive.session() as s:
        c = store.get_candidate(s, candidate_id=candidate_id)
        s.expunge(c)
        return c


def _checkpoints(world: World, thread_id: str) -> int:
    with sqlite3.connect(world.home / "chat.db") as conn:
        return int(conn.execute("SELECT count(*) FROM checkpoints WHERE thread_id = ?", (thread_id,)).fetchone()[0])


def _count(world: World) -> int:
    with world.archive.session() as s:
        return sum(store.count_by_status(s, run_id=world.run_id).values())


def test_every_tool_in_the_specs_has_an_implementation(chat: Any) -> None:
    session = chat()
    names = {spec["name"] for spec in tool_specs()}
    assert names == set(session.toolbox.plain) | set(session.toolbox.confirmed)
    assert len(names) == 14


def test_reading_runs_tasks_and_candidates(chat: Any, world: World, stub_llm: StubLLM) -> None:
    stub_llm.script([
        Reply(content="Let me look.", tool_calls=[
            ToolCall("list_runs", {}), ToolCall("list_tasks", {"category": "fusion"}),
            ToolCall("show_run", {"run": "latest"}),
            ToolCall("top_candidates", {"run": world.run_id[:5], "limit": 3})]),
        "The seed is the only correct candidate so far.",
    ])
    session = chat()
    turn = session.send("what did the last run find?")
    assert turn.error is None and turn.pending is None
    assert turn.reply.endswith("The seed is the only correct candidate so far.")
    results = {call["name"]: call["result"] for call in turn.tool_calls}
    assert all(call["ok"] for call in turn.tool_calls), turn.tool_calls
    assert world.run_id in [r["id"] for r in results["list_runs"]["runs"]]
    assert "swish_scale" in [t["name"] for t in results["list_tasks"]["tasks"]]
    assert results["show_run"]["id"] == world.run_id and results["show_run"]["status"] == "finished"
    assert results["top_candidates"]["candidates"][0]["id"] == world.seed_id
    # The model got the observations, fenced as archive data, in the same order as the calls.
    sent = tool_results(stub_llm.requests[1])
    assert len(sent) == 4 and all(o.startswith("<<<ARCHIVE DATA: ") for o in sent)
    assert world.seed_id in sent[3]
    # The system prompt and the tools were sent with the first request; the reply was streamed.
    assert {t["function"]["name"] for t in stub_llm.requests[0]["tools"]} >= {"show_candidate", "propose_variant"}
    assert stub_llm.requests[0]["stream"] is True
    assert "".join(e[1] for e in chat.events if e[0] == "delta").startswith("Let me look.")


def test_variant_confirmed_lands_in_the_archive_as_a_child(chat: Any, world: World, stub_llm: StubLLM) -> None:
    stub_llm.script([
        Reply(tool_calls=[ToolCall("propose_variant", {"candidate": world.seed_id[:8],
                                                       "instruction": "do it in place on one buffer"})]),
        variant(1),  # the variant writer's reply
        "Evaluated: it is correct.",
    ])
    session = chat()
    before = _count(world)
    turn = session.send("make the seed work in place")
    assert turn.pending is not None and turn.tool_calls == []
    action = turn.pending[0]
    assert action["kind"] == "variant" and action["parent"] == world.seed_id
    assert "+        y = F.silu(x)" in action["diff"]
    assert _count(world) == before  # nothing is archived or run before the yes
    # The variant writer got the parent's code (fenced) and the instruction (not fenced).
    writer = stub_llm.last_user_message(1)
    assert "do it in place on one buffer" in writer and "<<<ARCHIVE DATA: candidate code>>>" in writer
    assert session.pending() == turn.pending

    done = session.answer(True)
    assert done.pending is None and done.reply == "Evaluated: it is correct."
    result = done.tool_calls[0]["result"]
    assert result["status"] == "ok", result
    new = _candidate(world, result["candidate"])
    assert new.parent_id == world.seed_id and new.run_id == world.run_id
    assert (new.mode, new.proposer, new.instruction) == ("chat", "chat", "do it in place on one buffer")
    assert new.generation == 1 and "F.silu" in new.code and new.model == "openai/stub"
    assert _count(world) == before + 1

    # The same thread goes on: look at the child, its lineage and hardware, and diff it.
    stub_llm.script([
        Reply(tool_calls=[ToolCall("show_candidate", {"candidate": new.id}),
                          ToolCall("diff_candidates", {"a": world.seed_id, "b": new.id})]),
        "Here it is.",
    ])
    turn = session.send("show it and what changed")
    shown, diff = (call["result"] for call in turn.tool_calls)
    assert shown["lineage"]["ancestors"][0]["id"] == world.seed_id
    assert shown["hardware"] and shown["evaluation"]["status"] == "ok" and "class ModelNew" in shown["code"]
    assert "+        y = F.silu(x)" in diff["diff"] and diff["b"]["instruction"] == "do it in place on one buffer"
    # The earlier turn is part of the history the model sees.
    assert any(m.get("content") == "make the seed work in place" for m in stub_llm.requests[-1]["messages"])


@pytest.mark.parametrize("answer", ["no", "use a chunked loop instead"])
def test_variant_declined_runs_and_archives_nothing(chat: Any, world: World, stub_llm: StubLLM,
                                                   answer: str) -> None:
    stub_llm.script([
        Reply(tool_calls=[ToolCall("propose_variant", {"candidate": world.seed_id, "instruction": "fuse"})]),
        variant(2),
        "Understood, nothing was run.",
    ])
    session = chat()
    before = _count(world)
    assert session.send("vary the seed").pending
    # Superseded checkpoints are pruned; the waiting confirmation survives in the newest.
    assert _checkpoints(world, session.thread_id) == 1
    note = "" if answer == "no" else answer
    turn = session.answer(False, note)
    result = turn.tool_calls[0]["result"]
    assert result["declined"] is True and result["user_note"] == (note or "(none)")
    assert _count(world) == before and session.pending() is None
    assert "declined" in tool_results(stub_llm.requests[-1])[-1]


def test_auto_approved_failure_is_explained(chat: Any, world: World, stub_llm: StubLLM) -> None:
    stub_llm.script([
        Reply(tool_calls=[ToolCall("propose_variant", {"candidate": world.seed_id, "instruction": "subtract the bias"})]),
        WRONG,
        "It came out incorrect; let me see why.",
    ])
    session = chat(auto_approve=True)
    turn = session.send("try subtracting the bias")
    assert turn.pending is None  # --yes: no interrupt
    failed = turn.tool_calls[0]["result"]
    assert failed["status"] == "incorrect" and "atol" in failed["evaluation_error"]

    stub_llm.script([Reply(tool_calls=[ToolCall("explain_failure", {"candidate": failed["candidate"]})]),
                     "The bias sign is wrong."])
    turn = session.send("why did it fail?")
    evidence = turn.tool_calls[0]["result"]
    assert evidence["failed"] is True and evidence["evaluation"]["stage"] == "check"
    assert "values outside atol" in evidence["evaluation"]["error"]
    assert "- self.bias" in evidence["change_from_parent"]
    assert evidence["parent"]["id"] == world.seed_id


def test_rejected_variant_is_archived_without_asking(chat: Any, world: World, stub_llm: StubLLM) -> None:
    stub_llm.script([
        Reply(tool_calls=[ToolCall("propose_variant", {"candidate": world.seed_id, "instruction": "log something"})]),
        HOSTILE,
        "The policy refused it.",
    ])
    session = chat()
    turn = session.send("add logging")
    assert turn.pending is None
    result = turn.tool_calls[0]["result"]
    assert result["status"] == "rejected" and result["rule"], result
    row = _candidate(world, result["candidate"])
    assert row.status == "rejected" and row.parent_id == world.seed_id and row.mode == "chat"


def test_pin_ban_and_remove_guidance(chat: Any, world: World, stub_llm: StubLLM) -> None:
    stub_llm.script([
        Reply(tool_calls=[ToolCall("pin_idea", {"run": "latest", "text": "fuse the two loops"}),
                          ToolCall("ban_idea", {"run": world.run_id, "text": "torch.compile"}),
                          ToolCall("pin_idea", {"run": "latest", "text": "use a lookup table"})]),
        Reply(tool_calls=[ToolCall("remove_guidance", {"run": "latest", "number": 3}),
                          ToolCall("show_run", {"run": "latest"})]),
        "Pinned and banned.",
    ])
    turn = chat().send("pin loop fusion, ban torch.compile")
    results = [call["result"] for call in turn.tool_calls]
    assert all(call["ok"] for call in turn.tool_calls), results
    assert results[-1]["guidance"] == ["1. pin: fuse the two loops", "2. ban: torch.compile"]
    with world.archive.session() as s:
        stored = store.get_run(s, run_id=world.run_id).guidance
    assert [(g["kind"], g["text"]) for g in stored] == [("pin", "fuse the two loops"), ("ban", "torch.compile")]


def test_tool_and_model_errors_come_back_as_observations(chat: Any, world: World, stub_llm: StubLLM) -> None:
    stub_llm.script([
        Reply(tool_calls=[
            ToolCall("show_candidate", {"candidate": "ffffffffff"}),
            ToolCall("top_candidates", {"run": "latest", "limit": "many"}),
            ToolCall("launch_rockets", {}),
            ToolCall("diff_candidates", "{not json"),
            ToolCall("stop_run", {"run": world.run_id}),
            ToolCall("resume_run", {"run": "0000"}),
            ToolCall("start_run", {"task": "no_such_task"}),
            ToolCall("list_tasks", {"category": "nonsense"}),
        ]),
        "Some of that did not work.",
    ])
    session = chat()
    turn = session.send("do many things")
    assert turn.error is None and turn.reply == "Some of that did not work."
    errors = [call["result"].get("error", "") for call in turn.tool_calls]
    assert all(errors) and not any(call["ok"] for call in turn.tool_calls), errors
    assert "no candidate with id 'ffffffffff'" in errors[0]
    assert "limit" in errors[1] and "launch_rockets" in errors[2] and "JSON" in errors[3]
    assert "not running" in errors[4] and "no run" in errors[5] and "no_such_task" in errors[6]
    assert all("error: " in o for o in tool_results(stub_llm.requests[-1]))

    # The model itself failing (5xx on every retry) ends the turn with an error, not a crash.
    stub_llm.script([Reply.server_error(), Reply.server_error(), Reply.server_error(), "I am back."])
    turn = session.send("are you there?")
    assert turn.error and "HTTP 500" in turn.error and turn.reply == ""
    turn = session.send("still there?")
    assert turn.error is None and turn.reply == "I am back."
    # Both user messages stayed in the thread.
    users = [m["content"] for m in session.history() if m["role"] == "user"]
    assert users[-2:] == ["are you there?", "still there?"]


def test_thread_is_resumed_from_the_checkpointer(chat: Any, world: World, stub_llm: StubLLM) -> None:
    stub_llm.script(["Noted: PAPAYA."])
    first = chat()
    first.send("remember the word PAPAYA")
    thread_id = first.thread_id
    first.close()
    stub_llm.script(["The word was PAPAYA."])
    again = chat(thread_id=thread_id[:6])
    assert again.thread_id == thread_id
    again.send("which word?")
    contents = [m.get("content") for m in stub_llm.requests[-1]["messages"]]
    assert "remember the word PAPAYA" in contents and "Noted: PAPAYA." in contents
    assert json.dumps(again.history()).count("PAPAYA") == 3
    assert _checkpoints(world, thread_id) == 1


def test_one_shot_message_answers_a_waiting_confirmation(chat: Any, world: World, stub_llm: StubLLM) -> None:
    """`daedalus chat --thread T -m TEXT`: yes-words approve, no-words decline, other text
    declines with the text as the user's note."""
    from daedalus.agent.cli_chat import _one_shot

    for message, note in (("no", "(none)"), ("Nope.", "(none)"), ("rather try a chunked loop", "rather try a chunked loop")):
        stub_llm.script([
            Reply(tool_calls=[ToolCall("propose_variant", {"candidate": world.seed_id, "instruction": "fuse"})]),
            variant(3), "Not evaluated.",
        ])
        session = chat()
        assert _one_shot(session, "vary the seed", yes=False).pending
        turn = _one_shot(session, message, yes=False)
        result = turn.tool_calls[0]["result"]
        assert result["declined"] is True and result["user_note"] == note, (message, result)
        assert turn.reply == "Not evaluated." and session.pending() is None
    with pytest.raises(RuntimeError, match="nothing in this thread waits"):
        session.answer(True)


def test_a_model_that_never_stops_calling_tools_must_answer(chat: Any, stub_llm: StubLLM) -> None:
    from daedalus.agent.chat import MAX_ROUNDS

    stub_llm.script(lambda request: Reply(tool_calls=[ToolCall("list_runs", {})]) if request.get("tools")
                    else "Enough looking: here is the answer.")
    turn = chat().send("loop forever")
    assert turn.reply.endswith("Enough looking: here is the answer.")
    assert len(turn.tool_calls) == MAX_ROUNDS
    assert [bool(r.get("tools")) for r in stub_llm.requests] == [True] * MAX_ROUNDS + [False]
