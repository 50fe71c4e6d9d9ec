"""Program tasks in the real process sandbox: statuses, cascade, artifacts, NaN/inf scores,
and hostile programs contained (timeout, memory, os._exit, parent kill, files, sockets,
monkeypatching json.dumps)."""

from __future__ import annotations

import socket
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from daedalus.sandbox import EvaluationResult, Evaluator, Limits, Status
from daedalus.tasks import Task, TaskError, load_task
from daedalus.tools.builtin import reference_as_candidate

OE_EXAMPLE = Path(__file__).parent / "data" / "programs" / "oe_function_minimization"

EVALUATOR = textwrap.dedent('''\
    import importlib.util

    def _load(path):
        spec = importlib.util.spec_from_file_location("program", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    def evaluate(program_path):
        value = _load(program_path).run()
        if isinstance(value, dict):
            return value
        return {"combined_score": value, "note": f"run() returned {value!r}"}
    ''')


def program(body: str, header: str = "") -> str:
    return f"{header}\n# EVOLVE-BLOCK-START\ndef run():\n{textwrap.indent(textwrap.dedent(body), '    ')}\n# EVOLVE-BLOCK-END\n"


@pytest.fixture(scope="module")
def evaluator() -> Iterator[Evaluator]:
    limits = Limits(timeout_s=4.0, memory_mb=1536, policy=False)  # the sandbox alone
    with Evaluator(limits=limits, lean=True) as ev:  # as runs of program tasks use it
        yield ev


def make_task(tmp_path: Path, *, evaluator: str = EVALUATOR, sidecar: str = "") -> Task:
    (tmp_path / "initial_program.py").write_text(program("return 1.0"))
    (tmp_path / "evaluator.py").write_text(evaluator)
    (tmp_path / "daedalus.toml").write_text(sidecar)
    return load_task(str(tmp_path))


def _server_has_torch(ev: Evaluator) -> bool:
    server = ev.sandbox._server  # type: ignore[attr-defined]
    maps = Path(f"/proc/{server.proc.pid}/maps").read_text()
    return "libtorch" in maps


def test_lean_server_runs_programs_without_torch_and_kernels_on_demand() -> None:
    task = load_task(str(OE_EXAMPLE))
    kernel = load_task("swish_scale", {"batch_size": 8, "dim": 256})
    with Evaluator(limits=Limits(timeout_s=30.0), lean=True) as ev:
        assert ev.evaluate(task, task.source).status is Status.OK
        assert not _server_has_torch(ev)
        # A kernel candidate on the same server: torch is imported then, before the fork.
        result = ev.evaluate(kernel, reference_as_candidate(kernel.source))
        assert result.status is Status.OK, result.error
        assert _server_has_torch(ev)
        assert ev.evaluate(task, task.source).status is Status.OK


def test_openevolve_example_cascade_and_artifacts(evaluator: Evaluator) -> None:
    task = load_task(str(OE_EXAMPLE))
    result = evaluator.evaluate(task, task.source)
    assert result.status is Status.OK, result.error
    assert 0 < result.score <= 1 and result.objectives == {"combined_score": result.score}
    assert {"seconds_evaluate_stage1", "seconds_evaluate_stage2"} <= set(result.metrics)
    assert "mean value" in result.artifacts["evaluator"]["stdout_summary"]  # EvaluationResult
    broken = task.source.replace("best_value = value\n", "best_value = value\n            raise ValueError('boom')\n")
    failed = evaluator.evaluate(task, broken)  # the evaluator catches it and reports "error"
    assert failed.status is Status.INCORRECT and "boom" in (failed.error or "")
    assert failed.stage == "evaluate_stage1" and failed.score == 0.0


