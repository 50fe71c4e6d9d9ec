"""The hostile-candidate suite against the Docker sandbox (real engine, real containers).

It reuses the process sandbox's cases and candidate files. The static policy runs in the
parent before any sandbox is involved, so each case is run in the variant that actually
reaches the container: as it is when the policy lets it through, with the policy off when
the policy would reject it. Containment is checked against the host (no file written, no
connection accepted, no container left), and the evaluator keeps working afterwards.

Without a Docker engine these tests skip with the reason; with DAEDALUS_REQUIRE_DOCKER=1
(as in CI) they fail instead.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from daedalus.sandbox import Evaluator, Limits, Status, get_sandbox
from daedalus.sandbox.docker_host import LABEL, LABEL_PID, engine_available
from daedalus.tasks import Task, load_task
from tests.test_sandbox_hostile import CASES, HERE, HOSTILE, LIMITS

pytestmark = pytest.mark.docker
# Generous wall-clock limits: a container starting beside a candidate (importing torch)
# slows it on a loaded 2-core machine; the infinite loop gets its own short limit.
DOCKER_LIMITS = LIMITS.model_copy(update={"timeout_s": 20})
SHORT = {"infinite_loop": 3.0}


def require_docker() -> None:
    ok, why = engine_available()
    if ok:
        return
    if os.environ.get("DAEDALUS_REQUIRE_DOCKER") == "1":
        pytest.fail(f"DAEDALUS_REQUIRE_DOCKER=1 but no Docker engine answers: {why}")
    pytest.skip(f"no Docker engine: {why}")


def our_containers() -> list[str]:
    import docker

    client = docker.from_env(timeout=300)
    try:
        found = client.containers.list(
            all=True, filters={"label": [f"{LABEL}=1", f"{LABEL_PID}={os.getpid()}"]}
        )
        return [c.short_id for c in found]
    finally:
        client.close()


@pytest.fixture(scope="module")
def task() -> Task:
    return load_task(str(HERE / "task_swish.py"), {"batch_size": 8, "dim": 1024})


@pytest.fixture(scope="module")
def evaluator() -> Iterator[Evaluator]:
    require_docker()
    with Evaluator(sandbox="docker", limits=DOCKER_LIMITS) as ev:
        yield ev


@pytest.fixture(scope="module")
def listener() -> Iterator[socket.socket]:
    """A loopback server on the host that the network candidate tries to reach."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    srv.settimeout(0.05)
    yield srv
    srv.close()


def _code(name: str, port: int, targets: list[str]) -> str:
    code = (HOSTILE / f"{name}.py").read_text()
    return code.replace("PORT", str(port)).replace("TARGETS", repr(targets))


@pytest.mark.parametrize("name", sorted(CASES))
def test_hostile_candidate_in_docker(name: str, task: Task, evaluator: Evaluator,
                                     listener: socket.socket) -> None:
    expected, rule, expected_unchecked = CASES[name]
    targets = [f"/tmp/daedalus-escape-{uuid.uuid4().hex}",
               f"/dev/shm/daedalus-escape-{uuid.uuid4().hex}"]  # fmt: skip
    code = _code(name, listener.getsockname()[1], targets)
    limits = DOCKER_LIMITS.model_copy(update={"timeout_s": SHORT.get(name, 20)})
    if rule:  # the policy would stop it in the parent; let it reach the container
        assert expected_unchecked is not None
        expected, limits = expected_unchecked, limits.model_copy(update={"policy": False})
    result = evaluator.evaluate(task, code, limits=limits)
    assert result.status is expected, (result.stage, result.error)
    assert result.isolation.get("network", "").startswith("none"), result.isolation
    assert result.score == 0.0 or result.status is Status.OK
    if name == "network":
        with pytest.raises(TimeoutError):
            listener.accept()  # the host's loopback was never reached
        assert "refused" in (result.error or "") or "unreachable" in (result.error or "")
    if name == "write_outside":
        assert not any(Path(t).exists() for t in targets), "a write reached the host"
    if name == "segfault":
        assert "SIGSEGV" in (result.error or "")
    if name == "os_exit":
        assert "exited with code 3" in (result.error or "")
    if name == "background_thread":
        assert "background thread" in (result.error or "")
    if name == "patch_time":  # a frozen clock would read as an enormous speedup
        assert result.speedup is not None and 0.1 < result.speedup < 10.0
    if name == "flood_stdout":
        assert "output_flood" in result.flags and len(result.logs) < LIMITS.output_bytes + 200


def test_evaluator_survives_and_leaves_no_container(task: Task, evaluator: Evaluator) -> None:
    first = evaluator.evaluate(task, (HERE / "good_fused.py").read_text())
    second = evaluator.evaluate(task, (HERE / "good_fused.py").read_text())
    for result in (first, second):
        assert result.status is Status.OK and result.correct and result.speedup, result.error
    # One container per candidate, never reused.
    assert first.isolation["sandbox"] != second.isolation["sandbox"]
    assert first.isolation["user"] == "65534:65534"
    assert first.isolation["capabilities"].startswith("none")
    assert first.fingerprint["sandbox"] == "docker" and first.fingerprint["torch"]
    evaluator.close()  # waits for removals in flight
    assert our_containers() == []
    evaluator.sandbox.start()


def test_timeout_kills_the_candidate_container(task: Task, evaluator: Evaluator) -> None:
    limits = DOCKER_LIMITS.model_copy(update={"timeout_s": 1.5})
    started = time.monotonic()
    result = evaluator.evaluate(task, (HOSTILE / "infinite_loop.py").read_text(), limits=limits)
    assert result.status is Status.TIMEOUT and "1.5 s" in (result.error or "")
    assert time.monotonic() - started < 30


def test_get_sandbox_docker_and_auto_pick_docker() -> None:
    require_docker()
    docker_box = get_sandbox("docker", pool_size=0)
    auto_box = get_sandbox("auto", pool_size=0)
    assert docker_box.name == "docker" and auto_box.name == "docker"


def test_build_candidate_is_cached_per_source(task: Task, evaluator: Evaluator) -> None:
    """A C++ candidate builds in a dedicated container whose build dir is that source's
    own cache entry: the second evaluation reuses the build instead of compiling again."""
    code = (HERE / "swish_cpp.py").read_text()
    limits = DOCKER_LIMITS.model_copy(update={"compile_timeout_s": 600})
    first = evaluator.evaluate(task, code, limits=limits)
    assert first.status is Status.OK, (first.stage, first.error, first.logs[-2000:])
    second = evaluator.evaluate(task, code, limits=limits)
    assert second.status is Status.OK, second.error
    assert second.duration_s < first.duration_s / 2 or second.duration_s < 10, (
        first.duration_s, second.duration_s)  # fmt: skip
    assert Limits().memory_mb  # the defaults stay importable for callers
