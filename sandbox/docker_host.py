"""The Docker engine as seen from the host: connecting, labels, and the host paths to share.

The docker SDK is imported lazily so that importing the sandbox package (and thus
`daedalus --help`) never pays for it.
"""

from __future__ import annotations

import os
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from docker import DockerClient

LABEL = "daedalus.sandbox"
LABEL_PID = "daedalus.owner_pid"
LABEL_HOST = "daedalus.owner_host"
LABEL_IMAGE_KIND = "daedalus.image.kind"
LABEL_IMAGE_USER = "daedalus.image.user"
LOCAL_IMAGE = "daedalus-sandbox:local"
DEFAULT_SOCKET = "/var/run/docker.sock"


class DockerUnavailable(RuntimeError):
    """No Docker engine answers, or the docker SDK is missing. The message says how to fix it."""


def _socket_hint() -> str:
    return (
        "Start one with `dockerd --storage-driver=vfs &` (Debian: `apt-get install -y docker.io`), "
        "or point DOCKER_HOST at a running engine; `daedalus sandbox status` checks it."
    )


def engine_reachable_fast() -> bool:
    """A cheap pre-check: is there anything to connect to at all (no SDK import, no I/O wait)?"""
    host = os.environ.get("DOCKER_HOST", "")
    if host and not host.startswith("unix://"):
        return True  # a TCP or SSH engine: only a real ping can tell
    path = host.removeprefix("unix://") if host else DEFAULT_SOCKET
    return Path(path).exists()


def connect(timeout: float = 10.0) -> DockerClient:
    """A client for the engine in DOCKER_HOST (or the default socket), pinged once."""
    if not engine_reachable_fast():
        raise DockerUnavailable(f"No Docker engine socket at {DEFAULT_SOCKET}. {_socket_hint()}")
    try:
        import docker
        from docker.errors import DockerException
    except ImportError as exc:  # the SDK is a declared dependency; a broken venv lands here
        raise DockerUnavailable(
            "The docker Python SDK is not installed; run `make install` (or `pip install docker`)."
        ) from exc
    try:
        client = docker.from_env(timeout=int(max(1, timeout)))
        client.ping()
    except DockerException as exc:
        raise DockerUnavailable(f"The Docker engine does not answer ({exc}). {_socket_hint()}") from exc
    return client


def engine_available(timeout: float = 10.0) -> tuple[bool, str]:
    """(True, version) when an engine answers, else (False, the reason and the fix)."""
    try:
        client = connect(timeout)
    except DockerUnavailable as exc:
        return False, str(exc)
    try:
        version = str(client.version().get("Version", "?"))
    finally:
        client.close()
    return True, version


def owner_labels() -> dict[str, str]:
    """Labels that tie a container to this Daedalus process, so a later run can reap it."""
    return {LABEL: "1", LABEL_PID: str(os.getpid()), LABEL_HOST: socket.gethostname()}


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_containers(client: DockerClient) -> list[str]:
    """Remove containers left by Daedalus processes on this host that no longer exist.

    Containers owned by live processes (another Daedalus running beside us) and by other
    hosts sharing the engine are left alone: only their owner can know they are stale.
    """
    removed: list[str] = []
    host = socket.gethostname()
    for container in client.containers.list(all=True, filters={"label": f"{LABEL}=1"}):
        labels = container.labels or {}
        if labels.get(LABEL_HOST) != host:
            continue
        try:
            pid = int(labels.get(LABEL_PID, "0"))
        except ValueError:
            pid = 0
        if pid > 0 and _pid_alive(pid):
            continue
        container.remove(force=True)
        removed.append(container.short_id)
    return removed


def list_sandbox_containers(client: DockerClient) -> list[dict[str, str]]:
    """Every container carrying the Daedalus label, with its owner and whether it is stale."""
    host = socket.gethostname()
    rows: list[dict[str, str]] = []
    for container in client.containers.list(all=True, filters={"label": f"{LABEL}=1"}):
        labels = container.labels or {}
        pid_text = labels.get(LABEL_PID, "0")
        alive = labels.get(LABEL_HOST) != host or (pid_text.isdigit() and _pid_alive(int(pid_text)))
        rows.append(
            {
                "id": container.short_id,
                "status": container.status,
                "owner_pid": pid_text,
                "owner_host": labels.get(LABEL_HOST, "?"),
                "stale": "no" if alive else "yes",
            }
        )
    return rows


@dataclass(frozen=True)
class HostLayout:
    """What a bind-mount image needs from the host: an interpreter and read-only paths.

    The paths are mounted at the same place inside the container, so the venv's absolute
    paths (its `pyvenv.cfg`, the editable install's links) stay valid.
    """

    python: str
    mounts: tuple[str, ...]


def _minimal_roots(paths: set[Path]) -> tuple[str, ...]:
    """Drop every path that lies inside another one; mounting the parent covers it."""
    roots: list[Path] = []
    for path in sorted(paths, key=lambda p: len(p.parts)):
        if not any(path == root or root in path.parents for root in roots):
            roots.append(path)
    return tuple(sorted(str(root) for root in roots))


def _package_roots() -> set[Path]:
    """The folders the installed `daedalus` package lives in, following editable links."""
    import daedalus

    top = Path(daedalus.__file__).resolve().parent if daedalus.__file__ else None
    pkg_dir = Path(daedalus.__file__).parent if daedalus.__file__ else None
    found: set[Path] = set()
    if pkg_dir is None or top is None:
        return found
    # An editable install's link tree is rebuilt by every `make install`; a bind mount of
    # the tree itself would keep showing the deleted one, a mount of its parent stays live.
    editable = next((p for p in pkg_dir.parents if p.name.startswith("__editable__")), None)
    found.add(editable.parent if editable is not None else pkg_dir)
    found.add(top)
    for path in pkg_dir.rglob("*"):
        if path.is_symlink() and path.is_file():
            found.add(path.resolve().parent)
    return found


def host_layout() -> HostLayout:
    """The interpreter and the read-only mounts that run this very Daedalus inside a container."""
    paths = {Path("/usr"), Path(sys.prefix), Path(sys.base_prefix).resolve(), *_package_roots()}
    if Path("/etc/alternatives").is_dir():  # Debian's c++, cc, ... are links through it
        paths.add(Path("/etc/alternatives"))
    paths |= {Path(sys.prefix).resolve()}
    return HostLayout(python=sys.executable, mounts=_minimal_roots(paths))
