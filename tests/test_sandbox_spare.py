"""Spare children for program tasks (sandbox/spare.py), through the real fork server: a
spare is isolated and has the evaluator loaded before its candidate exists; anything it
cannot serve falls back to a freshly forked child, and nothing is left behind."""

from __future__ import annotations

import functools
import os
import signal
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from daedalus.sandbox import Evaluator, Limits, Status
from daedalus.tasks import Task, TaskError, load_task

SPARE = "spare: isolated, evaluator loaded, then given its candidate"

EVALUATOR = textwrap.dedent('''\
    import importlib.util
    import os

    LOADED_BY = os.getpid()  # the process that imported this module

    def evaluate(program_path):
        spec = importlib.util.spec_from_file_location("program", program_path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return {"combined_score": module.run(), "same_process": float(LOADED_BY == os.getpid())}
    ''')


def program(value: str) -> str:
    return f"# EVOLVE-BLOCK-START\ndef run():\n    return {value}\n# EVOLVE-BLOCK-END\n"


def make_task(tmp_path: Path, evaluator: str = EVALUATOR) -> Task:
    (tmp_path / "initial_program.py").write_text(program("1.0"))
    (tmp_path / "evaluator.py").write_text(evaluator)
    return load_task(str(tmp_path))


def server_children(ev: Evaluator) -> list[int]:
    server = ev.sandbox._server.proc.pid  # type: ignore[attr-defined]
    return [int(pid) for pid in os.listdir("/proc") if pid.isdigit() and _ppid(pid) == server]


def _ppid(pid: str) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def _state(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def _gone(pid: int) -> bool:
    return _state(pid) in ("Z", None)  # a zombie or reaped


def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def test_later_candidates_run_in_spares_that_loaded_the_evaluator_first(tmp_path: Path) -> None:
    task = make_task(tmp_path)
    with Evaluator(limits=Limits(timeout_s=10.0), lean=True) as ev:
        first = ev.evaluate(task, program("0.25"))
        later = [ev.evaluate(task, program(f"0.{i}")) for i in range(3, 6)]
        assert first.status is Status.OK and first.score == 0.25
        assert "child" not in first.isolation  # nothing was prepared for the first one
        for i, result in enumerate(later, start=3):
            assert result.status is Status.OK and result.score == pytest.approx(i / 10)
            assert result.isolation["child"] == SPARE
            # The same isolation as a fresh child, and the evaluator ran in the candidate's
            # own process: imported there before the candidate arrived.
            assert result.isolation["network"] == "isolated"
            assert result.metrics["same_process"] == 1.0
            assert result.metrics["seconds_load_evaluator"] < first.metrics["seconds_load_evaluator"]
        assert wait_for(lambda: len(server_children(ev)) == 1)  # exactly one spare waits
        work_root = Path(ev.sandbox._server.work_root)  # type: ignore[attr-defined]
        assert len(list(work_root.glob("c-*"))) == 1  # the spare's directory
    assert not work_root.exists()  # closing removed the spare's directory with the rest


def test_other_limits_or_a_dead_spare_get_a_fresh_child(tmp_path: Path) -> None:
    task = make_task(tmp_path)
    with Evaluator(limits=Limits(timeout_s=10.0), lean=True) as ev:
        ev.evaluate(task, program("0.1"))
        other = ev.evaluate(task, program("0.2"), limits=Limits(timeout_s=9.0))
        assert other.status is Status.OK and "child" not in other.isolation  # spare discarded
        again = ev.evaluate(task, program("0.3"), limits=Limits(timeout_s=9.0))
        assert again.isolation.get("child") == SPARE  # a spare made for the new limits
        assert wait_for(lambda: len(server_children(ev)) == 1)
        for pid in server_children(ev):
            os.kill(pid, signal.SIGKILL)  # the waiting spare dies before its hand-over
            assert wait_for(functools.partial(_gone, pid))
        survived = ev.evaluate(task, program("0.4"), limits=Limits(timeout_s=9.0))
        assert survived.status is Status.OK and survived.score == 0.4
        assert "child" not in survived.isolation
        server = ev.sandbox._server.proc.pid  # type: ignore[attr-defined]
    assert wait_for(lambda: not Path(f"/proc/{server}").exists())
    zombies = [p for p in os.listdir("/proc") if p.isdigit() and _ppid(p) == server]
    assert zombies == []


def test_a_broken_evaluator_fails_the_same_way_in_a_spare(tmp_path: Path) -> None:
    task = make_task(tmp_path, evaluator="import no_such_module_xyz\n\ndef evaluate(p):\n    return {}\n")
    with Evaluator(limits=Limits(timeout_s=10.0), lean=True) as ev:
        for _ in range(2):  # a fresh child, then a spare that kept the import error
            with pytest.raises(TaskError, match="importing the evaluator raised ModuleNotFoundError"):
                ev.evaluate(task, program("1.0"))


def test_a_hostile_candidate_in_a_spare_is_contained_and_the_next_one_runs(tmp_path: Path) -> None:
    task = make_task(tmp_path)
    body = "(lambda: [0 for _ in iter(int, 1)])()"  # runs forever
    with Evaluator(limits=Limits(timeout_s=1.5, policy=False), lean=True) as ev:
        ev.evaluate(task, program("0.1"))
        stuck = ev.evaluate(task, program(body))
        assert stuck.status is Status.TIMEOUT and stuck.isolation.get("child") == SPARE
        assert stuck.duration_s < 10  # the deadline counts from the hand-over
        after = ev.evaluate(task, program("0.7"))
        assert after.status is Status.OK and after.score == 0.7


def test_spares_can_be_turned_off(tmp_path: Path) -> None:
    task = make_task(tmp_path)
    with Evaluator(limits=Limits(timeout_s=10.0), lean=True, spares=False) as ev:
        results = [ev.evaluate(task, program(f"0.{i}")) for i in range(1, 4)]
        assert [r.score for r in results] == [0.1, 0.2, 0.3]
        assert all("child" not in r.isolation for r in results)
        assert wait_for(lambda: server_children(ev) == [])  # nothing prepared, nothing waiting
