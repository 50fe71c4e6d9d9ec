"""The fork server: a warm worker that forks one isolated child per evaluation request.

Started by ``ProcessSandbox`` as ``python -m daedalus.sandbox.forkserver CACHE_DIR`` from
a clean interpreter (never forked from the agent). It imports torch and the harness once,
pins torch to one thread and never runs parallel torch work itself (GNU OpenMP is not
fork-safe: a child hangs on its first parallel op if the parent ran one), caches executed
task modules, and then serves newline-delimited JSON requests on stdin, answering on
stdout. It is single-threaded: one ``selectors`` loop watches requests, every child's
output and result pipes, exit (pidfds) and deadlines, so forking never races a thread.
Program candidates usually start in a spare child prepared during the previous evaluation
(``spare.py``).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import os
import selectors
import shutil
import signal
import sys
import tempfile
import time
import traceback
from collections import OrderedDict
from pathlib import Path
from typing import Any

from daedalus.sandbox import isolation
from daedalus.sandbox.backends import fingerprints
from daedalus.sandbox.backends.detect import cuda_problem
from daedalus.sandbox.child_setup import child_environment, reseed_numpy, torch_side, warm_numpy
from daedalus.sandbox.children import Child, write_all
from daedalus.sandbox.program_harness import preload_evaluator, prepare_evaluator, run_program
from daedalus.sandbox.protocol import flood_limit
from daedalus.sandbox.result import Limits
from daedalus.sandbox.spare import GO_FD, SpareKeeper, await_request, spare_key
from daedalus.sandbox.static import needs_build
from daedalus.tasks.model import Task, TaskError
from daedalus.tasks.runtime import TaskModule, materialise

EXIT_GRACE_S = 2.0  # after the child exits, wait this long for its pipes to drain
BUILD_FSIZE_MB = 2048
TASK_CACHE_SIZE = 16
# Bound before any candidate runs: a program that replaces json.dumps cannot forge the report.
_dumps = json.dumps


class ForkServer(SpareKeeper):
    def __init__(self, cache_dir: Path, *, lean: bool = False, spares: bool = True) -> None:
        self.lean = lean
        self.spares = spares
        self.cache = isolation.prepare_dir(cache_dir)
        self.shared_caches = [
            isolation.prepare_dir(cache_dir / "inductor"),
            isolation.prepare_dir(cache_dir / "triton"),
        ]
        self.work_root = Path(tempfile.mkdtemp(prefix="daedalus-sandbox-"))
        os.chmod(self.work_root, 0o711)  # the sandbox user may enter its own dir, not list
        self.sel = selectors.DefaultSelector()
        self.children: dict[int, Child] = {}
        self.reaping: dict[int, int] = {}  # answered but not yet reaped: pid -> pidfd
        self.tasks: OrderedDict[str, TaskModule] = OrderedDict()
        self.spare = None  # a program child waiting for its candidate (SpareKeeper)
        self.inbuf = bytearray()
        self.stdin_open = True
        self.own_pid_ns = os.open("/proc/self/ns/pid", os.O_RDONLY) if isolation.is_root() else -1
        self.pid_ns_ok = isolation.is_root()
        # Python may live where the sandbox user cannot go (pyenv under /root).
        project = Path(__file__).resolve().parents[1]  # editable installs link files here
        roots = [sys.prefix, sys.base_prefix, sys.exec_prefix, *sys.path, str(project)]
        self.exposures = isolation.hidden_from_nobody([Path(p) for p in roots if p])

    # -- protocol ------------------------------------------------------------------------
    def send(self, message: dict[str, Any]) -> None:
        write_all(1, (json.dumps(message) + "\n").encode())

    def serve(self) -> None:
        # Triton decorates its language library when first imported, and warming up
        # torch._dynamo imports it, so the interpreter choice must be made here, once, not
        # in each child: the interpreter unless a CUDA GPU can run compiled kernels.
        os.environ.setdefault("TRITON_INTERPRET", "0" if cuda_problem() is None else "1")
        if not self.lean:
            torch_side()
        else:
            warm_numpy()
        self.send({"event": "ready", "pid": os.getpid(), "work_root": str(self.work_root),
                   "fingerprints": fingerprints()})
        self.sel.register(0, selectors.EVENT_READ, ("stdin", 0))
        try:
            while self.stdin_open or self.children or self.reaping:
                now = time.monotonic()
                waits = [c.deadline - now for c in self.children.values() if c.status is None]
                waits += [c.exited_at + EXIT_GRACE_S - now for c in self.children.values()
                          if c.status is not None]
                timeout = max(0.0, min(waits)) if waits else None
                for key, _ in self.sel.select(timeout):
                    kind, ident = key.data
                    if kind == "stdin":
                        self.read_requests()
                    elif kind == "exit" and ident in self.children:
                        self.reap(self.children[ident])
                    elif kind == "exit":
                        self.reap_answered(ident)
                    else:
                        self.read_pipe(self.children[ident], kind)
                self.enforce_deadlines()
                self.finish_ready()
        finally:
            self.drop_spare()
            shutil.rmtree(self.work_root, ignore_errors=True)

    def read_requests(self) -> None:
        data = os.read(0, 1 << 20)
        if not data:  # the evaluator is gone: stop everything
            self.stdin_open = False
            self.sel.unregister(0)
            for child in self.children.values():
                child.closing = True
                self.kill(child)
            self.drop_spare()
            return
        self.inbuf += data
        while b"\n" in self.inbuf:
            line, _, rest = bytes(self.inbuf).partition(b"\n")
            self.inbuf = bytearray(rest)
            if line.strip():
                self.handle(json.loads(line))

    def handle(self, req: dict[str, Any]) -> None:
        rid = req.get("id")
        tm = None
        if not req.get("probe") and req["task"].get("kind") != "program":
            torch_side()  # here, before the fork, never first in a child
        if not req.get("probe") and req["task"].get("kind") not in ("program", "architecture"):
            try:
                tm = self.task_module(req["task"])
            except TaskError as exc:
                self.send({"id": rid, "task_error": str(exc)})
                return
        if not req.get("probe") and req["task"].get("kind") == "program":
            prepare_evaluator(req["task"])  # compiled once here, not in every child
        key = spare_key(req)
        try:
            if not self.use_spare(req, key):
                self.spawn(req, tm)
        except OSError as exc:
            self.send({"id": rid, "sandbox_error": f"could not start the sandbox child: {exc}"})
        if key is not None and self.spare is None and self.spares:
            with contextlib.suppress(OSError):  # no spare: the next request forks afresh
                self.make_spare(req, key)

    def task_module(self, spec: dict[str, Any]) -> TaskModule:
        key = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()
        if key in self.tasks:
            self.tasks.move_to_end(key)
            return self.tasks[key]
        task = Task(name=spec["name"], kind=spec.get("kind", "kernel"), path=Path(spec["path"]),
                    source=spec["source"], atol=spec.get("atol", 1e-4),
                    rtol=spec.get("rtol", 1e-4), overrides=spec.get("overrides", {}),
                    seed=spec.get("seed", 42))
        tm = materialise(task)
        self.tasks[key] = tm
        while len(self.tasks) > TASK_CACHE_SIZE:
            self.tasks.popitem(last=False)
        return tm

    # -- children ------------------------------------------------------------------------
    def spawn(self, req: dict[str, Any], tm: TaskModule | None) -> None:
        code = req.get("code", "")
        ext = isolation.prepare_dir(
            self.cache / "torch_extensions" / hashlib.sha256(code.encode()).hexdigest()[:20])
        if needs_build(code):
            isolation.clear_stale_build_locks(ext)
        pid, fds, workdir, _ = self.fork_child(req, tm, ext)
        self.adopt(req, pid, os.pidfd_open(pid), fds, workdir)

    def fork_child(self, req: dict[str, Any], tm: TaskModule | None, ext: Path | None,
                   ) -> tuple[int, dict[str, int], Path, int]:
        """Fork an isolated child for ``req``; ``ext`` None makes a spare (its extension
        directory private, inside its work directory). Returns its pid, the read ends of its
        output and result pipes, its work directory and the spare's hand-over pipe (or -1)."""
        workdir = Path(tempfile.mkdtemp(prefix="c-", dir=self.work_root))
        isolation.prepare_dir(workdir)
        isolation.prepare_dir(workdir / "tmp")
        spare = ext is None
        ext = isolation.prepare_dir(workdir / ".extensions") if ext is None else ext
        writable = [ext, *self.shared_caches]
        out_r, out_w = os.pipe()
        res_r, res_w = os.pipe()
        go_r, go_w = os.pipe() if spare else (-1, -1)
        pid_ns = self.pid_ns_ok and isolation.enter_pid_namespace()
        try:
            pid = os.fork()
        except OSError:
            if pid_ns:
                isolation.leave_pid_namespace(self.own_pid_ns)
            for fd in (out_r, out_w, res_r, res_w, go_r, go_w):
                if fd >= 0:
                    os.close(fd)
            raise
        if pid == 0:
            self.child(req, tm, workdir, writable, ext, out_w, res_w, pid_ns, go_r)  # never returns
        if pid_ns:
            isolation.leave_pid_namespace(self.own_pid_ns)
        for fd in (out_w, res_w, go_r):
            if fd >= 0:
                os.close(fd)
        return pid, {"out": out_r, "res": res_r}, workdir, go_w

    def adopt(self, req: dict[str, Any], pid: int, pidfd: int, fds: dict[str, int],
              workdir: Path) -> None:
        """Watch a child that now runs ``req``: its pipes, its exit and its deadline."""
        limits = Limits(**req.get("limits", {}))
        budget = limits.timeout_s + (limits.compile_timeout_s if needs_build(req.get("code", "")) else 0.0)
        now = time.monotonic()
        child = Child(req.get("id"), pid, pidfd, fds, workdir, now, now + budget,
                      limits.output_bytes, flood_limit(limits))
        self.children[pid] = child
        for kind, fd in child.fds.items():
            os.set_blocking(fd, False)
            self.sel.register(fd, selectors.EVENT_READ, (kind, pid))
        self.sel.register(child.pidfd, selectors.EVENT_READ, ("exit", pid))

    def child(self, req: dict[str, Any], tm: TaskModule | None, workdir: Path,
              writable: list[Path], ext: Path, out_w: int, res_w: int, pid_ns: bool,
              go: int = -1) -> None:
        code = 70
        try:
            if go >= 0:  # a spare: keep the hand-over pipe, out of the way of the dup2s below
                go = fcntl.fcntl(go, fcntl.F_DUPFD, 64)
            os.dup2(out_w, 1)
            os.dup2(out_w, 2)
            os.dup2(res_w, 3)
            os.dup2(os.open(os.devnull, os.O_RDONLY), 0)  # never the server's request pipe
            if go >= 0:
                os.dup2(go, GO_FD)
            os.closerange(GO_FD + 1 if go >= 0 else GO_FD, 1 << 16)
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGPIPE):
                signal.signal(sig, signal.SIG_DFL)
            for stream in (sys.stdout, sys.stderr):
                if isinstance(stream, io.TextIOWrapper):
                    stream.reconfigure(line_buffering=True, write_through=True)

            harness_pid = os.getpid()

            def emit(message: dict[str, Any]) -> None:
                if os.getpid() != harness_pid:
                    os._exit(0)  # a copy forked by the candidate must not report results
                write_all(3, (_dumps(message) + "\n").encode())

            limits = Limits(**req.get("limits", {}))
            if needs_build(req.get("code", "")):
                isolation.hold_build_dir(ext)  # until this child exits, however it exits
                # Compilers write big files (a precompiled torch header is ~200 MB).
                limits = limits.model_copy(update={"fsize_mb": max(limits.fsize_mb, BUILD_FSIZE_MB)})
            info = isolation.isolate(workdir, writable, limits, pid_ns=pid_ns,
                                     exposures=self.exposures)
            child_environment(workdir, ext, limits, self.shared_caches)
            isolation.drop_privileges(info)
            if go >= 0:
                info["child"] = "spare: isolated, evaluator loaded, then given its candidate"
            emit({"event": "isolation", "isolation": info})
            preloaded = None
            if go >= 0:  # a spare: the evaluator now, then wait for the candidate
                preloaded = preload_evaluator(req, workdir)
                handed = await_request(workdir)
                if handed is None:  # discarded unused
                    os._exit(0)
                req = handed
            if req.get("probe"):
                emit({"event": "result", "result": {"probe": True}})
            else:
                try:
                    if req["task"].get("kind") == "architecture":  # trains in this child
                        arch = torch_side()[1]
                        emit({"event": "result",
                              "result": arch.run_architecture(req, workdir, emit)})
                    elif tm is None:  # a program task: the user's evaluator, no task module
                        reseed_numpy()
                        emit({"event": "result",
                              "result": run_program(req, workdir, emit, preloaded)})
                    else:
                        emit({"event": "result",
                              "result": torch_side()[0].run_cascade(req, tm, workdir, emit)})
                except TaskError as exc:
                    emit({"event": "task_error", "message": str(exc)})
                    emit({"event": "result", "result": None})
            code = 0
            for stream in (sys.stdout, sys.stderr):
                stream.flush()
            for fd in (1, 2, 3):
                os.close(fd)  # EOF tells the server the answer is complete
        except BaseException:
            traceback.print_exc()
        finally:
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(Exception):  # the pipe may be gone; exiting matters
                    stream.flush()
            os._exit(code)

    def read_pipe(self, child: Child, kind: str) -> bool:
        """Read one chunk; False when nothing more is available right now (or at EOF)."""
        fd = child.fds[kind]
        try:
            data = os.read(fd, 1 << 16)
        except BlockingIOError:
            return False
        if not data:
            self.sel.unregister(fd)
            os.close(fd)
            del child.fds[kind]
            return False
        flood = child.add_result(data) if kind == "res" else child.add_output(data)
        if flood and not child.flooded:
            child.flooded = True
            self.kill(child)
        return True

    def kill(self, child: Child) -> None:
        # PID 1 of its namespace: killing it makes the kernel kill everything it started.
        for target in (lambda: os.killpg(child.pid, signal.SIGKILL),
                       lambda: os.kill(child.pid, signal.SIGKILL)):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                target()

    def reap(self, child: Child) -> None:
        _, status = os.waitpid(child.pid, 0)
        child.status = status
        child.exited_at = time.monotonic()
        self.sel.unregister(child.pidfd)
        os.close(child.pidfd)
        self.kill(child)  # stragglers in its process group (no PID namespace available)

    def enforce_deadlines(self) -> None:
        now = time.monotonic()
        for child in self.children.values():
            if child.status is None and not child.timed_out and now > child.deadline:
                child.timed_out = True
                self.kill(child)

    def reap_answered(self, pid: int) -> None:
        pidfd = self.reaping.pop(pid)
        self.sel.unregister(pidfd)
        os.close(pidfd)
        os.waitpid(pid, 0)

    def finish_ready(self) -> None:
        now = time.monotonic()
        for pid, child in list(self.children.items()):
            if child.status is None:
                # The harness closes its pipes once it has reported: answer now and let
                # the kernel tear the process down (~10 ms for a torch-sized one) meanwhile.
                if not (child.reported and not child.fds):
                    continue
                self.kill(child)
                self.reaping[pid] = child.pidfd
            elif child.fds and now < child.exited_at + EXIT_GRACE_S:
                continue
            for kind in list(child.fds):
                while kind in child.fds and self.read_pipe(child, kind):
                    pass  # whatever is still buffered
                if kind in child.fds:
                    self.sel.unregister(child.fds[kind])
                    os.close(child.fds.pop(kind))
            del self.children[pid]
            self.send(child.answer())
            shutil.rmtree(child.workdir, ignore_errors=True)

def main() -> None:
    flags = {"--lean", "--no-spares"}
    args = [a for a in sys.argv[1:] if a not in flags]
    cache = Path(args[0]) if args else Path(tempfile.gettempdir()) / "daedalus"
    ForkServer(cache, lean="--lean" in sys.argv[1:], spares="--no-spares" not in sys.argv[1:]).serve()
    sys.stdout.flush()
    os._exit(0)  # skip interpreter teardown of torch and dynamo: seconds, for nothing


if __name__ == "__main__":
    main()
