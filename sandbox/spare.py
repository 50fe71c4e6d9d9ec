"""A spare child for program tasks: forked, isolated and with the task's evaluator loaded
before its candidate exists, so an evaluation starts straight at the candidate.

After the fork server starts a program candidate's child, it forks one spare from the same
request (the template): the spare enters its namespaces, makes the file system read-only,
sets the rlimits, drops to the sandbox user and imports the task's evaluator, all inside
the sandbox as a fresh child would, and then blocks on a pipe. The next request with the
same task, limits and backend is handed over: the server writes it into the spare's work
directory and one byte to the pipe. Anything else (another task, other limits, a candidate
that builds an extension, a spare that died) gets a freshly forked child as before, and the
spare is discarded. A spare never sees more than one candidate.
"""

from __future__ import annotations

import hashlib
import json
import os
import select
import selectors
import shutil
import signal
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from daedalus.sandbox.children import write_all
from daedalus.sandbox.static import needs_build

REQUEST_FILE = ".request.json"
GO_FD = 4  # where the spare finds its end of the hand-over pipe


@dataclass
class Spare:
    key: str
    pid: int
    pidfd: int
    fds: dict[str, int]  # "out" / "res" read ends, not watched until the hand-over
    go: int  # write end of the hand-over pipe; -1 once closed
    workdir: Path


def spare_key(req: dict[str, Any]) -> str | None:
    """Which spare can serve ``req`` (same task, limits and backend), or None: only program
    candidates that build nothing are served by spares."""
    task = req.get("task") or {}
    if req.get("probe") or task.get("kind") != "program" or needs_build(req.get("code", "")):
        return None
    same = {"task": task, "limits": req.get("limits"), "backend": req.get("backend")}
    return hashlib.sha256(json.dumps(same, sort_keys=True).encode()).hexdigest()


def hand_over(spare: Spare, req: dict[str, Any]) -> bool:
    """Give ``req`` to the waiting spare; False when it cannot take it (it died, or its
    directory holds something it should not). Closes the pipe either way."""
    try:
        if select.select([spare.pidfd], [], [], 0)[0]:
            return False  # it has exited (its pidfd is readable): a killed spare, say
        # O_EXCL | O_NOFOLLOW: never follow a link the sandbox user may have planted.
        fd = os.open(spare.workdir / REQUEST_FILE,
                     os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        try:
            write_all(fd, json.dumps(req).encode())
        finally:
            os.close(fd)
        os.write(spare.go, b"1")  # BrokenPipeError when the spare is gone
        return True
    except OSError:
        return False
    finally:
        os.close(spare.go)
        spare.go = -1


def discard(spare: Spare) -> None:
    """Kill an unused spare (PID 1 of its namespace: everything it started dies with it);
    the caller reaps it through ``spare.pidfd``."""
    if spare.go >= 0:
        os.close(spare.go)
        spare.go = -1
    for fd in spare.fds.values():
        os.close(fd)
    with suppress(ProcessLookupError, PermissionError):
        os.kill(spare.pid, signal.SIGKILL)


def await_request(workdir: Path) -> dict[str, Any] | None:
    """In the spare: block until the server hands over a request; None when discarded."""
    go = os.read(GO_FD, 1)
    os.close(GO_FD)
    if not go:
        return None
    path = workdir / REQUEST_FILE
    try:
        request: dict[str, Any] = json.loads(path.read_bytes())
    finally:
        path.unlink(missing_ok=True)
    return request


class SpareKeeper:
    """The fork server's side of spares (a mixin: the server forks and watches children)."""

    spare: Spare | None
    sel: selectors.BaseSelector
    reaping: dict[int, int]  # answered or discarded children not yet reaped: pid -> pidfd

    def fork_child(self, req: dict[str, Any], tm: Any, ext: Path | None,
                   ) -> tuple[int, dict[str, int], Path, int]:
        raise NotImplementedError

    def adopt(self, req: dict[str, Any], pid: int, pidfd: int, fds: dict[str, int],
              workdir: Path) -> None:
        raise NotImplementedError

    def make_spare(self, template: dict[str, Any], key: str) -> None:
        pid, fds, workdir, go = self.fork_child(template, None, None)
        self.spare = Spare(key, pid, os.pidfd_open(pid), fds, go, workdir)

    def use_spare(self, req: dict[str, Any], key: str | None) -> bool:
        """Hand ``req`` to the waiting spare if it fits; drop a spare that does not."""
        spare = self.spare
        if spare is None:
            return False
        if key == spare.key and hand_over(spare, req):
            self.spare = None
            self.adopt(req, spare.pid, spare.pidfd, spare.fds, spare.workdir)
            return True
        self.drop_spare()
        return False

    def drop_spare(self) -> None:
        spare, self.spare = self.spare, None
        if spare is None:
            return
        discard(spare)
        self.reaping[spare.pid] = spare.pidfd
        self.sel.register(spare.pidfd, selectors.EVENT_READ, ("exit", spare.pid))
        shutil.rmtree(spare.workdir, ignore_errors=True)
