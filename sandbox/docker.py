"""The Docker sandbox, parent side: one single-use container per candidate.

Inside every container runs the very fork server the process sandbox uses
(``python -m daedalus.sandbox.forkserver``), so the cascade, its limits and its result
format are identical; the container adds what a process cannot get on its own here: no
network interfaces at all (``network_mode="none"``), a read-only root with tmpfs scratch,
no capabilities, ``no-new-privileges``, user nobody, and pids/CPU/memory cgroup limits.
RLIMIT_AS is still set inside by the fork server, because this machine's kernel does not
enforce cgroup memory limits.

A warm pool of started containers (torch already imported) hides the start-up; each
container serves exactly one request and is then killed and removed in the background.
Candidates that build code (C++/CUDA extensions, Triton, torch.compile) get a dedicated
container with their own build-cache directory mounted writable, so a build is paid once
per source and no candidate can touch another's cache.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from daedalus.sandbox.docker_devices import DeviceConfig, DeviceError, gpu_config, npu_config
from daedalus.sandbox.docker_host import (
    LABEL_IMAGE_KIND,
    LABEL_IMAGE_USER,
    LOCAL_IMAGE,
    connect,
    engine_available,
    host_layout,
    remove_stale_containers,
)
from daedalus.sandbox.docker_pool import (
    ContainerError,
    ContainerPool,
    ContainerSpec,
    WarmContainer,
)
from daedalus.sandbox.protocol import WORKER_ENV, Sandbox, SandboxRun, sandbox_run_from_answer
from daedalus.sandbox.result import Limits
from daedalus.sandbox.static import needs_build

if TYPE_CHECKING:
    from docker import DockerClient

START_TIMEOUT_S = 180.0  # importing torch on a loaded 2-core machine can take a while
ANSWER_GRACE_S = 30.0
CONTAINER_CACHE = "/cache"
SCRATCH_MB = 2048
FORK_SERVER_MB = 1536  # the fork server's own torch, on top of the candidate's memory limit
EXTRA_PIDS = 64  # the fork server's own threads count against the pids limit


class DockerSandbox:
    """Container-per-candidate isolation through the Docker engine (see docs/docker.md)."""

    name = "docker"

    def __init__(
        self, image: str | None = None, pool_size: int = 2, gpus: str | None = None,
        npus: str | None = None, cache_dir: Path | str | None = None,
        pool_limits: Limits | None = None, ready_timeout_s: float = START_TIMEOUT_S,
        client: DockerClient | None = None,
    ) -> None:  # fmt: skip
        self.image = image or os.environ.get("DAEDALUS_DOCKER_IMAGE") or LOCAL_IMAGE
        self.pool_size = pool_size
        # The shape (memory, pids, CPUs) of the warm containers; a request whose limits fit
        # inside it uses one, and the fork server applies the request's own rlimits inside.
        self.pool_limits = pool_limits or Limits()
        self.ready_timeout_s = ready_timeout_s
        gpus = gpus if gpus is not None else os.environ.get("DAEDALUS_DOCKER_GPUS")
        npus = npus if npus is not None else os.environ.get("DAEDALUS_DOCKER_NPUS")
        self.devices = gpu_config(gpus).merge(npu_config(npus))
        self._cache_root = Path(cache_dir) if cache_dir else None
        self._client = client
        self._pool: ContainerPool | None = None
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._fingerprints: dict[str, dict[str, str]] = {}
        self._engine_version = ""
        self._image_id = ""
        self._layout_mounts: tuple[tuple[str, str, bool], ...] = ()
        self._python = ""
        self._user: str | None = "65534:65534"
        self._env: dict[str, str] = {}
        self.removed_stale: list[str] = []

    # -- set-up ------------------------------------------------------------------------
    @property
    def client(self) -> DockerClient:
        if self._client is None:
            # Creating a container copies the image on the vfs driver: minutes for big images.
            self._client = connect(timeout=600)
        return self._client

    def _prepare(self) -> ContainerPool:
        with self._lock:
            if self._pool is not None:
                return self._pool
            client = self.client
            self.removed_stale = remove_stale_containers(client)
            self._engine_version = str(client.version().get("Version", "?"))
            self._resolve_image(client)
            self._pool = ContainerPool(
                client, self._spec(self.pool_limits, build_mounts=()), self.pool_size,
                self._ready, self.ready_timeout_s,
            )  # fmt: skip
            return self._pool

    def _resolve_image(self, client: DockerClient) -> None:
        from docker.errors import ImageNotFound

        from daedalus.sandbox.docker_image import ImageError, ensure_local_image

        if self.image == LOCAL_IMAGE:
            ensure_local_image(client, self.image)
        try:
            image = client.images.get(self.image)
        except ImageNotFound as exc:
            raise ImageError(
                f"The sandbox image {self.image!r} is not in this Docker engine. Build it with "
                "`daedalus sandbox build-image cpu --local` (or the recipe that names it)."
            ) from exc
        labels = image.labels or {}
        self._image_id = str(image.id)
        # Nobody unless the image names another user; "root" opts out (e.g. device access).
        declared = labels.get(LABEL_IMAGE_USER, "65534:65534")
        self._user = None if declared in ("", "root", "0", "0:0") else declared
        if labels.get(LABEL_IMAGE_KIND) == "local":
            # The bind-mount image: run this very interpreter, venv and package, read-only.
            layout = host_layout()
            self._python = layout.python
            self._layout_mounts = tuple((p, p, True) for p in layout.mounts)
            self._env = {"PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin")}
        else:
            self._python = labels.get("daedalus.image.python", "python3")
            self._layout_mounts = ()
            self._env = {}

    def _spec(self, limits: Limits, build_mounts: tuple[tuple[str, str, bool], ...],
              devices: DeviceConfig | None = None) -> ContainerSpec:  # fmt: skip
        env = {
            **self._env, **WORKER_ENV, "HOME": "/tmp", "PYTHONDONTWRITEBYTECODE": "1",
        }  # fmt: skip
        return ContainerSpec(
            image=self._image_id,
            command=(self._python, "-m", "daedalus.sandbox.forkserver", CONTAINER_CACHE),
            mounts=self._layout_mounts + build_mounts,
            user=self._user,
            memory_mb=limits.memory_mb + FORK_SERVER_MB,
            cpus=float(max(1, limits.threads)),
            pids_limit=limits.processes + EXTRA_PIDS,
            tmpfs=(("/tmp", SCRATCH_MB), (CONTAINER_CACHE, SCRATCH_MB)),
            environment=tuple(sorted(env.items())),
            devices=devices or self.devices,
        )

    def _ready(self, warm: WarmContainer) -> bool:
        for message in warm.messages():
            if message.get("event") == "ready":
                if not self._fingerprints:
                    self._fingerprints = dict(message.get("fingerprints", {}))
                return True
        return False

    def start(self) -> None:
        pool = self._prepare()
        pool.refill()

    def wait_warm(self, timeout_s: float = START_TIMEOUT_S) -> bool:
        """Block until the warm pool is full; True when it is."""
        return self._prepare().wait_until_full(timeout_s)

    # -- per candidate -----------------------------------------------------------------
    def cache_root(self) -> Path:
        """Where builds are cached. The bind-mount image runs this host's very Python, torch
        and compilers, so it shares the process sandbox's cache; any other image gets its
        own, since its builds would not load here (nor these there)."""
        from daedalus.sandbox.process import default_cache_dir

        base = self._cache_root or default_cache_dir()
        if self._layout_mounts:
            return base
        return base / "docker" / self._image_id.removeprefix("sha256:")[:12]

    def _build_mounts(self, code: str) -> tuple[tuple[str, str, bool], ...]:
        """The writable caches one build candidate may use, as the fork server names them."""
        from daedalus.sandbox.isolation import prepare_dir

        root = self.cache_root()
        # Same key as ForkServer.spawn, so the build lands where the server looks for it.
        key = hashlib.sha256(code.encode()).hexdigest()[:20]
        pairs = [
            (root / "torch_extensions" / key, f"{CONTAINER_CACHE}/torch_extensions/{key}"),
            (root / "inductor", f"{CONTAINER_CACHE}/inductor"),
            (root / "triton", f"{CONTAINER_CACHE}/triton"),
        ]
        return tuple((str(prepare_dir(host)), target, False) for host, target in pairs)

    def _devices_for(self, backend: str) -> DeviceConfig:
        """The sandbox's own devices, or for a GPU/NPU backend without any, all of the host's."""
        if backend in ("cuda", "triton") and not self.devices.device_requests:
            from daedalus.sandbox.backends.detect import nvidia_gpus

            if nvidia_gpus():
                return self.devices.merge(gpu_config("all"))
        if backend == "npu" and not self.devices.devices:
            try:
                return self.devices.merge(npu_config("all"))
            except DeviceError as exc:
                raise ContainerError(str(exc)) from exc
        return self.devices

    def _container_for(self, request: dict[str, Any], limits: Limits) -> WarmContainer:
        pool = self._prepare()
        code = str(request.get("code", ""))
        devices = self._devices_for(str(request.get("backend", "cpu")))
        fits = (
            limits.memory_mb <= self.pool_limits.memory_mb
            and limits.processes <= self.pool_limits.processes
            and limits.threads == self.pool_limits.threads
            and devices is self.devices
        )
        if fits and not needs_build(code):
            return pool.acquire()
        mounts = self._build_mounts(code) if needs_build(code) else ()
        spec = self._spec(limits, mounts, devices)
        dedicated = ContainerPool(self.client, spec, 0, self._ready, self.ready_timeout_s)
        return dedicated.start_one()

    def run(self, request: dict[str, Any], limits: Limits) -> SandboxRun:
        started = time.monotonic()
        # No engine, no image or a container that cannot start is our failure, not the
        # candidate's: it raises (a RuntimeError), as the process sandbox does when its
        # fork server cannot start, instead of being recorded against the candidate.
        warm = self._container_for(request, limits)
        rid = next(self._ids)
        wait = limits.timeout_s + ANSWER_GRACE_S
        if needs_build(str(request.get("code", ""))):
            wait += limits.compile_timeout_s
        try:
            # stdin stays open until the answer: EOF would make the server kill the child.
            warm.send((json.dumps({**request, "id": rid}) + "\n").encode())

            def answer() -> dict[str, Any] | None:
                for message in warm.messages():
                    if message.get("id") == rid:
                        return message
                return None

            got = warm.read_until(answer, time.monotonic() + wait)
            if got is not None:
                run = sandbox_run_from_answer(got)
                # What the fork server could not do inside the container (its own network
                # and mount namespaces need capabilities the container does not have) is
                # what the container itself provides: report that, not the inner view.
                inner = {k: v for k, v in run.isolation.items()
                         if k not in ("network_note", "filesystem_note")}  # fmt: skip
                run.isolation = {**inner, **self._isolation(warm, limits)}
                return run
            tail = warm.stderr.decode(errors="replace")[-4000:]
            if warm.closed:
                code = warm.exit_code()
                return SandboxRun(
                    result=None, exit_code=code, duration_s=time.monotonic() - started,
                    sandbox_error=f"the sandbox container {warm.short_id} exited (code {code}) "
                    f"without answering; its error output:\n{tail}",
                )  # fmt: skip
            return SandboxRun(
                result=None, timed_out=True, duration_s=time.monotonic() - started,
                sandbox_error=f"the sandbox container {warm.short_id} did not answer within "
                f"{wait:.0f} s and was killed",
            )  # fmt: skip
        finally:
            if self._pool is not None:
                self._pool.release(warm)
            else:
                warm.remove()

    def _isolation(self, warm: WarmContainer, limits: Limits) -> dict[str, str]:
        spec = warm.spec
        return {
            "sandbox": f"docker container {warm.short_id} (single use)",
            "network": "none (network_mode=none: loopback only)",
            "filesystem": "read-only image root and host mounts; tmpfs /tmp and /cache",
            "user": spec.user or "image default",
            "capabilities": "none (cap_drop=ALL, no-new-privileges)",
            "pids_limit": str(spec.pids_limit),
            "memory": f"cgroup {spec.memory_mb} MB + RLIMIT_AS {limits.memory_mb} MB",
            "cpus": f"{spec.cpus:g}",
            "devices": spec.devices.description,
        }

    def fingerprint(self, backend: str) -> dict[str, str]:
        if not self._fingerprints:
            pool = self._prepare()
            warm = pool.acquire()  # a container reports its fingerprints when ready
            pool.discard(warm)
        found = dict(self._fingerprints.get(backend, {}))
        found.update(
            sandbox="docker", docker_engine=self._engine_version,
            image=f"{self.image}@{self._image_id.removeprefix('sha256:')[:12]}",
        )  # fmt: skip
        return found

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()


def engine_answers() -> bool:
    ok, _ = engine_available()
    return ok


def auto_sandbox(**options: Any) -> Sandbox:
    """Docker when an engine answers, else the process sandbox (``--sandbox auto``)."""
    if engine_answers():
        return DockerSandbox(**options)
    from daedalus.sandbox.process import ProcessSandbox

    return ProcessSandbox(cache_dir=options.get("cache_dir"))

