"""Read what each tool left behind, and render the side-by-side tables.

OpenEvolve: its checkpoints (``checkpoints/checkpoint_N/programs/*.json`` and
``metadata.json``) and its log. Daedalus: its archive (``.daedalus/archive.db``). Plain
``json``/``sqlite3`` reads, so the parsers work on any copy of those files.
"""

from __future__ import annotations

import json
import math
import re
import sqlite3
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_CHECKPOINT = re.compile(r"checkpoint_(\d+)$")


@dataclass
class Program:
    """One evaluated program as a tool recorded it."""

    iteration: int
    status: str  # "ok" or why not (Daedalus statuses; for OpenEvolve: "error", "timeout")
    score: float | None
    detail: str = ""
    code: str = ""

    @property
    def hostile(self) -> bool:
        return "# hostile:" in self.code


@dataclass
class State:
    """What a tool kept: its programs (the initial one first) and its own best score."""

    programs: list[Program] = field(default_factory=list)
    best: float | None = None
    last_iteration: int = 0
    run_id: str = ""
    finished: bool = False
    eval_seconds: list[float] = field(default_factory=list)  # per evaluated program

    @property
    def kept(self) -> int:
        return max(0, len(self.programs) - 1)  # without the initial program

    @property
    def valid(self) -> int:
        return sum(1 for p in self.programs[1:] if p.status == "ok")


def _openevolve_status(metrics: dict[str, Any]) -> tuple[str, float | None, str]:
    score = metrics.get("combined_score")
    number = float(score) if isinstance(score, int | float) and not isinstance(score, bool) else None
    if metrics.get("timeout"):
        return "timeout", number, "timeout"
    if "error" in metrics:
        return "error", number, str(metrics["error"])[:120]
    if number is None:
        return "error", None, "no combined_score"
    return "ok", number, ""


def latest_checkpoint(out: Path) -> Path | None:
    found = [(int(m.group(1)), p) for p in (out / "checkpoints").glob("checkpoint_*")
             if (m := _CHECKPOINT.search(p.name)) and (p / "metadata.json").is_file()]  # fmt: skip
    return max(found)[1] if found else None


def openevolve_state(out: Path) -> State:
    """The programs of OpenEvolve's latest checkpoint under ``out`` (empty if none)."""
    state = State()
    checkpoint = latest_checkpoint(out)
    if checkpoint is None:
        return state
    meta = json.loads((checkpoint / "metadata.json").read_text())
    state.last_iteration = int(meta.get("last_iteration") or 0)
    programs = []
    for path in (checkpoint / "programs").glob("*.json"):
        data = json.loads(path.read_text())
        status, score, detail = _openevolve_status(data.get("metrics") or {})
        iteration = int(data.get("iteration_found") or 0)
        programs.append((iteration, data.get("parent_id") is not None,
                         Program(iteration, status, score, detail, str(data.get("code", "")))))
    state.programs = [p for *_, p in sorted(programs, key=lambda t: (t[1], t[0]))]
    best = meta.get("best_program_id")
    best_file = checkpoint / "programs" / f"{best}.json"
    if best and best_file.is_file():
        _, state.best, _ = _openevolve_status(json.loads(best_file.read_text()).get("metrics") or {})
    return state


def openevolve_log(log: Path) -> dict[str, int | bool]:
    """Counts from OpenEvolve's console log: completed iterations, errors, timeouts."""
    text = log.read_text(errors="replace") if log.is_file() else ""
    return {
        "completed": len(re.findall(r"Iteration \d+: Program \S+ \(parent", text)),
        "iteration_errors": len(re.findall(r"Iteration \d+ error:", text)),
        "timeouts": len(re.findall(r"timed out", text)),
        "finished": "Evolution completed" in text or "Evolution complete" in text,
        "eval_ms_median": round(1000 * (median([float(x) for x in re.findall(
            r"Evaluated program \S+ in ([\d.]+)s", text)]) or 0.0)),
        "broken_pool": "BrokenProcessPool" in text or "terminated abruptly" in text,
    }


def daedalus_state(workdir: Path, run_id: str | None = None) -> State:
    """The candidates of a Daedalus run (the latest one unless ``run_id``), in order."""
    state = State()
    db = workdir / ".daedalus" / "archive.db"
    if not db.is_file():
        return state
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        row = conn.execute(
            "SELECT id, status, iterations, best_score FROM runs "
            + ("WHERE id = ?" if run_id else "ORDER BY created_at DESC LIMIT 1"),
            (run_id,) if run_id else (),
        ).fetchone()
        if row is None:
            return state
        state.run_id, status, state.last_iteration, state.best = row[0], row[1], row[2], row[3]
        state.finished = status == "finished"
        state.eval_seconds = [d for (d,) in conn.execute(
            "SELECT e.duration_s FROM evaluations e JOIN candidates c ON e.candidate_id = c.id "
            "WHERE c.run_id = ?", (state.run_id,))]
        for seq, cstatus, score, error, code in conn.execute(
            "SELECT c.seq, c.status, c.score, e.error, c.code FROM candidates c LEFT JOIN "
            "evaluations e ON e.candidate_id = c.id WHERE c.run_id = ? ORDER BY c.seq",
            (state.run_id,)):
            state.programs.append(Program(seq - 1, cstatus, score, (error or "")[:120], code))
    return state


# ------------------------------------------------------------------------------ tables


def fmt(value: float | None, unit: str = "", digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return f"{value:.{digits}g}{unit}"


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def markdown(header: list[str], rows: list[list[str]]) -> str:
    cells = [header, *rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |"
             for r in cells]  # fmt: skip
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)
