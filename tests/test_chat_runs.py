"""Runs started, watched, stopped, steered and resumed from the chat.

The chat and the background `daedalus run` it starts both talk to the stub LLM on 127.0.0.1
(the run's LLM proposer writes candidates there), so the test can also check that ideas
pinned and banned in the chat reach the run's proposal prompts after it is resumed.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from daedalus.agent.chat import ChatSession
from daedalus.archive import store
from daedalus.archive.db import Archive, open_archive
from tests.chat_helpers import is_chat_request, variant
from tests.stub_llm import Reply, StubLLM, ToolCall

SIZE = {"dim": 4096, "batch_size": 64}


class Script:
    """Chat requests get the scripted replies in order; the run's proposer gets variants."""

    def __init__(self) -> None:
        self.chat: list[Reply | str] = []
        self.proposals: list[str] = []  # the user prompts the run's proposer was sent
        self._count = itertools.count(1)
        self._lock = threading.Lock()

    def __call__(self, request: dict[str, Any]) -> Reply | str:
        with self._lock:
            if is_chat_request(request):
                return self.chat.pop(0) if self.chat else "(the test script ran out)"
            system = str(request["messages"][0].get("content", ""))
            if "analyst" in system.lower():
                return "- In-place chains beat the reference."
            self.proposals.append(str(request["messages"][-1]["content"]))
            # A little slow, so the run is still going when the chat stops it.
            return Reply.slow(0.4, variant(next(self._count)))


def _wait(what: str, check: Callable[[], bool], timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.5)


def _run(archive: Archive, run_id: str) -> Any:
    with archive.session() as s:
        run = store.get_run(s, run_id=run_id)
        s.expunge(run)
        return run


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
def started() -> Iterator[list[int]]:
    """Pids of background runs; any still alive at the end are killed with their group."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)


def test_start_watch_stop_steer_and_resume_a_run(tmp_path: Path, stub_llm: StubLLM,
                                                 started: list[int]) -> None:
    script = Script()
    stub_llm.script(script)
    archive = open_archive(f"sqlite:///{tmp_path / '.daedalus' / 'archive.db'}")
    session = ChatSession(archive=archive, home=tmp_path / ".daedalus", llm=stub_llm.llm_config())
    try:
        # Start: the confirmation shows what will run; nothing exists before the yes.
        script.chat += [Reply(tool_calls=[ToolCall("start_run", {
            "task": "swish_scale", "iterations": 50, "proposer": "llm", "overrides": SIZE,
            "workers": 1})]), "Started it."]
        turn = session.send("start an LLM run on small swish_scale")
        (action,) = turn.pending or []
        assert action["kind"] == "start_run" and "50 proposals by the llm proposer" in action["summary"]
        with archive.session() as s:
            assert store.list_runs(s) == []
        turn = session.answer(True)
        result = turn.tool_calls[0]["result"]
        assert result["started"] is True and result["new_run"] is True, result
        run_id = result["run"]
        started.append(result["pid"])
        assert turn.reply == "Started it."

        # Watch: progress is read from the archive while the run works in the background.
        _wait("the first proposal", lambda: _run(archive, run_id).iterations >= 1)
        script.chat += [Reply(tool_calls=[ToolCall("show_run", {"run": "latest"})]), "It is running."]
        progress = session.send("how is it going?").tool_calls[0]["result"]
        assert progress["id"] == run_id and progress["status"] == "running" and progress["alive"] is True
        assert progress["spent"]["proposals"] >= 1 and progress["settings"]["proposers"] == ["llm"]

        # Stop: the run finishes its step and says so in the archive.
        script.chat += [Reply(tool_calls=[ToolCall("stop_run", {"run": run_id})]), "Stopping."]
        stopping = session.send("stop it").tool_calls[0]["result"]
        assert stopping["stopping"] is True, stopping
        _wait("the run to stop", lambda: _run(archive, run_id).status == "stopped")
        made = _run(archive, run_id).iterations
        assert made < 50

        # Steer, then resume with one more proposal.
        script.chat += [Reply(tool_calls=[
            ToolCall("pin_idea", {"run": run_id, "text": "fuse the scale into the bias add"}),
            ToolCall("ban_idea", {"run": run_id, "text": "torch.compile"}),
            ToolCall("resume_run", {"run": run_id, "more_iterations": 1})]), "Resumed."]
        turn = session.send("pin fusing the scale, ban torch.compile, and give it one more try")
        (action,) = turn.pending or []
        assert action["kind"] == "resume_run" and f"{made + 1} in all" in action["summary"]
        seen = len(script.proposals)
        turn = session.answer(True)
        resumed = turn.tool_calls[-1]["result"]
        assert resumed["started"] is True and resumed["new_run"] is False, resumed
        started.append(resumed["pid"])
        _wait("the resumed run to finish", lambda: _run(archive, run_id).status == "finished")
        run = _run(archive, run_id)
        assert run.iterations == made + 1

        # The proposal made after the resume was told the pinned and banned ideas, apart.
        prompt = script.proposals[seen]
        assert "Pursue these ideas (pinned by the user):\n- fuse the scale into the bias add" in prompt
        assert "Never use these ideas (banned by the user)" in prompt and "- torch.compile" in prompt
        assert all("pinned by the user" not in p for p in script.proposals[:seen])
        # Both background processes logged their summaries to the run's chat log.
        _wait("the resumed process to exit", lambda: not _alive(resumed["pid"]), timeout=60)
        log = (tmp_path / ".daedalus" / "chat-runs" / f"{run_id}.log").read_text()
        assert '"status": "stopped"' in log and '"status": "finished"' in log
    finally:
        session.close()
