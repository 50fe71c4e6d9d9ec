"""The evaluation cascade on the real process sandbox: statuses, timing, duplicates,
broken tasks, concurrency and fork-server recovery."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from daedalus.sandbox import Evaluator, Limits, Status, evaluate, get_sandbox
from daedalus.sandbox.backends import BackendUnavailable
from daedalus.sandbox.isolation import clear_stale_build_locks, hold_build_dir, prepare_dir
from daedalus.tasks import Task, TaskError, load_task

HERE = Path(__file__).parent / "candidates"
LIMITS = Limits(timeout_s=60, timing_budget_s=0.3, trials=2)


def code(name: str) -> str:
    return (HERE / f"{name}.py").read_text()


@pytest.fixture(scope="module")
def swish() -> Task:
    return load_task(str(HERE / "task_swish.py"), {"batch_size": 8, "dim": 1024})


@pytest.fixture(scope="module")
def evaluator() -> Iterator[Evaluator]:
    with Evaluator(limits=LIMITS) as ev:
        yield ev


def test_faster_candidate_is_ok_with_speedup(evaluator: Evaluator) -> None:
    task = load_task(str(HERE / "task_precision.py"), {"rows": 64})
    result = evaluator.evaluate(task, code("fast_precision"), limits=LIMITS.model_copy(
        update={"timing_budget_s": 1.0, "trials": 5}))
    assert result.status is Status.OK and result.stage == "timing", result.error
    assert result.correct and result.speedup is not None and result.speedup > 1.0
    assert result.score == result.speedup == result.objectives["speedup"]
    m = result.metrics
    for key in ("ref_ms", "cand_ms", "speedup", "ref_iqr_rel", "cand_iqr_rel", "threads",
                "repeats", "max_abs_error"):
        assert key in m
    assert m["threads"] == 1.0 and m["repeats"] >= 3 and m["trials"] == 6
    assert m["speedup"] == pytest.approx(m["ref_ms"] / m["cand_ms"])
    fp = result.fingerprint
    for key in ("cpu_model", "cores", "torch", "python", "compiler", "os"):
        assert fp.get(key), key
    assert result.functional_hash is not None and len(result.functional_hash) == 64
    assert result.artifacts["code_hash"] and result.duration_s > 0


def test_speedup_above_10x_is_reverified_and_flagged(evaluator: Evaluator) -> None:
    task = load_task(str(HERE / "task_rowloop.py"))
    result = evaluator.evaluate(task, code("fast_rowloop"))
    assert result.status is Status.OK, result.error
    assert result.speedup is not None and result.speedup > 10
    assert "speedup_above_10x_reverified" in result.flags


def test_every_timed_output_is_checked(evaluator: Evaluator, swish: Task) -> None:
    result = evaluator.evaluate(swish, code("lazy_later"))
    assert result.status is Status.INCORRECT and result.stage == "timing", result.error
    assert result.score == 0.0 and result.speedup is None


def test_functional_duplicate_is_rejected(evaluator: Evaluator, swish: Task) -> None:
    first = evaluator.evaluate(swish, code("good_fused"))
    assert first.status is Status.OK and first.functional_hash
    dup = evaluator.evaluate(swish, code("swish_renamed"), known_functional={first.functional_hash})
    assert dup.status is Status.REJECTED and dup.stage == "duplicate"
    assert "functional_duplicate" in dup.flags and dup.functional_hash == first.functional_hash
    assert "seconds_timing" not in dup.metrics  # stopped before timing
    assert dup.artifacts["code_hash"] != first.artifacts["code_hash"]
    other = evaluator.evaluate(swish, code("good_fused"), known_functional={"0" * 64})
    assert other.status is Status.OK


def test_tolerances(evaluator: Evaluator, swish: Task) -> None:
    off = evaluator.evaluate(swish, code("slightly_off"))
    assert off.status is Status.INCORRECT and "atol=0.0001" in (off.error or "")
    loose = Task(**{**swish.__dict__, "atol": 1e-2, "rtol": 1e-2})
    assert evaluator.evaluate(loose, code("slightly_off")).status is Status.OK
    half = load_task(str(HERE / "task_half.py"))
    result = evaluator.evaluate(half, code("half_via_float"))
    assert result.status is Status.OK, result.error
    assert 0 < result.metrics["max_abs_error"] <= 1e-2 + 1e-2 * 8


def test_reference_outputs_aliasing_state_are_not_poisoned(evaluator: Evaluator) -> None:
    # Model returns a tensor attribute and a task constant; poisoning the kept-alive
    # reference outputs must not corrupt them for the next trial.
    result = evaluator.evaluate(load_task(str(HERE / "task_alias.py")), code("alias_state"))
    assert result.status is Status.OK, result.error


@pytest.mark.parametrize(
    ("name", "status", "stage", "text"),
    [
        ("bad_init", Status.COMPILE_ERROR, "compile", "refusing to build"),
        ("no_model_new", Status.COMPILE_ERROR, "compile", "class ModelNew"),
    ],
)
def test_compile_errors(evaluator: Evaluator, swish: Task, name: str, status: Status,
                        stage: str, text: str) -> None:
    result = evaluator.evaluate(swish, code(name))
    assert (result.status, result.stage) == (status, stage)
    assert text in (result.error or "")


def test_syntax_error_is_a_compile_error_without_a_fork(evaluator: Evaluator, swish: Task) -> None:
    result = evaluator.evaluate(swish, "class ModelNew(:\n")
    assert result.status is Status.COMPILE_ERROR and result.stage == "static"
    assert "[syntax]" in (result.error or "") and not result.isolation


@pytest.mark.parametrize(("name", "problem"), [("task_broken_inputs", "get_inputs() raised"),
                                               ("task_non_tensor", "not a torch.Tensor")])
def test_broken_task_raises_task_error(evaluator: Evaluator, name: str, problem: str) -> None:
    task = load_task(str(HERE / f"{name}.py"))
    with pytest.raises(TaskError) as err:
        evaluator.evaluate(task, "import torch.nn as nn\n\nclass ModelNew(nn.Module):\n"
                           "    def forward(self, x):\n        return x\n")
    assert str(task.path) in str(err.value) and problem in str(err.value)


def test_concurrent_evaluations(evaluator: Evaluator, swish: Task) -> None:
    names = ["good_fused", "zeros", "swish_renamed", "slightly_off"]
    sources = [code(n) if n != "zeros" else (HERE / "hostile" / "zeros.py").read_text()
               for n in names]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda c: evaluator.evaluate(swish, c), sources))
    assert [r.status for r in results] == [Status.OK, Status.INCORRECT, Status.OK,
                                           Status.INCORRECT]


def test_server_death_is_recovered(evaluator: Evaluator, swish: Task) -> None:
    old = evaluator.sandbox.server_pid  # type: ignore[attr-defined]
    assert old is not None
    os.kill(old, signal.SIGKILL)
    time.sleep(0.2)
    result = evaluator.evaluate(swish, code("good_fused"))
    assert result.status is Status.OK
    assert evaluator.sandbox.server_pid not in (None, old)  # type: ignore[attr-defined]


def test_server_killed_mid_evaluation_is_retried(evaluator: Evaluator, swish: Task) -> None:
    evaluator.evaluate(swish, code("good_fused"))  # make sure a server is up
    pid = evaluator.sandbox.server_pid  # type: ignore[attr-defined]
    slow = LIMITS.model_copy(update={"timing_budget_s": 1.5})
    killer = threading.Timer(0.3, os.kill, (pid, signal.SIGKILL))
    killer.start()
    result = evaluator.evaluate(swish, code("good_fused"), limits=slow)
    killer.join()
    assert result.status is Status.OK, result.error
    assert evaluator.sandbox.server_pid != pid  # type: ignore[attr-defined]


def test_one_shot_evaluate(swish: Task) -> None:
    result = evaluate(swish, code("good_fused"), limits=LIMITS)
    assert result.status is Status.OK and result.fingerprint["backend"] == "cpu"


def test_unknown_names_fail_clearly() -> None:
    with pytest.raises(BackendUnavailable, match="unknown backend"):
        Evaluator(backend="abacus")
    with pytest.raises(ValueError, match=r"unknown sandbox 'nope'.*process"):
        get_sandbox("nope")


@pytest.mark.skipif(importlib.util.find_spec("triton") is None,
                    reason="triton is not installed: pip install 'daedalus[triton]'")
def test_triton_candidate_runs_in_the_interpreter(evaluator: Evaluator, swish: Task) -> None:
    result = evaluator.evaluate(swish, code("swish_triton"))
    assert result.status is Status.OK and result.correct, result.error
    assert result.speedup is None and result.score == 0.0
    assert "timing_not_meaningful_on_cpu" in result.flags
    assert result.metrics["timing_meaningful"] == 0.0
    assert result.functional_hash is None


def plant_stale_lock(cache: Path, source: str, name: str) -> Path:
    """torch's build lock as a killed build leaves it, where the sandbox builds ``source``."""
    key = hashlib.sha256(source.encode()).hexdigest()[:20]
    lock = cache / "torch_extensions" / key / name / "lock"
    prepare_dir(lock.parent)  # owned by the sandbox user, as its killed build left it
    lock.touch()
    return lock


