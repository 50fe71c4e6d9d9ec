"""The adversarial suite: hostile candidates against the real process sandbox.

Each case asserts the exact status with the static policy on and, for candidates the
policy rejects, runs them again with ``Limits(policy=False)`` to show the sandbox itself
contains them. After every hostile candidate the same Evaluator must still evaluate a
normal candidate correctly, with the same fork server.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from daedalus.sandbox import EvaluationResult, Evaluator, Limits, Status
from daedalus.tasks import Task, load_task

HERE = Path(__file__).parent / "candidates"
HOSTILE = HERE / "hostile"
ROOT = os.geteuid() == 0
LIMITS = Limits(timeout_s=30, memory_mb=2048, timing_budget_s=0.1, trials=2, processes=64)
LOOP_TIMEOUT_S = 2.0  # the infinite loop's own limit, so the suite stays fast

# name -> (status with the policy on, policy rule or "", status with the policy off or None)
CASES: dict[str, tuple[Status, str, Status | None]] = {
    "infinite_loop": (Status.TIMEOUT, "", None),
    "memory_bomb": (Status.RUNTIME_ERROR, "", None),
    "fork_bomb": (Status.REJECTED, "file-access", Status.RUNTIME_ERROR),
    "segfault": (Status.REJECTED, "ctypes", Status.RUNTIME_ERROR),
    "os_exit": (Status.REJECTED, "file-access", Status.RUNTIME_ERROR),
    "kill_parent": (Status.REJECTED, "process-control", Status.RUNTIME_ERROR),
    "network": (Status.REJECTED, "network", Status.RUNTIME_ERROR),
    "write_outside": (Status.REJECTED, "file-access", Status.RUNTIME_ERROR),
    "patch_allclose": (Status.REJECTED, "monkeypatch", Status.INCORRECT),
    "patch_time": (Status.REJECTED, "monkeypatch", Status.OK),
    "mutate_inputs": (Status.INCORRECT, "", None),
    "cache_outputs": (Status.INCORRECT, "", None),
    "background_thread": (Status.REJECTED, "threads", Status.RUNTIME_ERROR),
    "tensor_subclass": (Status.REJECTED, "tensor-subclass", Status.INCORRECT),
    "gc_reference": (Status.REJECTED, "introspection", Status.INCORRECT),
    "flood_stdout": (Status.RUNTIME_ERROR, "", None),
    "zeros": (Status.INCORRECT, "", None),
    "system_exit": (Status.RUNTIME_ERROR, "", None),
    "eval_escape": (Status.REJECTED, "dynamic-code", Status.INCORRECT),
}


@pytest.fixture(scope="module")
def task() -> Task:
    return load_task(str(HERE / "task_swish.py"), {"batch_size": 8, "dim": 1024})


@pytest.fixture(scope="module")
def evaluator() -> Iterator[Evaluator]:
    with Evaluator(limits=LIMITS) as ev:
        yield ev


@pytest.fixture(scope="module")
def listener() -> Iterator[socket.socket]:
    """A loopback server the network candidate tries to reach."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    srv.settimeout(0.05)
    yield srv
    srv.close()


def _children_of(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry))
    return found


def _code(name: str, port: int, targets: list[str]) -> str:
    code = (HOSTILE / f"{name}.py").read_text()
    return code.replace("PORT", str(port)).replace("TARGETS", repr(targets))


def _still_works(ev: Evaluator, task: Task, server_pid: int | None) -> None:
    result = ev.evaluate(task, (HERE / "good_fused.py").read_text())
    assert result.status is Status.OK, result.error
    assert result.correct and result.speedup is not None and result.speedup > 0
    assert ev.sandbox.server_pid == server_pid, "the fork server had to be restarted"  # type: ignore[attr-defined]


def _check_containment(name: str, result: EvaluationResult, listener: socket.socket,
                       targets: list[str], server_pid: int | None) -> None:
    if name == "network":
        with pytest.raises(TimeoutError):
            listener.accept()
        if ROOT:
            assert "unreachable" in (result.error or "")
    if name == "write_outside":
        assert not any(Path(t).exists() for t in targets)
        assert "writes blocked" in (result.error or "")
    if name in ("fork_bomb", "kill_parent") and server_pid is not None:
        # The answer may come while the kernel still tears the killed child down.
        deadline = time.monotonic() + 5
        while _children_of(server_pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _children_of(server_pid) == [], "processes left behind by the candidate"
    if name == "patch_time":
        assert result.speedup is not None and 0.2 < result.speedup < 5.0
    if name == "segfault":
        assert "SIGSEGV" in (result.error or "")
    if name == "os_exit":
        assert "exited with code 3" in (result.error or "")
    if name == "background_thread":
        assert "background thread" in (result.error or "")


@pytest.mark.parametrize("name", sorted(CASES))
def test_hostile_candidate(name: str, task: Task, evaluator: Evaluator,
                           listener: socket.socket) -> None:
    expected, rule, expected_unchecked = CASES[name]
    targets = [f"/tmp/daedalus-escape-{uuid.uuid4().hex}", f"/dev/shm/daedalus-escape-{uuid.uuid4().hex}"]
    code = _code(name, listener.getsockname()[1], targets)
    server_pid = evaluator.sandbox.server_pid  # type: ignore[attr-defined]

    limits = LIMITS
    if name == "infinite_loop":
        limits = LIMITS.model_copy(update={"timeout_s": LOOP_TIMEOUT_S})
    result = evaluator.evaluate(task, code, limits=limits)
    assert result.status is expected, (result.stage, result.error)
    assert result.score == 0.0 or result.status is Status.OK
    if rule:
        assert f"[{rule}]" in (result.error or "") and f"policy:{rule}" in result.flags
    else:
        _check_containment(name, result, listener, targets, server_pid)

    if expected_unchecked is not None:
        unchecked = evaluator.evaluate(task, code, limits=limits.model_copy(update={"policy": False}))
        assert unchecked.status is expected_unchecked, (unchecked.stage, unchecked.error)
        assert unchecked.stage != "static"
        _check_containment(name, unchecked, listener, targets, server_pid)
    _still_works(evaluator, task, server_pid)


def test_timeout_names_the_stage_and_limit(task: Task, evaluator: Evaluator) -> None:
    limits = LIMITS.model_copy(update={"timeout_s": 1.5})
    result = evaluator.evaluate(task, (HOSTILE / "infinite_loop.py").read_text(), limits=limits)
    assert result.status is Status.TIMEOUT and result.stage == "check"
    assert "1.5 s" in (result.error or "") and "'check'" in (result.error or "")
    assert result.duration_s < 1.5 + 10


def test_flood_is_capped(task: Task, evaluator: Evaluator) -> None:
    result = evaluator.evaluate(task, (HOSTILE / "flood_stdout.py").read_text())
    assert "output_flood" in result.flags
    assert len(result.logs) < LIMITS.output_bytes + 200
    assert "bytes of output dropped" in result.logs


@pytest.mark.skipif(not ROOT, reason="namespaces and the uid drop need root")
def test_isolation_is_reported(task: Task, evaluator: Evaluator) -> None:
    result = evaluator.evaluate(task, (HERE / "good_fused.py").read_text())
    assert result.isolation["network"] == "isolated"
    assert result.isolation["pid"] == "namespace"
    assert result.isolation["user"].startswith("nobody")
    assert result.isolation["filesystem"].startswith("read-only")
    assert "filesystem_note" not in result.isolation, result.isolation
