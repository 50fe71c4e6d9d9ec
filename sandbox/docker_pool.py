"""Single-use sandbox containers and the warm pool that hides their start-up.

A container is created with every restriction up front (no network, read-only root, no
capabilities, nobody, pids/CPU/memory limits, tmpfs scratch), started, and left running
the fork server until it says it is ready (torch imported). ``ContainerPool`` keeps a few
such containers waiting so that a candidate only pays for sending one JSON line; after
one request the container is killed and removed in the background, never reused.
"""

from __future__ import annotations

import contextlib
import json
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from daedalus.sandbox.docker_devices import DeviceConfig, explain_start_error
from daedalus.sandbox.docker_host import owner_labels

if TYPE_CHECKING:
    from docker import DockerClient
    from docker.models.containers import Container

STDERR_KEEP = 16_000  # bytes of the fork server's own stderr kept for diagnostics
STDOUT_CAP = 64 * 1024 * 1024  # the fork server caps results at 8 MB; more is misbehaviour


class ContainerError(RuntimeError):
    """A container could not be created or started; the message says why and what to do."""


@dataclass(frozen=True)
class ContainerSpec:
    """Everything fixed when a container is created."""

    image: str
    command: tuple[str, ...]
    mounts: tuple[tuple[str, str, bool], ...]  # (host, container, read_only)
    user: str | None
    memory_mb: int
    cpus: float
    pids_limit: int
    tmpfs: tuple[tuple[str, int], ...]  # (container path, size in MB)
    environment: tuple[tuple[str, str], ...]
    log_max_bytes: int = 1 << 20
    devices: DeviceConfig = field(default_factory=DeviceConfig)

    def create_kwargs(self) -> dict[str, Any]:
        from docker.types import LogConfig, Mount

        mounts = [Mount(target, host, type="bind", read_only=ro) for host, target, ro in self.mounts]
        mounts += [Mount(target, host, type="bind", read_only=True)
                   for host, target in self.devices.mounts]  # fmt: skip
        memory = f"{self.memory_mb}m"
        kwargs: dict[str, Any] = {
            "command": list(self.command),
            # Not detached, so the SDK also sets StdinOnce: when our attach socket closes (the
            # answer is in, or Daedalus died) stdin closes, the fork server sees EOF and
            # exits, and no container outlives its owner running (stopped ones are reaped).
            "stdin_open": True,
            "network_mode": "none",  # never a bridge: the default bridge reaches the internet
            "read_only": True,
            "cap_drop": ["ALL"],
            "security_opt": ["no-new-privileges"],
            "pids_limit": self.pids_limit,
            "nano_cpus": int(self.cpus * 1e9),
            "mem_limit": memory,
            "memswap_limit": memory,  # no swap beyond the memory limit
            "mounts": mounts,
            # exec: load_inline builds and loads shared objects in the work dir.
            "tmpfs": {path: f"rw,exec,nosuid,nodev,size={mb}m,mode=1777"
                      for path, mb in self.tmpfs},
            "environment": dict(self.environment) | self.devices.environment,
            "labels": owner_labels(),
            "log_config": LogConfig(
                type="json-file", config={"max-size": str(self.log_max_bytes), "max-file": "1"}
            ),
            "ipc_mode": "private",
            "init": False,
            "working_dir": "/tmp",
        }
        if self.user:
            kwargs["user"] = self.user
        if self.devices.device_requests:
            kwargs["device_requests"] = self.devices.device_requests
        if self.devices.devices:
            kwargs["devices"] = self.devices.devices
        if self.devices.group_add:
            kwargs["group_add"] = self.devices.group_add
        return kwargs


def _raw_socket(attached: Any) -> socket.socket:
    raw = getattr(attached, "_sock", attached)
    assert isinstance(raw, socket.socket)
    return raw


