"""Kernel-level isolation for one forked candidate process (Linux only).

The fork server calls ``enter_pid_namespace``/``leave_pid_namespace`` around ``os.fork``
so that every candidate is PID 1 of its own PID namespace: when it exits or is killed,
the kernel kills everything it started, including processes that left its process group.
The child then calls ``isolate`` (network and mount namespaces, read-only file system
outside its writable directories, rlimits) and, after the harness's imports,
``drop_privileges``. Each step records what it achieved in the returned ``isolation`` dict
instead of failing: on machines without the privileges the result says what was shared.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import resource
import signal
from pathlib import Path

from daedalus.sandbox.result import Limits

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_NOATIME, MS_NODIRATIME, MS_BIND = 32, 1024, 2048, 4096
MS_MOVE, MS_REC, MS_PRIVATE, MS_RELATIME = 8192, 16384, 1 << 18, 1 << 21
PR_SET_PDEATHSIG, PR_SET_NO_NEW_PRIVS = 1, 38
NOBODY = 65534
_KEEP_WRITABLE_FS = frozenset({"proc", "sysfs", "cgroup", "cgroup2", "devpts", "mqueue"})
_FLAG_BITS = {
    "nosuid": MS_NOSUID,
    "nodev": MS_NODEV,
    "noexec": MS_NOEXEC,
    "noatime": MS_NOATIME,
    "nodiratime": MS_NODIRATIME,
    "relatime": MS_RELATIME,
}

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                        ctypes.c_void_p]  # fmt: skip


def _check(rc: int, what: str) -> None:
    if rc != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def _mount(src: str | None, target: str, fstype: str | None, flags: int,
           data: str | None = None) -> None:
    _check(
        _libc.mount(
            src.encode() if src else None, target.encode(),
            fstype.encode() if fstype else None, flags,
            ctypes.c_char_p(data.encode()) if data else None,
        ),
        f"mount {target}",
    )  # fmt: skip


def is_root() -> bool:
    return os.geteuid() == 0


def enter_pid_namespace() -> bool:
    """Make the next fork PID 1 of a fresh PID namespace (root only). Returns success."""
    return is_root() and _libc.unshare(CLONE_NEWPID) == 0


def leave_pid_namespace(own_ns_fd: int) -> None:
    """Point later forks back at the server's own PID namespace."""
    _check(_libc.setns(own_ns_fd, CLONE_NEWPID), "setns back to the server's PID namespace")


