"""Daedalus against OpenEvolve 0.4.0, side by side, on the same program task (issue 8).

    python benchmarks/peers/run.py --iterations 50 [--repeats 2] [--phases perf,hostile,resume]

One command: sets up OpenEvolve 0.4.0 in ``benchmarks/peers/.venv-openevolve`` (never a
Daedalus dependency), starts ONE scripted OpenAI-compatible stub on 127.0.0.1 that both
tools call (``tests/stub_llm.py``, scripted by ``scripts.Conductor``: both tools get the
same programs in the same order), and runs both on the shipped ``function_minimization``
task with the same config.yaml:

- perf: N iterations per run, ``--repeats`` rounds in ABBA order so drifting machine load
  hits both; wall time per iteration, steady-state time per iteration, peak memory (PSS
  of the process tree), candidates kept, best score.
- hostile: a short run per hostile program (infinite loop, memory bomb capped at 4 GiB,
  os._exit(0), killing the parent, a file outside the work dir, a loopback socket,
  monkeypatching json.dumps, an inf score, a NaN score) for OpenEvolve, Daedalus with its
  sandbox only (policy off) and Daedalus as shipped (static policy + sandbox).
- resume: SIGKILL each tool's whole process group mid-run (at the LLM request after half
  the iterations), resume it (OpenEvolve: its latest checkpoint; Daedalus: --resume) and
  count what was lost.

Prints markdown tables to paste into benchmarks/README.md and writes results.json in the
work directory. Not part of `make test` (it installs a second tool and takes minutes).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.peers import openevolve_env  # noqa: E402
from benchmarks.peers.report import (  # noqa: E402
    State,
    daedalus_state,
    fmt,
    latest_checkpoint,
    markdown,
    median,
    openevolve_log,
    openevolve_state,
)  # fmt: skip
from benchmarks.peers.scripts import HOSTILE, Conductor  # noqa: E402
from benchmarks.peers.tools import (  # noqa: E402
    Run,
    daedalus_command,
    execute,
    kill_group,
    openevolve_command,
    prepare,
)  # fmt: skip
from tests.stub_llm import StubLLM  # noqa: E402

PACKAGES = ("agent", "tools", "sandbox", "archive", "tasks", "prompts", "daedalus_pkg")
TOOLS = {"openevolve": "OpenEvolve 0.4.0", "daedalus": "Daedalus"}
HOSTILE_TOOLS = {"openevolve": "OpenEvolve 0.4.0", "sandbox": "Daedalus, sandbox only (policy off)",
                 "daedalus": "Daedalus as shipped (policy + sandbox)"}  # fmt: skip


class Listener:
    """A loopback TCP listener that counts who connected (the socket hostile's target)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            conn.close()


class Bench:
    def __init__(self, args: argparse.Namespace, work: Path, stub: StubLLM, conductor: Conductor,
                 listener: Listener) -> None:
        self.args, self.work, self.stub, self.conductor, self.listener = args, work, stub, conductor, listener

    def run(self, tool: str, scenario: str, n: int, *, iterations: int, timeout: float,
            checkpoint: int, resume: str | None = None, oe_checkpoint: Path | None = None,
            kill_at: int | None = None) -> tuple[Run, State, str]:
        model = f"bench-{tool}-{scenario}-{n}"
        rundir = self.work / f"{tool}-{scenario}-{n}"
        task = rundir / "task"
        if resume is None and oe_checkpoint is None:
            task = prepare(rundir, model=model, url=self.stub.url, iterations=iterations,
                           timeout=timeout, checkpoint=checkpoint, parallel=self.args.parallel,
                           policy="off" if tool == "sandbox" else "on")
        if tool == "openevolve":
            command = openevolve_command(task, rundir / "out", iterations, oe_checkpoint)
        else:
            command = daedalus_command(task, resume)
        started: dict[str, int] = {}
        if kill_at is not None:
            self.conductor.kill_at[model] = (kill_at, lambda: kill_group(started["pid"]))
        run = execute(Run(tool, scenario, rundir), command, on_start=lambda pid: started.update(pid=pid))
        self.conductor.kill_at.pop(model, None)
        state = openevolve_state(rundir / "out") if tool == "openevolve" else daedalus_state(rundir)
        return run, state, model

    # ------------------------------------------------------------------------- perf
    def perf(self) -> dict[str, list[dict[str, object]]]:
        n_iter = self.args.iterations
        out: dict[str, list[dict[str, object]]] = {t: [] for t in TOOLS}
        for r in range(self.args.repeats):
            order = list(TOOLS) if r % 2 == 0 else list(reversed(TOOLS))
            for tool in order:
                start = time.monotonic()
                run, state, model = self.run(tool, "perf", r, iterations=n_iter, timeout=30, checkpoint=10)
                times = self.conductor.times.get(model, [])
                if tool == "openevolve" and run.log:
                    eval_ms = openevolve_log(run.log)["eval_ms_median"]
                else:
                    eval_ms = round(1000 * (median(state.eval_seconds) or 0))
                out[tool].append({
                    "returncode": run.returncode, "wall_s": run.wall_s, "per_iteration_s": run.wall_s / n_iter,
                    "cpu_s": run.cpu_s, "cpu_per_iteration_s": run.cpu_s / n_iter,
                    "steady_s": (times[-1] - times[0]) / (len(times) - 1) if len(times) > 1 else None,
                    "startup_s": times[0] - start if times else None, "peak_pss_mb": run.peak_pss_mb,
                    "kept": state.kept, "valid": state.valid, "best": state.best, "eval_ms": eval_ms,
                    "llm_requests": self.conductor.counts.get(model, 0),
                    "analyst_requests": self.conductor.analyst.get(model, 0), "load": os.getloadavg()[0],
                })  # fmt: skip
                print(f"perf {tool} #{r}: {out[tool][-1]}", file=sys.stderr)
        return out

    # ------------------------------------------------------------------------- hostile
    def hostile(self) -> dict[str, dict[str, str]]:
        cells: dict[str, dict[str, str]] = {}
        escapes = self.work / "escapes"
        escapes.mkdir(parents=True, exist_ok=True)
        escapes.chmod(0o777)  # writable by anyone: only isolation can stop the write
        for scenario in self.args.hostile:
            cells[scenario] = {}
            for tool in HOSTILE_TOOLS:
                before = self.listener.connections
                run, state, _ = self.run(tool, scenario, 0, iterations=4, timeout=10, checkpoint=1)
                escaped = (escapes / f"{tool}-{scenario}-0.txt").exists()
                counts = openevolve_log(run.log) if tool == "openevolve" and run.log else {}
                cells[scenario][tool] = describe_hostile(run, state, escaped,
                                                         self.listener.connections - before, counts)
                print(f"hostile {scenario} {tool}: {cells[scenario][tool]}", file=sys.stderr)
        return cells

    # ------------------------------------------------------------------------- resume
    def resume(self) -> dict[str, dict[str, object]]:
        n_iter = self.args.iterations
        kill_at = n_iter // 2
        out: dict[str, dict[str, object]] = {}
        for tool in TOOLS:
            first, after_kill, model = self.run(tool, "resume", 0, iterations=n_iter, timeout=30,
                                                checkpoint=10, kill_at=kill_at)
            delivered = kill_at  # replies the tool received before it died
            durable = after_kill.kept
            if tool == "openevolve":
                # Its documented way back: the latest checkpoint; with none, start over.
                checkpoint = latest_checkpoint(first.workdir / "out")
                remaining = n_iter - after_kill.last_iteration if checkpoint else n_iter
                _, final, _ = self.run(tool, "resume", 0, iterations=remaining, timeout=30,
                                       checkpoint=10, oe_checkpoint=checkpoint)
            else:
                _, final, _ = self.run(tool, "resume", 0, iterations=n_iter, timeout=30,
                                       checkpoint=10, resume=after_kill.run_id)
            out[tool] = {"killed_at_request": kill_at, "replies_before_kill": delivered,
                         "durable_after_kill": durable, "lost": max(0, delivered - durable),
                         "final_kept": final.kept, "final_valid": final.valid,
                         "llm_requests": self.conductor.counts.get(model, 0),
                         "finished": final.finished or final.last_iteration >= n_iter}  # fmt: skip
            print(f"resume {tool}: {out[tool]}", file=sys.stderr)
        return out


def _reason(detail: str) -> str:
    """The gist of an error for a table cell."""
    text = re.sub(r"^(the evaluator reported: |line \d+: )", "", detail.strip())
    text = text.split(";")[0].strip()
    return text if len(text) <= 60 else text[:57] + "..."


def describe_hostile(run: Run, state: State, escaped: bool, connections: int,
                     counts: dict[str, int | bool]) -> str:
    """One table cell: what happened to the hostile program and to the run around it."""
    hostile = next((p for p in state.programs if p.hostile), None)
    later = [p for p in state.programs[1:] if not p.hostile]
    parts = []
    if run.returncode != 0:
        parts.append(f"**run died** (exit {run.returncode})")
    if hostile is None:
        parts.append("not recorded")
    else:
        why = "" if hostile.status == "ok" else _reason(hostile.detail)
        parts.append(f"`{hostile.status}`" + (f" ({why})" if why else ""))
    parts.append(f"later {sum(p.status == 'ok' for p in later)}/3 ok")
    if escaped:
        parts.append("**file written outside**")
    if connections:
        parts.append(f"**{connections} loopback connection(s)**")
    if state.best is not None and not math.isfinite(state.best):
        parts.append(f"**best score = {state.best}**")
    if run.peak_pss_mb > 1024:
        parts.append(f"peak {run.peak_pss_mb / 1024:.1f} GiB")
    if run.leftovers:
        parts.append(f"**{len(run.leftovers)} process(es) outlived the run**")
    if counts.get("broken_pool"):
        parts.append("**worker pool broken**")
    if counts.get("timeouts"):
        parts.append(f"{counts['timeouts']} timeouts logged")
    return "; ".join(parts) + f"; {run.wall_s:.0f} s"


def tables(results: dict[str, object], args: argparse.Namespace) -> str:
    out = []
    perf = results.get("perf")
    if isinstance(perf, dict):
        def col(tool: str, key: str) -> list[float]:
            return [float(r[key]) for r in perf[tool] if r.get(key) is not None]

        rows = [
            ["wall time per iteration, incl. start-up (median)", *(fmt(median(col(t, "per_iteration_s")), " s") for t in TOOLS)],
            ["steady-state time per iteration (median)", *(fmt(median(col(t, "steady_s")), " s") for t in TOOLS)],
            ["start-up until the first LLM request (median)", *(fmt(median(col(t, "startup_s")), " s") for t in TOOLS)],
            ["CPU time of the process tree per iteration, incl. start-up (median)", *(fmt(median(col(t, "cpu_per_iteration_s")), " s") for t in TOOLS)],
            ["evaluation time per program (median)", *(fmt(median(col(t, "eval_ms")), " ms") for t in TOOLS)],
            ["peak memory, PSS of the process tree (max)", *(fmt(max(col(t, "peak_pss_mb"), default=None), " MB", 4) for t in TOOLS)],
            [f"candidates kept of {args.iterations} (valid)", *(" / ".join(f"{r['kept']} ({r['valid']})" for r in perf[t]) for t in TOOLS)],
            ["best combined_score per run", *(" / ".join(fmt(r["best"]) for r in perf[t]) for t in TOOLS)],
            ["LLM requests per run (+ Daedalus's analyst)", *(" / ".join(
                f"{r['llm_requests']}" + (f" + {r['analyst_requests']}" if r.get("analyst_requests") else "")
                for r in perf[t]) for t in TOOLS)],
            ["each candidate isolated", "no: a thread in a reused worker process",
             "yes: a fresh sandboxed process (namespaces, rlimits, read-only FS)"],
        ]  # fmt: skip
        out.append(markdown(["", *TOOLS.values()], rows))
    hostile = results.get("hostile")
    if isinstance(hostile, dict):
        rows = [[name, *(hostile[name].get(t, "-") for t in HOSTILE_TOOLS)] for name in hostile]
        out.append(markdown(["hostile program", *HOSTILE_TOOLS.values()], rows))
    resume = results.get("resume")
    if isinstance(resume, dict):
        keys = [("replies_before_kill", "LLM replies received before SIGKILL"),
                ("durable_after_kill", "programs kept on disk after the kill"),
                ("lost", "replies lost (their work redone after resuming)"),
                ("final_kept", f"programs at the end (of {args.iterations})"),
                ("llm_requests", "LLM requests in total"), ("finished", "resumed run finished")]
        rows = [[label, *(str(resume[t][k]) for t in TOOLS)] for k, label in keys]
        out.append(markdown(["SIGKILL mid-run, then resume", *TOOLS.values()], rows))
    return "\n\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=50, help="iterations per run (>= 50 for the record)")
    parser.add_argument("--repeats", type=int, default=2, help="perf rounds, ABBA order")
    parser.add_argument("--parallel", type=int, default=1,
                        help="evaluator.parallel_evaluations for both tools (OpenEvolve worker "
                             "processes; Daedalus evaluations in flight)")
    parser.add_argument("--phases", default="perf,hostile,resume")
    parser.add_argument("--llm-latency", type=float, default=0.0,
                        help="seconds the stub takes per reply, as a real model would (default 0: "
                             "at once, so the tools' own overhead is what gets measured)")
    parser.add_argument("--hostile", default=",".join(HOSTILE), help="which hostile programs")
    parser.add_argument("--work", type=Path, default=ROOT / "benchmarks" / "peers" / ".work")
    args = parser.parse_args()
    args.hostile = [h for h in args.hostile.split(",") if h]
    unknown = set(args.hostile) - set(HOSTILE)
    if unknown:
        parser.error(f"unknown hostile programs {sorted(unknown)}; choose from {', '.join(HOSTILE)}")
    version = openevolve_env.ensure()
    # OpenEvolve's pip install compiled its bytecode; Daedalus's editable install did not, and
    # this machine sets PYTHONDONTWRITEBYTECODE: compile it too (as `make run` does).
    subprocess.run([sys.executable, "-m", "compileall", "-q", *PACKAGES], cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL)
    work = args.work / time.strftime("%Y%m%d-%H%M%S")
    work.mkdir(parents=True)
    listener = Listener()
    conductor = Conductor(work, listener.port, latency_s=args.llm_latency)
    results: dict[str, object] = {"openevolve": version, "iterations": args.iterations,
                                  "parallel": args.parallel, "llm_latency_s": args.llm_latency,
                                  "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
                                  "date": time.strftime("%Y-%m-%d"), "load_start": os.getloadavg()}
    with StubLLM(conductor) as stub:
        bench = Bench(args, work, stub, conductor, listener)
        phases = args.phases.split(",")
        if "perf" in phases:
            results["perf"] = bench.perf()
        if "hostile" in phases:
            results["hostile"] = bench.hostile()
        if "resume" in phases:
            results["resume"] = bench.resume()
    results["load_end"] = os.getloadavg()
    (work / "results.json").write_text(json.dumps(results, indent=1, default=str))
    print(f"\nload average at start {results['load_start']}, at end {results['load_end']}; "
          f"raw results in {work / 'results.json'}\n")
    print(tables(results, args))


if __name__ == "__main__":
    main()
