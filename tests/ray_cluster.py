"""A real two-node Ray cluster for tests, sealed in a loopback-only network namespace.

Ray advertises the machine's own address and would use it; inside ``unshare -n`` the only
interface is ``lo``, so the head, the second node and the driver all talk over 127.0.0.1
and nothing leaves the machine. The namespace also gets its own PID namespace, so killing
its first process (by its id) ends every Ray process in it, and the second node runs in a
nested PID namespace of its own, so a test can kill that whole node at once, as if the
machine had died. Every Ray process runs with token auth and without usage stats.

    with RayCluster(tmp_path) as cluster:
        done = cluster.run(["daedalus", "run", ...], cwd=tmp_path)
        cluster.kill_node()
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

BIN = Path(sys.executable).parent
PORT = 6390
# Fast death detection, so a killed node's actors fail in seconds rather than a minute.
FAST_HEALTH = {
    "RAY_health_check_initial_delay_ms": "1000",
    "RAY_health_check_period_ms": "1000",
    "RAY_health_check_timeout_ms": "1000",
    "RAY_health_check_failure_threshold": "3",
}


def namespace_problem() -> str | None:
    """Why a sealed cluster cannot run here, or None."""
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return "needs unshare and ip (util-linux, iproute2) to seal Ray in a loopback-only namespace"
    probe = subprocess.run(
        ["unshare", "-n", "-p", "-f", "--mount-proc", "ip", "link", "set", "lo", "up"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    if probe.returncode != 0:
        return f"unshare -n -p is not permitted here ({probe.stderr.strip()[:200]}); Ray tests need it"
    try:
        import ray  # noqa: F401
    except ImportError:
        return "Ray is not installed: pip install -e '.[ray]'"
    return None


def skip_without_namespace() -> None:
    problem = namespace_problem()
    if problem is not None and os.environ.get("DAEDALUS_REQUIRE_RAY") == "1":
        pytest.fail(problem + " (DAEDALUS_REQUIRE_RAY=1: CI must not skip it)")
    if problem is not None:
        pytest.skip(problem)


class RayCluster:
    """A head (``head_cpus``) and a second node (``node_cpus``) started with
    ``daedalus worker start``; commands run inside the namespace through ``nsenter``."""

    def __init__(self, root: Path, *, head_cpus: int = 1, node_cpus: int = 1) -> None:
        self.root = root
        self.head_cpus, self.node_cpus = head_cpus, node_cpus
        # Short: Ray's unix socket paths live under it and must stay under 108 bytes.
        self.ray_tmp = Path(f"/tmp/dr-{secrets.token_hex(4)}")
        # A private build cache: a node killed mid-build leaves torch's build lock behind,
        # which would stall every later C++ build in the machine's shared cache. Outside
        # pytest's private tmp dir, so the sandbox user can reach it.
        self.cache = Path(f"{self.ray_tmp}-cache")
        self.env = {
            **os.environ,
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN": secrets.token_hex(16),
            "RAY_USAGE_STATS_ENABLED": "0",
            "RAY_TMPDIR": str(self.ray_tmp),
            "DAEDALUS_SANDBOX_CACHE": str(self.cache),
            "PATH": f"{BIN}:{os.environ.get('PATH', '')}",
            **FAST_HEALTH,
        }
        self.address = f"127.0.0.1:{PORT}"
        self._proc: subprocess.Popen[str] | None = None
        self._init_pid: int | None = None

    def _script(self) -> str:
        ready = self.root / "cluster.ready"
        return f"""
set -e
ip link set lo up
mkdir -p {self.ray_tmp}
daedalus worker start --head --node-ip-address 127.0.0.1 --port {PORT} --num-cpus {self.head_cpus} \
  > {self.root}/head.log 2>&1
# The second node in a nested PID namespace: killing its first process kills the whole node.
unshare -p -f --mount-proc daedalus worker start --address {self.address} \
  --node-ip-address 127.0.0.1 --num-cpus {self.node_cpus} --block > {self.root}/node.log 2>&1 &
echo $! > {self.root}/node.unshare.pid
for i in $(seq 120); do
  if python -c "import ray, sys; ray.init(address='{self.address}', logging_level='ERROR'); \
sys.exit(0 if sum(n['Alive'] for n in ray.nodes()) >= 2 else 1)" 2>/dev/null; then
    touch {ready}; break
  fi
  sleep 1
done
exec sleep infinity
"""

    def __enter__(self) -> RayCluster:
        script = self.root / "cluster.sh"
        script.write_text(self._script())
        self._proc = subprocess.Popen(
            ["unshare", "-n", "-p", "-f", "--mount-proc", "bash", str(script)],
            env=self.env, stdout=subprocess.DEVNULL, stderr=open(self.root / "cluster.err", "w"),
            text=True, start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + 180
        while not (self.root / "cluster.ready").exists():
            if self._proc.poll() is not None or time.monotonic() > deadline:
                logs = self.logs()
                self.__exit__(None, None, None)
                raise RuntimeError(f"the test Ray cluster did not start:\n{logs}")
            time.sleep(0.5)
        self._init_pid = _only_child(self._proc.pid)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._proc is None:
            return
        init = self._init_pid or _only_child(self._proc.pid, wait=False)
        if init is not None:  # the namespace's first process: the kernel ends the rest
            _kill(init)
        try:
            self._proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            _kill(self._proc.pid)
            self._proc.wait(timeout=10)
        self._proc = None
        shutil.rmtree(self.ray_tmp, ignore_errors=True)
        shutil.rmtree(self.cache, ignore_errors=True)

    def logs(self) -> str:
        parts = []
        for name in ("cluster.err", "head.log", "node.log"):
            path = self.root / name
            if path.exists():
                parts.append(f"--- {name}\n{path.read_text()[-3000:]}")
        return "\n".join(parts)

    def _nsenter(self, argv: list[str], cwd: Path) -> list[str]:
        assert self._init_pid is not None, "the cluster is not running"
        # Entering the mount namespace resets the working directory unless --wd names it.
        return ["nsenter", "-t", str(self._init_pid), "-n", "-p", "-m", f"--wd={cwd}", "--", *argv]

    def run(self, argv: list[str], *, cwd: Path, timeout: float, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self._nsenter(argv, cwd), cwd=cwd, env={**self.env, **(env or {})},
                              capture_output=True, text=True, timeout=timeout)  # fmt: skip

    def popen(self, argv: list[str], *, cwd: Path, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        return subprocess.Popen(self._nsenter(argv, cwd), cwd=cwd, env={**self.env, **(env or {})},
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip

    def kill_node(self) -> None:
        """SIGKILL the second node's PID namespace: its raylet, workers and fork servers die
        at once, with no chance to say goodbye."""
        unshare_pid = (self.root / "node.unshare.pid").read_text().strip()
        done = self.run(
            ["bash", "-c", f"kill -9 $(cat /proc/{unshare_pid}/task/{unshare_pid}/children)"],
            cwd=self.root, timeout=30,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr


def _only_child(pid: int, *, wait: bool = True) -> int | None:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    for _ in range(100 if wait else 1):
        try:
            children = path.read_text().split()
        except OSError:
            return None
        if children:
            return int(children[0])
        time.sleep(0.1)
    return None


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