def test_build_locks_are_cleared_only_when_no_build_is_alive(tmp_path: Path) -> None:
    lock = plant_stale_lock(tmp_path, "a", "ext_a")
    key_dir = lock.parent.parent
    holder = hold_build_dir(key_dir)  # a live build of the same source
    try:
        assert clear_stale_build_locks(key_dir) == []
        assert lock.exists()
    finally:
        os.close(holder)
    assert clear_stale_build_locks(key_dir) == [lock]  # its builder died: the lock is stale
    assert not lock.exists()


@pytest.mark.slow
def test_cpp_load_inline_candidate(swish: Task, private_cache: Path) -> None:
    # A build killed in an earlier run left torch's lock behind: the build must not wait on it.
    source = code("swish_cpp")
    plant_stale_lock(private_cache, source, "daedalus_swish_scale_bias")
    with Evaluator(limits=LIMITS, cache_dir=private_cache) as ev:
        first = ev.evaluate(swish, source)
        assert first.status is Status.OK, first.error
        again = ev.evaluate(swish, code("swish_cpp"))  # cached by source hash: no rebuild
    assert again.status is Status.OK
    assert again.metrics["seconds_compile"] < max(5.0, first.metrics["seconds_compile"] / 4)


@pytest.mark.slow
def test_torch_compile_candidate(swish: Task) -> None:
    with Evaluator(limits=LIMITS) as ev:
        result = ev.evaluate(swish, code("swish_compile"))
    assert result.status is Status.OK, result.error
    assert result.functional_hash is not None or "functional_hash_unavailable" in result.artifacts
