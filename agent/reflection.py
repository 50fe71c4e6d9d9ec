"""The reflect step's LLM analyst, run beside the loop instead of in it.

Every ``reflect_every`` results the analyst model distils lessons from the recent
candidates. Called in the loop, that call stalled everything behind it: no plan, no
proposal, no new evaluation while a real model took its seconds to answer (with a stub
answering in 0.5 s, 7% of the time per iteration went to it: 0.589 against 0.552 s,
``benchmarks/peers/run.py --llm-latency 0.5``). Here it runs on a
thread of its own, one at a time (a reflect step that finds the previous analysis still
running skips it), stores its lessons and spend itself, and the loop reports the lessons
when it next looks (``drain``). ``finish`` waits for it, so a run that ends has archived
every lesson it paid for; the proposals made meanwhile simply do not see them yet.
"""

from __future__ import annotations

import threading
from collections.abc import Callable


class BackgroundAnalyst:
    def __init__(self) -> None:
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._done: list[list[str]] = []
        self.error: BaseException | None = None

    @property
    def busy(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self, job: Callable[[], list[str]]) -> bool:
        """Run ``job`` (analyse, store, return the stored lessons) in the background; False
        (nothing started) while the previous one still runs."""
        if self.busy:
            return False
        self._thread = threading.Thread(target=self._run, args=(job,), name="daedalus-analyst",
                                        daemon=True)
        self._thread.start()
        return True

    def _run(self, job: Callable[[], list[str]]) -> None:
        try:
            lessons = job()
        except BaseException as exc:  # re-raised in the loop's thread by drain()
            self.error = exc
            return
        with self._lock:
            self._done.append(lessons)

    def drain(self) -> list[list[str]]:
        """The lesson lists finished since the last call; raises what the analysis raised."""
        if self.error is not None:
            error, self.error = self.error, None
            raise error
        with self._lock:
            done, self._done = self._done, []
        return done

    def join(self) -> None:
        """Wait for a running analysis (bounded by its model's own timeout and retries)."""
        if self._thread is not None:
            self._thread.join()