def _unescape(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as octal (\040 and so on).
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and i + 4 <= len(field) and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def _mounts() -> list[tuple[str, str, int]]:
    """(mount point, fs type, preserved flag bits) for every mount, parents first."""
    result = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        fields = left.split()
        flags = 0
        for opt in fields[5].split(","):
            flags |= _FLAG_BITS.get(opt, 0)
        result.append((_unescape(fields[4]), right.split()[0], flags))
    return result


Exposure = tuple[Path, list[Path]]  # (a directory nobody may enter, paths inside it to show)


def hidden_from_nobody(paths: list[Path]) -> list[Exposure]:
    """Paths the sandbox user could not reach because an ancestor is closed to others
    (e.g. Python installed under /root by pyenv), grouped by that closed ancestor."""
    groups: dict[Path, list[Path]] = {}
    for path in sorted({p.resolve() for p in paths if p.exists()}):
        for ancestor in [*reversed(path.parents), path]:
            try:
                closed = not ancestor.stat().st_mode & 0o001
            except OSError:
                break
            if closed:
                if ancestor != path:
                    kept = groups.setdefault(ancestor, [])
                    if not any(path.is_relative_to(k) for k in kept):
                        kept.append(path)
                break
    return list(groups.items())


def _expose(exposures: list[Exposure], stage: Path) -> None:
    """Replace each closed directory by an empty tmpfs that shows only the listed paths,
    so the sandbox user can import Python's standard library but sees nothing else there."""
    for n, (closed, paths) in enumerate(exposures):
        staged = []
        for i, path in enumerate(paths):
            holder = stage / f"{n}-{i}"
            holder.mkdir(parents=True)
            _mount(str(path), str(holder), None, MS_BIND | MS_REC)
            staged.append((holder, path))
        _mount("tmpfs", str(closed), "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=1m")
        for holder, path in staged:
            path.mkdir(parents=True, exist_ok=True)
            _mount(str(holder), str(path), None, MS_MOVE)


def _read_only_filesystem(writable: list[Path], new_proc: bool, exposures: list[Exposure],
                          stage: Path) -> list[str]:
    """In a private mount namespace: every mount read-only except ``writable`` binds.
    Returns the mount points that stayed writable against our wish (reported, not hidden)."""
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    _expose(exposures, stage)
    keep = set()
    for path in writable:
        _mount(str(path), str(path), None, MS_BIND | MS_REC)
        keep.add(str(path))
    failed = []
    for point, fstype, flags in _mounts():
        if point in keep or fstype in _KEEP_WRITABLE_FS:
            continue
        try:
            _mount(None, point, None, MS_REMOUNT | MS_BIND | MS_RDONLY | flags)
        except OSError:
            if point == "/":
                raise  # the root must be read-only or the claim in the result is false
            failed.append(point)
    if new_proc:
        # A proc for the candidate's own PID namespace hides every other process.
        _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    return failed


def isolate(workdir: Path, writable: list[Path], limits: Limits, *, pid_ns: bool,
            exposures: list[Exposure]) -> dict[str, str]:
    """Namespaces, file system, cwd and rlimits for the current (forked) child."""
    info: dict[str, str] = {"process_group": "own", "pid": "namespace" if pid_ns else "shared"}
    os.setsid()
    flags = CLONE_NEWNET | CLONE_NEWNS if is_root() else CLONE_NEWUSER | CLONE_NEWNET
    if _libc.unshare(flags) == 0:
        info["network"] = "isolated"
        if is_root():
            try:
                failed = _read_only_filesystem([workdir, *writable], pid_ns, exposures,
                                               workdir / ".mounts")
                info["filesystem"] = "read-only outside the work and cache directories"
                if failed:
                    info["filesystem_note"] = "still writable: " + ", ".join(failed)
            except OSError as exc:
                info["filesystem"] = "shared"
                info["filesystem_note"] = f"could not make it read-only: {exc}"
        else:
            info["filesystem"] = "shared"
            info["filesystem_note"] = "not root: no mount namespace"
    else:
        err = os.strerror(ctypes.get_errno())
        info["network"] = info["filesystem"] = "shared"
        info["network_note"] = f"unshare(CLONE_NEWNET) failed: {err}; the candidate can reach the network"
    os.chdir(workdir)
    mb = 1024 * 1024
    _limit(resource.RLIMIT_AS, limits.memory_mb * mb)
    _limit(resource.RLIMIT_CPU, limits.cpu_s, limits.cpu_s + 5)
    _limit(resource.RLIMIT_FSIZE, limits.fsize_mb * mb)
    _limit(resource.RLIMIT_NPROC, limits.processes)
    _limit(resource.RLIMIT_CORE, 0)
    return info


def _limit(which: int, soft: int, hard: int | None = None) -> None:
    _, old_hard = resource.getrlimit(which)
    hard = soft if hard is None else hard
    if old_hard != resource.RLIM_INFINITY:
        soft, hard = min(soft, old_hard), min(hard, old_hard)
    resource.setrlimit(which, (soft, hard))


def drop_privileges(info: dict[str, str]) -> None:
    """Become nobody (when root), forbid privilege gain, and die with the fork server."""
    if is_root():
        os.setgroups([])
        os.setgid(NOBODY)
        os.setuid(NOBODY)
        info["user"] = f"nobody ({NOBODY})"
    else:
        info["user"] = f"unchanged (uid {os.getuid()}; not root, cannot drop)"
    _libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    # Set after setuid because changing credentials clears the parent-death signal.
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def prepare_dir(path: Path) -> Path:
    """Create ``path`` (and parents) writable by the sandbox user."""
    path.mkdir(parents=True, exist_ok=True)
    if is_root():
        os.chown(path, NOBODY, NOBODY)
    return path



BUILD_OWNER = ".build-owner"


def hold_build_dir(ext_dir: Path) -> int:
    """Mark a build in ``ext_dir`` as live for as long as this process (or the returned fd)
    lives: a shared ``flock`` on its owner file, which the kernel drops when the process dies."""
    fd = os.open(ext_dir / BUILD_OWNER, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
    fcntl.flock(fd, fcntl.LOCK_SH)  # waits only while another server clears stale locks
    return fd


def clear_stale_build_locks(ext_dir: Path) -> list[Path]:
    """Remove torch's build ``lock`` files under ``ext_dir`` when no live build holds it.

    ``load_inline`` guards a build directory with a lock file and waits for as long as the
    file exists; a build killed mid-way (a timeout, a killed run) leaves it behind, and every
    later build of the same source would wait until its own timeout. Every sandboxed build
    holds ``hold_build_dir``'s shared lock, so an exclusive one taken here proves no build is
    alive, and holding it while deleting keeps a new build from starting in between.
    """
    removed: list[Path] = []
    locks = list(ext_dir.glob("*/lock"))
    if not locks:
        return removed
    fd = os.open(ext_dir / BUILD_OWNER, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return removed  # a build is running: its lock is live
        for lock in locks:
            with contextlib.suppress(FileNotFoundError):
                lock.unlink()
                removed.append(lock)
    finally:
        os.close(fd)
    return removed