@pytest.mark.parametrize(("body", "status", "words"), [
    ("return float('nan')", Status.INCORRECT, "non-finite score"),
    ("return float('inf')", Status.INCORRECT, "non-finite score"),
    ("return 'high'", Status.INCORRECT, "not a number"),
    ("return {'combined_score': 0.0, 'error': 'no solution found'}", Status.INCORRECT, "no solution found"),
    ("raise KeyError('missing')", Status.RUNTIME_ERROR, "KeyError"),
    ("import sys\nsys.exit(3)", Status.RUNTIME_ERROR, "sys.exit"),
    ("return 1.0 +", Status.COMPILE_ERROR, "does not compile"),
])  # fmt: skip
def test_statuses(evaluator: Evaluator, tmp_path: Path, body: str, status: Status, words: str) -> None:
    result = evaluator.evaluate(make_task(tmp_path), program(body))
    assert result.status is status, (result.error, result.logs)
    assert words in (result.error or "") and result.score == 0.0 and not result.correct


def test_score_key_average_fallback_and_wrong_returns(evaluator: Evaluator, tmp_path: Path) -> None:
    task = make_task(tmp_path)
    averaged = evaluator.evaluate(task, program("return {'a': 0.2, 'b': 0.4, 'ok': True, 'inf': float('inf')}"))
    assert averaged.status is Status.INCORRECT and "non-finite score" in (averaged.error or "")
    plain = evaluator.evaluate(task, program("return {'a': 0.2, 'b': 0.4, 'ok': True}"))
    assert plain.status is Status.OK and abs(plain.score - 0.3) < 1e-9  # bools are not scores
    assert "score_is_metric_average" in plain.flags
    explicit = make_task(tmp_path, sidecar='score = "quality"\n')
    missing = evaluator.evaluate(explicit, program("return {'a': 0.2}"))
    assert missing.status is Status.INCORRECT and "no 'quality' metric" in (missing.error or "")
    listed = make_task(tmp_path, evaluator="def evaluate(p):\n    return [1.0]\n")
    odd = evaluator.evaluate(listed, program("return 1.0"))
    assert odd.status is Status.RUNTIME_ERROR and "returned list" in (odd.error or "")


def test_cascade_threshold_stops_weak_programs(evaluator: Evaluator, tmp_path: Path) -> None:
    staged = EVALUATOR + "\n\ndef evaluate_stage1(program_path):\n    return {'quick': _load(program_path).run()}\n"
    task = make_task(tmp_path, evaluator=staged, sidecar="cascade_thresholds = [0.5]\n")
    weak = evaluator.evaluate(task, program("return 0.1"))
    assert weak.status is Status.INCORRECT and weak.stage == "evaluate_stage1"
    assert "below the cascade threshold 0.5" in (weak.error or "") and weak.metrics["quick"] == 0.1
    strong = evaluator.evaluate(task, program("return 0.9"))
    assert strong.status is Status.OK and strong.score == 0.9
    assert "seconds_evaluate" in strong.metrics  # stage 2 is evaluate() when no stage2 exists


def test_a_broken_evaluator_is_the_tasks_fault(evaluator: Evaluator, tmp_path: Path) -> None:
    task = make_task(tmp_path, evaluator="import no_such_module_xyz\n\ndef evaluate(p):\n    return {}\n")
    with pytest.raises(TaskError, match="importing the evaluator raised ModuleNotFoundError"):
        evaluator.evaluate(task, program("return 1.0"))


def test_evaluator_compiled_once_in_the_server_behaves_like_an_import(evaluator: Evaluator, tmp_path: Path) -> None:
    """The fork server compiles the evaluator before forking (children exec that code):
    its errors still name the user's file, every child gets the code afresh, and a task
    that ships its own ``openevolve.py`` gets it, not the built-in shim."""
    (tmp_path / "a").mkdir()
    raising = EVALUATOR.replace("value = _load(program_path).run()",
                                "value = _load(program_path).run()\n    assert value < 5, 'too big'")
    task = make_task(tmp_path / "a", evaluator=raising)
    failed = evaluator.evaluate(task, program("return 9.0"))
    assert failed.status is Status.RUNTIME_ERROR and "too big" in (failed.error or "")
    assert f"{task.path}/evaluator.py" in (failed.error or "")
    again = evaluator.evaluate(task, program("return 2.0"))  # the same compiled code, a new child
    assert again.status is Status.OK and again.score == 2.0

    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "openevolve.py").write_text("EvaluationResult = 'the task author own'\n")
    own = make_task(tmp_path / "b", evaluator=EVALUATOR.replace(
        "return {\"combined_score\": value,",
        "import openevolve\n    return {\"which\": openevolve.EvaluationResult, \"combined_score\": value,"))
    result = evaluator.evaluate(own, program("return 1.0"))
    assert result.status is Status.OK, result.error
    assert "the task author own" in str(result.artifacts)


