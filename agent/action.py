"""Action: hand vetted candidates to evaluation workers and collect their results.

Several evaluations are in flight at once (``--workers K``) so the evaluator is never idle
while a proposer thinks. Futures live only in memory; the archive's pending candidates are
the durable truth, so a resumed run simply re-submits them.
"""

from __future__ import annotations

import concurrent.futures as cf
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from daedalus.sandbox.result import EvaluationResult
    from daedalus.tasks.model import Task

EvaluateFn = Callable[["Task", str, frozenset[str]], "EvaluationResult"]


@dataclass(frozen=True)
class Finished:
    candidate_id: str
    result: EvaluationResult


class EvaluationPool:
    """A bounded pool of in-flight evaluations keyed by candidate id (submission is idempotent)."""

    def __init__(self, evaluate: EvaluateFn, *, workers: int, lookahead: int = 0) -> None:
        self._evaluate = evaluate
        self._executor = cf.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="daedalus-eval")
        self._futures: dict[cf.Future[EvaluationResult], str] = {}
        self._ids: set[str] = set()
        self._lock = threading.Lock()
        self.workers = workers
        # Beyond ``workers``, up to ``lookahead`` candidates wait in the executor's queue.
        self.capacity = workers + lookahead

    def __len__(self) -> int:
        with self._lock:
            return len(self._futures)

    @property
    def in_flight(self) -> list[str]:
        with self._lock:
            return sorted(self._ids)

    def submit(self, candidate_id: str, task: Task, code: str, known: frozenset[str]) -> bool:
        """Start evaluating a candidate unless it is already in flight; True when submitted."""
        with self._lock:
            if candidate_id in self._ids:
                return False
            future = self._executor.submit(self._evaluate, task, code, known)
            self._futures[future] = candidate_id
            self._ids.add(candidate_id)
            return True

    def harvest(self, *, block: bool, timeout: float | None = None) -> list[Finished]:
        """Results that are done; with ``block`` wait until at least one is (or timeout)."""
        with self._lock:
            pending = list(self._futures)
        if not pending:
            return []
        if block:
            done, _ = cf.wait(pending, timeout=timeout, return_when=cf.FIRST_COMPLETED)
        else:
            done = {f for f in pending if f.done()}
        finished: list[Finished] = []
        with self._lock:
            for future in done:
                candidate_id = self._futures.pop(future)
                self._ids.discard(candidate_id)
                # An exception here is our bug (the evaluator turns candidate failures into
                # results), so let it propagate instead of inventing a status for it.
                finished.append(Finished(candidate_id, future.result()))
        return sorted(finished, key=lambda f: f.candidate_id)

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
