"""`daedalus chat` as a user runs it: separate processes, the stub LLM on 127.0.0.1 through the
real litellm client. Threads resume in a new process, a confirmation asked in one process is
answered in the next, the interactive session reads piped input, and without an LLM the
command says how to configure one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from daedalus.archive import store
from tests.chat_helpers import World, make_world, variant
from tests.stub_llm import Reply, StubLLM, ToolCall

DAEDALUS = [sys.executable, "-m", "daedalus.agent.cli"]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    return make_world(tmp_path_factory.mktemp("chat-cli"))


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("DAEDALUS_MODEL", "DAEDALUS_API_BASE", "DAEDALUS_API_KEY_ENV",
                        "DAEDALUS_DATABASE_URL", "OPENAI_API_KEY")}
    env["COLUMNS"] = "200"  # rich wraps at 80 columns otherwise when not on a terminal
    return env


def _chat(cwd: Path, *args: str, stub: StubLLM | None = None, stdin: str | None = None,
          timeout: float = 180) -> subprocess.CompletedProcess[str]:
    llm = ["--model", "openai/stub", "--api-base", stub.url] if stub is not None else []
    return subprocess.run([*DAEDALUS, "chat", *args, *llm], cwd=cwd, env=_env(), input=stdin,
                          capture_output=True, text=True, timeout=timeout)


def _json(out: subprocess.CompletedProcess[str]) -> Any:
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def _count(world: World) -> int:
    with world.archive.session() as s:
        return sum(store.count_by_status(s, run_id=world.run_id).values())


def test_without_an_llm_it_says_how_to_configure_one(tmp_path: Path) -> None:
    for args in (["-m", "hello"], []):
        out = _chat(tmp_path, *args)
        assert out.returncode == 2, out.stdout + out.stderr
        message = " ".join(out.stderr.split())
        assert "daedalus chat needs an LLM" in message
        assert "--model" in message and "DAEDALUS_MODEL" in message and "--api-base" in message
    # A model whose provider key is missing: name the key variable, or --api-base.
    out = _chat(tmp_path, "-m", "hello", "--model", "gpt-4o")
    message = " ".join(out.stderr.split())
    assert out.returncode == 2 and "OPENAI_API_KEY" in message and "--api-base" in message, message
    out = _chat(tmp_path, "--json")
    assert out.returncode == 2 and "--json needs a message" in out.stderr
    # Listing threads needs no LLM and creates nothing.
    out = _chat(tmp_path, "--list")
    assert out.returncode == 0 and "no chat threads" in out.stdout
    assert json.loads(_chat(tmp_path, "--list", "--json").stdout) == []
    assert not (tmp_path / ".daedalus").exists()


def test_thread_resumed_in_a_new_process(world: World, stub_llm: StubLLM) -> None:
    stub_llm.script(["Noted: PAPAYA.", "The word was PAPAYA."])
    first = _json(_chat(world.root, "-m", "remember the word PAPAYA", "--json", stub=stub_llm))
    thread = first["thread_id"]
    assert first["reply"] == "Noted: PAPAYA." and first["pending_confirmation"] is None
    second = _json(_chat(world.root, "--thread", thread[:5], "-m", "which word?", "--json", stub=stub_llm))
    assert second["thread_id"] == thread and second["reply"] == "The word was PAPAYA."
    # The second process sent the whole thread, read back from the checkpointer.
    sent = [(m["role"], m.get("content")) for m in stub_llm.requests[1]["messages"][1:]]
    assert sent == [("user", "remember the word PAPAYA"), ("assistant", "Noted: PAPAYA."),
                    ("user", "which word?")]
    listed = {t["id"]: t for t in json.loads(_chat(world.root, "--list", "--json").stdout)}
    assert listed[thread]["title"] == "remember the word PAPAYA"
    assert listed[thread]["preview"] == "The word was PAPAYA." and listed[thread]["messages"] == 4
    human = _chat(world.root, "--list")
    assert thread in human.stdout and "daedalus chat --thread ID" in human.stdout
    out = _chat(world.root, "--thread", "zzzz", "-m", "hi", stub=stub_llm)
    assert out.returncode == 2 and "no chat thread 'zzzz'" in out.stderr and "--list" in out.stderr


def test_confirmation_asked_in_one_process_is_answered_in_the_next(world: World, stub_llm: StubLLM) -> None:
    instruction = "do the swish in place"
    stub_llm.script([
        Reply(tool_calls=[ToolCall("propose_variant", {"candidate": world.seed_id, "instruction": instruction})]),
        variant(7),
        "Evaluated; it is correct.",
    ])
    before = _count(world)
    asked = _chat(world.root, "-m", "make the seed faster in place", stub=stub_llm)
    assert asked.returncode == 0, asked.stderr
    # The human output shows what waits (the summary and the diff) and how to answer.
    assert "confirm" in asked.stdout and "y = F.silu(x)" in asked.stdout
    thread = asked.stdout.split("answer with: daedalus chat --thread ")[1].split()[0]
    assert _count(world) == before
    listed = {t["id"]: t for t in json.loads(_chat(world.root, "--list", "--json").stdout)}
    assert listed[thread]["waiting_for_confirmation"] is True

    done = _json(_chat(world.root, "--thread", thread, "-m", "yes", "--json", stub=stub_llm))
    assert done["reply"] == "Evaluated; it is correct." and done["pending_confirmation"] is None
    (call,) = done["tool_calls"]
    assert call["name"] == "propose_variant" and call["result"]["status"] == "ok", call
    with world.archive.session() as s:
        row = store.get_candidate(s, candidate_id=call["result"]["candidate"])
        assert (row.parent_id, row.mode, row.proposer, row.instruction) == (
            world.seed_id, "chat", "chat", instruction)
        assert row.evaluation is not None and row.evaluation.speedup
    assert _count(world) == before + 1
    listed = {t["id"]: t for t in json.loads(_chat(world.root, "--list", "--json").stdout)}
    assert listed[thread]["waiting_for_confirmation"] is False


def test_interactive_session_with_piped_input(world: World, stub_llm: StubLLM) -> None:
    stub_llm.script([
        Reply(content="Looking.", tool_calls=[ToolCall("list_runs", {})]),
        "There is **one** run.",
        Reply(tool_calls=[ToolCall("propose_variant", {"candidate": world.seed_id, "instruction": "fuse"})]),
        variant(9),
        "OK, I will not evaluate it.",
    ])
    before = _count(world)
    out = _chat(world.root, stub=stub_llm, stdin="what runs are there?\n/thread\nvary the seed\nno\n/exit\n")
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "daedalus chat · thread" in text and "list_runs" in text
    assert "There is one run." in text  # rendered Markdown, not raw asterisks
    assert "confirm" in text and "y = F.silu(x)" in text and "OK, I will not evaluate it." in text
    assert "resume this thread with: daedalus chat --thread" in text
    assert _count(world) == before
