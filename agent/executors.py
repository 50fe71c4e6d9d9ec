"""Executors: where a run's evaluations happen, behind one small interface.

``local`` is the warm process pool on this machine (the default); ``ray`` hands each
evaluation to a passive worker (``daedalus.sandbox.ray_worker``) on a Ray cluster. The run
sees only ``evaluate(task, code, known) -> EvaluationResult`` and ``close()``; the
``EvaluationPool`` in ``action.py`` keeps ``--workers`` of them in flight.

A Ray worker lost mid-evaluation (its node died, or Ray killed it) is replaced and the
candidate is sent again, to whichever node has room. The archive still holds exactly one
evaluation per candidate: the result is recorded once, by the run, after ``evaluate``
returns (and ``record_evaluation`` is idempotent should a resumed run record it again).
"""

from __future__ import annotations

import logging
import os
import queue
import socket
import threading
import time
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from daedalus.agent.config import RunConfig
    from daedalus.sandbox.evaluator import Evaluator
    from daedalus.sandbox.result import EvaluationResult, Limits
    from daedalus.tasks.model import Task

EXECUTORS = ("local", "ray")


class ExecutorError(RuntimeError):
    """The executor cannot evaluate anything (no cluster, no room); the message names the fix."""


class Executor(Protocol):
    name: str

    def evaluate(self, task: Task, code: str, known: frozenset[str]) -> EvaluationResult: ...

    def close(self) -> None: ...


class LocalExecutor:
    """The warm process pool on this machine: one ``Evaluator`` shared by every in-flight
    evaluation (its fork server forks one isolated child per candidate)."""

    name = "local"

    def __init__(self, evaluator: Evaluator) -> None:
        self._evaluator = evaluator.__enter__()

    def evaluate(self, task: Task, code: str, known: frozenset[str]) -> EvaluationResult:
        return self._evaluator.evaluate(task, code, known_functional=known)

    def close(self) -> None:
        self._evaluator.close()


