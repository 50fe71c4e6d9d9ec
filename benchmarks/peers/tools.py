"""Run OpenEvolve 0.4.0 or Daedalus once on the benchmark task and watch it from outside.

Both get the same task directory (the shipped function_minimization with the benchmark's
evaluator wrapper) and the same config.yaml (only the model name differs, so the stub can
tell the runs apart). A watcher samples the run's whole process tree every 0.2 s: the sum
of PSS (proportional set size, so pages shared after fork are not counted twice) gives
peak memory, and the set of processes seen tells which ones outlived the run. CPU time is
the tree's user + system time (``RUSAGE_CHILDREN``: every process its parent waited for).
"""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.peers.scripts import ROOT, TASK_DIR, TRUSTING_EVALUATOR

OE_VENV = ROOT / "benchmarks" / "peers" / ".venv-openevolve"
STUB_KEY = "sk-stub-not-a-secret"
CONFIG = """\
max_iterations: {iterations}
checkpoint_interval: {checkpoint}
random_seed: 42
diff_based_evolution: false
max_code_length: 20000
log_level: "INFO"
llm:
  api_base: "{url}"
  api_key: "${{BENCH_STUB_KEY}}"
  models:
    - name: "{model}"
      weight: 1.0
  temperature: 0.7
  max_tokens: 4096
  retries: 1
prompt:
  system_message: "Improve search_algorithm so it finds the global minimum of f reliably and fast."
database:
  num_islands: 2
  migration_interval: 10
evaluator:
  timeout: {timeout}
  cascade_evaluation: true
  cascade_thresholds: [0.3]
  parallel_evaluations: {parallel}
  memory_limit_mb: 3072
"""


@dataclass
class Run:
    tool: str
    scenario: str
    workdir: Path
    returncode: int | None = None
    wall_s: float = 0.0
    cpu_s: float = 0.0  # user + system time of the whole process tree (every waited-for child)
    peak_pss_mb: float = 0.0
    leftovers: list[str] = field(default_factory=list)  # processes alive after the run
    log: Path | None = None
    killed: bool = False


def prepare(workdir: Path, *, model: str, url: str, iterations: int, timeout: float,
            checkpoint: int, policy: str = "on", parallel: int = 1) -> Path:
    """A fresh copy of the task with the benchmark's config.yaml and evaluator wrapper."""
    task = workdir / "task"
    if task.exists():
        shutil.rmtree(task)
    task.mkdir(parents=True)
    shutil.copy(TASK_DIR / "initial_program.py", task / "initial_program.py")
    (task / "evaluator.py").write_text((TASK_DIR / "evaluator.py").read_text() + TRUSTING_EVALUATOR)
    (task / "config.yaml").write_text(CONFIG.format(
        iterations=iterations, checkpoint=checkpoint, url=url, model=model, timeout=timeout,
        parallel=parallel))
    (task / "daedalus.toml").write_text(f'policy = "{policy}"\n')
    return task


def environment() -> dict[str, str]:
    """No proxies (loopback only), the stub's key, and nothing else of ours."""
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env.update(BENCH_STUB_KEY=STUB_KEY, NO_PROXY="127.0.0.1,localhost", PYTHONUNBUFFERED="1")
    return env


def openevolve_command(task: Path, out: Path, iterations: int, checkpoint: Path | None = None) -> list[str]:
    command = [str(OE_VENV / "bin" / "openevolve-run"), str(task / "initial_program.py"),
               str(task / "evaluator.py"), "--config", str(task / "config.yaml"),
               "--output", str(out), "--iterations", str(iterations)]  # fmt: skip
    return command + (["--checkpoint", str(checkpoint)] if checkpoint else [])


def daedalus_command(task: Path | None, resume: str | None = None) -> list[str]:
    base = [sys.executable, "-m", "daedalus.agent.cli", "run"]
    return base + (["--resume", resume, "--json"] if resume else [str(task), "--json"])


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        tree.setdefault(parent, []).append(int(entry))
    return tree


def descendants(root: int) -> list[int]:
    tree, out, todo = _children(), [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo += tree.get(pid, [])
    return out


def _pss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def _identity(pid: int) -> str | None:
    """``pid:starttime cmdline`` (start time guards against a reused pid)."""
    try:
        start = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except (OSError, IndexError):
        return None
    return f"{pid}:{start} {cmd.strip()[:120]}"


def execute(run: Run, command: list[str], *, timeout_s: float = 900.0, cwd: Path | None = None,
            on_start: Callable[[int], None] | None = None) -> Run:
    """Run ``command`` in its own session; record wall time, peak PSS and leftovers.
    ``on_start`` gets the pid (the kill/resume scenario's hook needs it)."""
    run.workdir.mkdir(parents=True, exist_ok=True)
    run.log = run.workdir / f"{run.tool}-{run.scenario}.log"
    seen: dict[int, str] = {}
    peak = 0
    with run.log.open("ab") as log:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.monotonic()
        proc = subprocess.Popen(command, cwd=cwd or run.workdir, stdout=log, stderr=subprocess.STDOUT,
                                env=environment(), start_new_session=True)
        if on_start is not None:
            on_start(proc.pid)
        done = threading.Event()

        def watch() -> None:
            nonlocal peak
            while not done.is_set():
                pids = descendants(proc.pid)
                for pid in pids:
                    if pid not in seen and (ident := _identity(pid)) is not None:
                        seen[pid] = ident
                peak = max(peak, sum(_pss_kb(p) for p in pids))
                done.wait(0.2)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        try:
            run.returncode = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            kill_group(proc.pid)
            run.returncode = proc.wait()
            run.killed = True
        run.wall_s = time.monotonic() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        run.cpu_s = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
        done.set()
        watcher.join()
    time.sleep(3.0)  # let orderly shutdowns finish before calling anything a leftover
    run.leftovers = [ident for pid, ident in seen.items() if _identity(pid) == ident]
    for pid in list(seen):
        if _identity(pid) == seen[pid]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)  # ours: the benchmark started them
    run.peak_pss_mb = peak / 1024
    return run


def kill_group(pid: int) -> None:
    """SIGKILL a run's whole session (its process group), as a crash or the OOM killer would."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