class WarmContainer:
    """One started container and the demultiplexed byte streams of its attach socket."""

    def __init__(self, client: DockerClient, spec: ContainerSpec) -> None:
        from docker.errors import APIError

        self.spec = spec
        self.created_at = time.monotonic()
        self.stdout = bytearray()
        self.stderr = bytearray()
        self.stderr_total = 0
        self.closed = False
        self._frame = bytearray()
        try:
            self.container: Container = client.containers.create(spec.image, **spec.create_kwargs())
        except APIError as exc:
            raise ContainerError(_explain(exc, spec)) from exc
        try:
            # Attach before start so that no output (not even the ready line) is missed.
            self._attached = self.container.attach_socket(
                params={"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1}
            )
            self.sock = _raw_socket(self._attached)
            self.container.start()
        except APIError as exc:
            self.remove()
            raise ContainerError(_explain(exc, spec)) from exc

    @property
    def short_id(self) -> str:
        return str(self.container.short_id)

    def _feed(self, data: bytes) -> None:
        # Attach streams without a TTY are framed: 1 byte stream, 3 zero, 4 bytes length.
        self._frame += data
        while len(self._frame) >= 8:
            kind, size = self._frame[0], struct.unpack(">I", self._frame[4:8])[0]
            if len(self._frame) < 8 + size:
                break
            payload = bytes(self._frame[8 : 8 + size])
            del self._frame[: 8 + size]
            if kind == 2:
                self.stderr_total += len(payload)
                self.stderr = (self.stderr + payload)[-STDERR_KEEP:]
            else:
                self.stdout += payload

    def read_until(self, found: Callable[[], Any], deadline: float) -> Any:
        """Read the socket until ``found()`` returns something truthy, EOF, or the deadline."""
        while True:
            got = found()
            if got:
                return got
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self.closed:
                return None
            self.sock.settimeout(min(remaining, 5.0))
            try:
                data = self.sock.recv(1 << 16)
            except TimeoutError:
                continue
            except OSError:
                self.closed = True
                continue
            if not data:
                self.closed = True
                continue
            self._feed(data)
            if len(self.stdout) > STDOUT_CAP:
                self.closed = True

    def messages(self) -> list[dict[str, Any]]:
        """Complete JSON lines the fork server wrote so far (other lines are ignored)."""
        out = []
        for line in bytes(self.stdout).split(b"\n")[:-1]:
            try:
                message = json.loads(line)
            except ValueError:
                continue
            if isinstance(message, dict):
                out.append(message)
        return out

    def send(self, data: bytes) -> None:
        """Write to the container's stdin; a container that died meanwhile is marked closed
        (the caller then reports it) rather than raising."""
        try:
            self.sock.sendall(data)
        except OSError:
            self.closed = True

    def exit_code(self) -> int | None:
        with contextlib.suppress(Exception):
            self.container.reload()
            if self.container.status in ("exited", "dead"):
                return int(self.container.attrs["State"]["ExitCode"])
        return None

    def remove(self) -> None:
        """Kill and remove; safe to call twice, and never raises (the engine may be gone)."""
        with contextlib.suppress(Exception):
            self._attached.close()
        with contextlib.suppress(Exception):
            self.container.remove(force=True)


def _explain(exc: Exception, spec: ContainerSpec) -> str:
    message = str(exc)
    return explain_start_error(message, spec.devices) or (
        f"The Docker engine refused the sandbox container ({message}). Check the image "
        f"{spec.image!r} with `daedalus sandbox status`."
    )


class ContainerPool:
    """Keeps ``size`` started, ready containers of one spec; hands each out once."""

    def __init__(
        self, client: DockerClient, spec: ContainerSpec, size: int,
        is_ready: Callable[[WarmContainer], bool], ready_timeout_s: float,
    ) -> None:  # fmt: skip
        self.client = client
        self.spec = spec
        self.size = max(0, size)
        self.is_ready = is_ready
        self.ready_timeout_s = ready_timeout_s
        self._ready: list[WarmContainer] = []
        self._starting = 0
        self._lock = threading.Condition()
        self._closed = False
        self.last_error: str | None = None
        self._reaping: list[threading.Thread] = []

    def start_one(self, attempts: int = 2) -> WarmContainer:
        """Create, start and wait for one container (the slow path: seconds). A container
        that exits before it is ready (say, the package was being reinstalled) is retried."""
        warm = WarmContainer(self.client, self.spec)
        deadline = time.monotonic() + self.ready_timeout_s
        if not warm.read_until(lambda: self.is_ready(warm), deadline):
            tail = warm.stderr.decode(errors="replace")[-4000:]
            exited_early = warm.closed and time.monotonic() < deadline
            warm.remove()
            if exited_early and attempts > 1:
                time.sleep(1.0)
                return self.start_one(attempts - 1)
            raise ContainerError(
                f"The sandbox container did not get ready within {self.ready_timeout_s:.0f} s; "
                f"its error output was:\n{tail}\nCheck `daedalus sandbox status` and that the "
                "image's Python can import torch."
            )
        return warm

    def _fill(self) -> None:
        while True:
            with self._lock:
                if self._closed or len(self._ready) + self._starting >= self.size:
                    return
                self._starting += 1
            try:
                warm = self.start_one()
            except Exception as exc:  # the engine is the fault; acquire() reports it
                with self._lock:
                    self._starting -= 1
                    self.last_error = str(exc)
                    self._lock.notify_all()
                return
            with self._lock:
                closed = self._closed
                if not closed:
                    self._ready.append(warm)
            if closed:
                warm.remove()  # before the count drops, so close() waits for it
            with self._lock:
                self._starting -= 1
                self._lock.notify_all()

    def refill(self) -> None:
        """Top the pool up in the background."""
        if self.size:
            threading.Thread(target=self._fill, name="daedalus-docker-pool", daemon=True).start()

    def acquire(self) -> WarmContainer:
        """A ready container: from the pool if one waits, else started now.

        The pool is topped up by ``release``, after the candidate has run, so that starting
        a container (a burst of CPU for importing torch) overlaps the agent's thinking
        rather than the candidate's timing.
        """
        deadline = time.monotonic() + self.ready_timeout_s
        with self._lock:
            # A start already in flight is nearer to ready than a new one would be.
            while not self._ready and self._starting and time.monotonic() < deadline:
                self._lock.wait(deadline - time.monotonic())
            warm = self._ready.pop(0) if self._ready else None
        return warm if warm is not None else self.start_one()

    def release(self, warm: WarmContainer) -> None:
        """The candidate is done: remove its container and top the pool up."""
        self.discard(warm)
        self.refill()

    def wait_until_full(self, timeout_s: float) -> bool:
        """Block until ``size`` containers are ready (e.g. between benchmark rounds)."""
        deadline = time.monotonic() + timeout_s
        self.refill()
        with self._lock:
            while len(self._ready) < self.size and time.monotonic() < deadline:
                if not self._starting:
                    self._lock.release()
                    try:
                        self.refill()
                    finally:
                        self._lock.acquire()
                self._lock.wait(min(1.0, max(0.0, deadline - time.monotonic())))
            return len(self._ready) >= self.size

    def discard(self, warm: WarmContainer) -> None:
        """Kill and remove a used container without making the caller wait."""
        thread = threading.Thread(target=warm.remove, name="daedalus-docker-reap", daemon=True)
        thread.start()
        with self._lock:
            self._reaping = [t for t in self._reaping if t.is_alive()] + [thread]

    def close(self, timeout_s: float = 60.0) -> None:
        """Remove waiting containers, and wait for removals and starts in flight to finish
        (a start that finishes after this removes its own container)."""
        deadline = time.monotonic() + timeout_s
        with self._lock:
            self._closed = True
            ready, self._ready = self._ready, []
            reaping = list(self._reaping)
        for warm in ready:
            warm.remove()
        for thread in reaping:
            thread.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            while self._starting and time.monotonic() < deadline:
                self._lock.wait(max(0.01, deadline - time.monotonic()))