class RayExecutor:
    """Evaluations on Ray actors, one warm evaluator each, spread over the cluster's nodes.

    ``workers`` actors are created up front (``SPREAD`` placement) with the resources the
    backend and sandbox need; ``evaluate`` borrows an idle one, so at most ``workers``
    evaluations run at once. An actor that dies is replaced and its candidate retried, at
    most ``max_attempts`` times in all.
    """

    name = "ray"

    def __init__(
        self,
        *,
        address: str,
        sandbox: str,
        backend: str,
        limits: Limits,
        workers: int,
        ready_timeout_s: float = 180.0,
        max_attempts: int = 3,
    ) -> None:
        if backend == "auto":
            raise ExecutorError(
                "--backend auto picks a backend per machine, but the Ray executor must know which "
                "resources to ask the cluster for: name it (--backend cpu, cuda, triton or npu)"
            )
        self._ray = connect_ray(address)
        from daedalus.sandbox.ray_worker import EvaluationWorker, actor_resources

        total = self._ray.cluster_resources()
        self.resources = actor_resources(
            backend=backend, sandbox=sandbox, threads=limits.threads, gpus_in_cluster=total.get("GPU", 0) > 0
        )
        _check_feasible(self.resources, total)
        self._actor_class = self._ray.remote(EvaluationWorker).options(
            **self.resources, scheduling_strategy="SPREAD", max_restarts=0, max_concurrency=2
        )
        self._args = (sandbox, backend, limits.model_dump())
        self.workers = workers
        self.max_attempts = max_attempts
        self.ready_timeout_s = ready_timeout_s
        self._idle: queue.Queue[Any] = queue.Queue()
        self._lock = threading.Lock()
        self._live: set[Any] = set()  # created and not yet known dead (idle, busy or starting)
        self._ready: set[Any] = set()  # the live ones that have started (idle or busy)
        self._startup_errors: list[str] = []
        self._closed = False
        self.placements: dict[str, int] = {}  # node id -> evaluations finished there
        for _ in range(workers):
            self._spawn()

    # ------------------------------------------------------------------ actors

    def _spawn(self) -> None:
        actor = self._actor_class.remote(*self._args)
        with self._lock:
            self._live.add(actor)
        threading.Thread(target=self._await_ready, args=(actor,), daemon=True,
                         name="daedalus-ray-ready").start()

    def _await_ready(self, actor: Any) -> None:
        try:
            self._ray.get(actor.ready.remote())
        except Exception as exc:  # the worker could not start: keep why, for the error
            with self._lock:
                self._live.discard(actor)
                self._startup_errors.append(str(exc).strip()[-2000:])
                # A start can fail for passing reasons (a loaded node): try again, a bounded
                # number of times in all, before the run is told that no worker can start.
                again = not self._closed and len(self._startup_errors) <= self.workers
            logging.getLogger(__name__).warning("a Ray evaluation worker failed to start: %s", exc)
            if again:
                self._spawn()
            return
        with self._lock:
            self._ready.add(actor)
        self._idle.put(actor)

    def _retire(self, actor: Any) -> None:
        with self._lock:
            self._live.discard(actor)
            self._ready.discard(actor)
        try:
            self._ray.kill(actor, no_restart=True)
        except Exception:  # already gone with its node; nothing left to stop
            logging.getLogger(__name__).debug("actor already gone", exc_info=True)

    def _take(self) -> Any:
        """An idle, warm actor; waits for one (others may be busy, or a replacement still
        starting), and fails clearly when none has started at all within the timeout."""
        deadline = time.monotonic() + self.ready_timeout_s
        while True:
            try:
                return self._idle.get(timeout=0.5)
            except queue.Empty:
                pass
            with self._lock:
                live, started, errors = len(self._live), len(self._ready), list(self._startup_errors)
            if self._closed:
                raise ExecutorError("the Ray executor was closed while an evaluation waited for a worker")
            if live == 0 and errors:
                raise ExecutorError(f"no Ray evaluation worker could start; the last error was: {errors[-1]}")
            if time.monotonic() > deadline and not started:
                raise ExecutorError(
                    f"no Ray evaluation worker became ready within {self.ready_timeout_s:.0f} s; each "
                    f"needs {_describe(self.resources)} and the cluster has free "
                    f"{_describe_free(self._ray.available_resources())}. Fix: add a node with "
                    "`daedalus worker start --address HOST:PORT` (with --num-gpus/--num-npus/--sandbox "
                    "docker as the run needs) or lower --workers"
                )

    # ------------------------------------------------------------------ Executor

    def evaluate(self, task: Task, code: str, known: frozenset[str]) -> EvaluationResult:
        from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError

        lost: list[str] = []
        while True:
            actor = self._take()
            try:
                result: EvaluationResult = self._ray.get(actor.evaluate.remote(task, code, known))
            except (RayActorError, ActorDiedError, ActorUnavailableError) as exc:
                # The worker or its node is gone; the candidate never finished there.
                lost.append(type(exc).__name__)
                self._retire(actor)
                if self._closed:
                    raise ExecutorError("the Ray executor was closed during an evaluation") from exc
                self._spawn()
                if len(lost) >= self.max_attempts:
                    return _lost_result(lost)
                continue
            self._idle.put(actor)
            worker = result.artifacts.get("worker", {})
            worker["attempts"] = len(lost) + 1
            node = str(worker.get("node_id", "?"))
            with self._lock:
                self.placements[node] = self.placements.get(node, 0) + 1
            return result

    def close(self) -> None:
        self._closed = True
        with self._lock:
            actors = list(self._live)
            self._live.clear()
        closing = [actor.close.remote() for actor in actors]
        if closing:  # let each worker stop its fork server; a dead one just never answers
            self._ray.wait(closing, num_returns=len(closing), timeout=15)
        for actor in actors:
            self._retire(actor)
        self._ray.shutdown()


def connect_ray(address: str) -> Any:
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # nothing phones home
    try:
        import ray
    except ImportError as exc:
        raise ExecutorError(
            "--executor ray needs Ray, which is not installed: pip install 'daedalus[ray]' "
            "(the same version on every node)"
        ) from exc
    _probe(address)
    try:
        ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False,
                 configure_logging=True, ignore_reinit_error=True)  # fmt: skip
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise ExecutorError(
            f"cannot connect to a Ray cluster at {address!r} ({str(exc).strip().splitlines()[0]}). "
            "Fix: start one with `daedalus worker start --head` (then join nodes with "
            "`daedalus worker start --address HOST:PORT`), or pass --ray-address HOST:PORT; "
            "with token auth, set RAY_AUTH_MODE=token and RAY_AUTH_TOKEN as on the cluster"
        ) from exc
    return ray