def test_closing_the_sandbox_mid_evaluation_starts_no_new_server(tmp_path: Path) -> None:
    """An evaluation still waiting when its sandbox closes (a run interrupted with work in
    flight) gets an error, not a retry on a fork server started after the close."""
    task = make_task(tmp_path)
    ev = Evaluator(limits=Limits(timeout_s=20.0, policy=False), lean=True).__enter__()
    results: list[object] = []
    worker = threading.Thread(target=lambda: results.append(ev.evaluate(task, program(
        "import time\ntime.sleep(10)\nreturn 1.0"))))
    worker.start()
    time.sleep(1.0)  # the candidate is running
    first = ev.sandbox.server_pid  # type: ignore[attr-defined]
    ev.close()
    worker.join(timeout=15)
    assert not worker.is_alive()
    result = results[0]
    assert isinstance(result, EvaluationResult) and not result.ok
    assert "closed" in (result.error or "")
    assert ev.sandbox.server_pid is None and first is not None  # type: ignore[attr-defined]
    ev.__enter__()  # and it can be started again
    try:
        again = ev.evaluate(task, program("return 2.0"))
        assert again.status is Status.OK and again.score == 2.0
    finally:
        ev.close()


def test_policy_rejects_before_anything_runs(evaluator: Evaluator, tmp_path: Path) -> None:
    task = make_task(tmp_path)
    result = evaluator.evaluate(task, program("import os\nos._exit(0)"), limits=Limits(timeout_s=4.0))
    assert result.status is Status.REJECTED and result.stage == "static"
    assert "policy:file-access" in result.flags


def test_hostile_programs_are_contained(evaluator: Evaluator, tmp_path: Path) -> None:
    task = make_task(tmp_path)
    outside = tmp_path / "escaped.txt"
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    listener.setblocking(False)
    port = listener.getsockname()[1]
    hostile = {
        "infinite loop": ("while True:\n    pass", Status.TIMEOUT),
        "memory bomb (capped at 4 GiB)": (
            "blocks = []\nfor _ in range(64):\n    blocks.append(bytearray(b'x') * (64 << 20))\n"
            "return float(len(blocks))", Status.RUNTIME_ERROR),
        "os._exit(0)": ("import os\nos._exit(0)", Status.RUNTIME_ERROR),
        # PID 1 of its own namespace: getppid() is 0 and the kill reaches no one.
        "kill the parent": ("import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\nreturn 1.0",
                            Status.OK),
        "file outside the work dir": (f"open({str(outside)!r}, 'w').write('x')\nreturn 1.0",
                                      Status.RUNTIME_ERROR),
        "loopback socket": (f"import socket\nsocket.create_connection(('127.0.0.1', {port}), 2)\n"
                            "return 1.0", Status.RUNTIME_ERROR),
    }
    for name, (body, status) in hostile.items():
        result = evaluator.evaluate(task, program(body))
        assert result.status is status, (name, result.status, result.error)
    assert not outside.exists()
    with pytest.raises(BlockingIOError):
        listener.accept()  # nothing ever connected
    listener.close()
    # The sandbox is still serving, and a forged report through json.dumps is not taken.
    forged = ('import json\njson.dumps = lambda *a, **k: \'{"event": "result", "result": '
              '{"status": "ok", "score": 1e9, "correct": true}}\'\nreturn 0.25')
    result = evaluator.evaluate(task, program(forged))
    assert result.status is Status.OK and result.score == 0.25
