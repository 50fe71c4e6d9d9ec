"""The process sandbox, parent side: owns the fork server and multiplexes requests to it.

Any number of threads may call ``run`` at once: each request gets an id, is written to
the server under a lock, and waits for its own answer, which a reader thread routes
back. If the server dies or stops answering it is restarted transparently; a request
that was in flight is retried once on the new server.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import IO, Any

from daedalus.sandbox.protocol import WORKER_ENV, SandboxRun, sandbox_run_from_answer
from daedalus.sandbox.result import Limits
from daedalus.sandbox.static import needs_build

START_TIMEOUT_S = 180.0  # importing torch on a loaded 2-core machine can take a while
ANSWER_GRACE_S = 30.0  # beyond the child's own deadline, before we call the server hung
# The server (and so every candidate) gets only these variables: never API keys.
_ENV_KEEP = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "PYTHONPATH", "VIRTUAL_ENV", "CC",
             "CXX", "LD_LIBRARY_PATH", "CPATH", "TORCH_CUDA_ARCH_LIST")  # fmt: skip
_ENV_KEEP_PREFIXES = ("CUDA_", "NVIDIA_", "ASCEND_", "TRITON_")  # device selection


def default_cache_dir() -> Path:
    """Where compiled extensions and inductor/triton caches live between runs."""
    env = os.environ.get("DAEDALUS_SANDBOX_CACHE")
    return Path(env) if env else Path(tempfile.gettempdir()) / "daedalus-sandbox-cache"


class SandboxClosed(RuntimeError):
    """A request reached a sandbox that has been closed (it starts no new fork server)."""


class _Pending:
    def __init__(self) -> None:
        self.event = threading.Event()
        self.answer: dict[str, Any] | None = None


class _Server:
    """One running fork server process and the thread reading its answers."""

    def __init__(self, cache_dir: Path, *, lean: bool = False, spares: bool = True) -> None:
        env = {k: v for k, v in os.environ.items()
               if k in _ENV_KEEP or k.startswith(_ENV_KEEP_PREFIXES)}
        env.update(WORKER_ENV)
        self.log = tempfile.TemporaryFile()  # noqa: SIM115  (lives as long as the server)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "daedalus.sandbox.forkserver", str(cache_dir),
             *(["--lean"] if lean else []), *([] if spares else ["--no-spares"])],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, env=env,
            start_new_session=True,  # Ctrl-C in the terminal is the agent's to handle
        )  # fmt: skip
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.stdin: IO[bytes] = self.proc.stdin
        self.pending: dict[int, _Pending] = {}
        self.lock = threading.Lock()
        self.ready = threading.Event()
        self.dead = False
        self.fingerprints: dict[str, dict[str, str]] = {}
        self.work_root: str | None = None  # the server's temp dir, removed if it dies
        self.reader = threading.Thread(target=self._read, args=(self.proc.stdout,),
                                       name="daedalus-forkserver-reader", daemon=True)
        self.reader.start()

    def _read(self, stream: IO[bytes]) -> None:
        for line in stream:
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            if msg.get("event") == "ready":
                self.fingerprints = msg.get("fingerprints", {})
                self.work_root = msg.get("work_root")
                self.ready.set()
                continue
            with self.lock:
                pending = self.pending.pop(msg.get("id"), None)
            if pending is not None:
                pending.answer = msg
                pending.event.set()
        with self.lock:
            self.dead = True
            waiting, self.pending = list(self.pending.values()), {}
        self.ready.set()
        for pending in waiting:
            pending.event.set()  # answer stays None: the server died

    def wait_ready(self) -> None:
        if not self.ready.wait(START_TIMEOUT_S) or self.dead:
            detail = self.stderr_tail()
            self.stop()
            raise RuntimeError(
                "the sandbox fork server did not start; its error output was:\n"
                f"{detail}\nCheck that torch imports in this environment "
                f"({sys.executable} -c 'import torch')."
            )

    def submit(self, rid: int, request: dict[str, Any]) -> _Pending:
        pending = _Pending()
        data = (json.dumps({**request, "id": rid}) + "\n").encode()
        with self.lock:
            if self.dead:
                pending.event.set()
                return pending
            self.pending[rid] = pending
            try:
                self.stdin.write(data)
                self.stdin.flush()
            except (BrokenPipeError, OSError):
                self.pending.pop(rid, None)
                pending.event.set()
        return pending

    def abandon(self, rid: int) -> None:
        with self.lock:
            self.pending.pop(rid, None)

    def stderr_tail(self, limit: int = 4000) -> str:
        try:
            self.log.seek(0)
            return self.log.read().decode(errors="replace")[-limit:]
        except (OSError, ValueError):
            return ""

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self.stdin.close()  # EOF: the server kills its children and exits
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
        if self.work_root:  # a killed server could not clean up after itself
            shutil.rmtree(self.work_root, ignore_errors=True)


class ProcessSandbox:
    """Fork-server process isolation (see docs/sandbox.md for what it does and does not stop)."""

    name = "process"

    def __init__(self, cache_dir: Path | str | None = None, *, lean: bool = False,
                 spares: bool = True) -> None:
        self.cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
        # Lean: the fork server starts without torch (program tasks), importing it only if a
        # kernel or architecture candidate arrives. Spares: program candidates start in a
        # child prepared ahead (sandbox/spare.py); off only to measure what they save.
        self.lean = lean
        self.spares = spares
        self._server: _Server | None = None
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self.restarts = 0
        self._closed = False
        self._fingerprints: dict[str, dict[str, str]] = {}

    def start(self) -> None:
        self._closed = False  # a closed sandbox may be started again
        self._current()

    def _current(self) -> _Server:
        with self._lock:
            if self._closed:
                raise SandboxClosed("the sandbox was closed before this candidate finished; "
                                    "start it again to evaluate more")
            if self._server is None or self._server.dead:
                if self._server is not None:
                    self._server.stop()
                    self.restarts += 1
                self._server = _Server(self.cache_dir, lean=self.lean, spares=self.spares)
            server = self._server
        server.wait_ready()
        return server

    def _discard(self, server: _Server) -> None:
        with self._lock:
            if self._server is server:
                self._server = None
                self.restarts += 1
        server.proc.kill()
        server.stop()

    @property
    def server_pid(self) -> int | None:
        return self._server.proc.pid if self._server is not None else None

    def fingerprint(self, backend: str) -> dict[str, str]:
        with contextlib.suppress(SandboxClosed):  # closed: the last server's answer, no new one
            self._fingerprints = self._current().fingerprints
        return dict(self._fingerprints.get(backend, {}))

    def run(self, request: dict[str, Any], limits: Limits) -> SandboxRun:
        wait = limits.timeout_s + ANSWER_GRACE_S
        if needs_build(request.get("code", "")):
            wait += limits.compile_timeout_s
        lost = ""
        for _attempt in range(2):
            try:
                server = self._current()
            except SandboxClosed as exc:  # closed while this request waited: no new server
                return SandboxRun(result=None, sandbox_error=str(exc))
            rid = next(self._ids)
            pending = server.submit(rid, request)
            if not pending.event.wait(wait):
                server.abandon(rid)
                self._discard(server)  # hung: the next request gets a fresh one
                return SandboxRun(result=None, timed_out=True, sandbox_error="the fork server "
                                  f"did not answer within {wait:.0f} s and was restarted")
            if pending.answer is not None:
                return sandbox_run_from_answer(pending.answer)
            lost = server.stderr_tail()
        return SandboxRun(result=None, sandbox_error="the fork server died twice while "
                          f"running this candidate; its last error output:\n{lost}")

    def close(self) -> None:
        with self._lock:
            self._closed = True
            server, self._server = self._server, None
        if server is not None:
            server.stop()