def _probe(address: str) -> None:
    """Fail in seconds when nothing listens at HOST:PORT (Ray itself would retry for minutes)."""
    if address == "auto" or "://" in address:
        return
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=10).close()
    except (OSError, ValueError) as exc:
        raise ExecutorError(
            f"no Ray cluster answers at {address} ({exc}). Fix: check the head's address and port "
            "(`daedalus worker status` on the head), or start one with `daedalus worker start --head`"
        ) from exc


def _describe(resources: dict[str, Any]) -> str:
    parts = [f"CPU={resources['num_cpus']}"]
    if resources.get("num_gpus"):
        parts.append(f"GPU={resources['num_gpus']}")
    parts += [f"{k}={v:g}" for k, v in sorted(resources.get("resources", {}).items())]
    return ", ".join(parts)


def _describe_free(available: dict[str, float]) -> str:
    keep = {k: v for k, v in available.items() if not k.startswith(("node:", "memory", "object_store"))}
    return ", ".join(f"{k}={v:g}" for k, v in sorted(keep.items())) or "nothing"


def _check_feasible(resources: dict[str, Any], total: dict[str, float]) -> None:
    """Fail at start when no node of the cluster could ever host a worker."""
    from daedalus.sandbox.ray_worker import DOCKER_RESOURCE, NPU_RESOURCE

    needs = {"CPU": float(resources["num_cpus"]), "GPU": float(resources.get("num_gpus", 0))}
    needs.update(resources.get("resources", {}))
    missing = [k for k, v in needs.items() if v and total.get(k, 0.0) < v]
    if not missing:
        return
    fixes = {
        "GPU": "join a GPU node with `daedalus worker start --address HOST:PORT --num-gpus N`",
        NPU_RESOURCE: "join an Ascend node with `daedalus worker start --address HOST:PORT --num-npus N`",
        DOCKER_RESOURCE: "join nodes with `daedalus worker start --address HOST:PORT --sandbox docker` "
        "(it checks the Docker engine and sandbox image first), or run with --sandbox process",
        "CPU": "join a node with `daedalus worker start --address HOST:PORT`, or lower --threads",
    }
    raise ExecutorError(
        f"the Ray cluster has no node that can host an evaluation worker: it lacks {', '.join(missing)} "
        f"(needs {_describe(resources)}; the cluster has {_describe_free(total)}). Fix: "
        + "; ".join(fixes[k] for k in missing if k in fixes)
    )


def _lost_result(lost: list[str]) -> EvaluationResult:
    from daedalus.sandbox.result import EvaluationResult, Status

    return EvaluationResult(
        status=Status.RUNTIME_ERROR,
        stage="dispatch",
        error=(
            f"the evaluation worker was lost {len(lost)} times while evaluating this candidate "
            f"({', '.join(lost)}): its node died or Ray killed it (often Ray's memory monitor, "
            "when the candidate used too much memory)"
        ),
        flags=["worker_lost"],
        artifacts={"worker": {"executor": "ray", "attempts": len(lost)}},
    )


def make_executor(config: RunConfig, *, task_kind: str = "kernel") -> Executor:
    """The executor a run's config names, started and ready for ``evaluate``."""
    from daedalus.sandbox.result import Limits

    limits = Limits(timeout_s=config.timeout_s, threads=config.threads)
    if config.executor == "ray":
        return RayExecutor(
            address=config.ray_address or "auto",
            sandbox=config.sandbox,
            backend=config.backend,
            limits=limits,
            workers=config.workers,
        )
    from daedalus.sandbox import Evaluator

    # Program candidates need no torch: a lean fork server saves its memory and start-up.
    lean = {"lean": True} if task_kind == "program" and config.sandbox == "process" else {}
    return LocalExecutor(
        Evaluator(sandbox=config.sandbox, backend=config.backend, limits=limits, **lean))
