"""The chat agent's tools over the archive: look things up, explain failures, steer runs.

Each tool takes the JSON arguments the model sent and returns a JSON-ready dict. A tool
that cannot do what was asked raises ``ToolError`` (or lets an archive or task error
through); the toolbox in ``chat.py`` turns every error into the tool's observation, so a
bad id or a typo never ends the conversation. Tools that spend budget or start work live
in ``chat_actions.py``.
"""

from __future__ import annotations

import difflib
import os
import signal
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from daedalus.agent import memory
from daedalus.agent.security import redact
from daedalus.archive import store
from daedalus.archive.serialize import run_process_alive

if TYPE_CHECKING:
    from daedalus.archive.db import Archive
    from daedalus.archive.models import Candidate, Run

MAX_CODE = 12_000
MAX_LOG_TAIL = 2_500
MAX_DIFF_LINES = 300
MAX_GUIDANCE_CHARS = 500


class ToolError(Exception):
    """A tool cannot do what was asked; the message tells the model what to change."""


def resolve_run(s: Any, ref: str) -> Run:
    """A run by id, unique id prefix, or ``latest``."""
    ref = (ref or "").strip()
    if ref.lower() in ("latest", "last", ""):
        run = store.latest_run(s)
        if run is None:
            raise ToolError("the archive has no runs yet; start one with start_run")
        return run
    return store.get_run(s, run_id=ref)


def clip(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    head = limit * 2 // 3
    return f"{text[:head]}\n[... {len(text) - limit} characters omitted ...]\n{text[-(limit - head):]}"


def summary(c: Candidate) -> dict[str, Any]:
    """A candidate in one line's worth of fields."""
    ev = c.evaluation
    data: dict[str, Any] = {
        "id": c.id, "seq": c.seq, "status": c.status, "score": c.score,
        "speedup": ev.speedup if ev is not None else None,
        "mode": c.mode, "proposer": c.proposer, "parent": c.parent_id,
    }
    if c.instruction:
        data["instruction"] = c.instruction
    if c.description:
        data["description"] = c.description[:200]
    return data


def code_diff(before: str, after: str, *, before_label: str, after_label: str) -> tuple[str, int]:
    """A unified diff (clipped to ``MAX_DIFF_LINES``) and its total number of lines."""
    lines = list(difflib.unified_diff(before.splitlines(), after.splitlines(),
                                      fromfile=before_label, tofile=after_label, lineterm=""))
    shown = lines[:MAX_DIFF_LINES]
    if len(lines) > MAX_DIFF_LINES:
        shown.append(f"... {len(lines) - MAX_DIFF_LINES} more diff lines")
    return "\n".join(shown), len(lines)


def candidate_diff(a: Candidate, b: Candidate) -> tuple[str, int]:
    return code_diff(a.code, b.code, before_label=f"candidate {a.id}", after_label=f"candidate {b.id}")


def _evaluation(ev: Any) -> dict[str, Any] | None:
    if ev is None:
        return None
    return {
        "status": ev.status, "stage": ev.stage, "correct": ev.correct, "score": ev.score,
        "speedup": ev.speedup, "error": redact(ev.error) if ev.error else None,
        "metrics": ev.metrics, "objectives": ev.objectives, "flags": ev.flags,
        "backend": ev.backend, "sandbox": ev.sandbox, "duration_s": round(ev.duration_s, 3),
        "overrides": ev.overrides,
    }


class ArchiveTools:
    """The read and steer tools, over one archive."""

    def __init__(self, archive: Archive, *, home: Path) -> None:
        self.archive = archive
        self.home = home

    # ------------------------------------------------------------------ runs and tasks

    def list_runs(self, task: str | None = None, status: str | None = None,
                  limit: int = 10) -> dict[str, Any]:
        with self.archive.session(readonly=True) as s:
            runs = store.list_runs(s, task=task, status=status, limit=max(1, min(limit, 100)))
            items = [{
                "id": r.id, "task": r.task, "status": r.status, "alive": run_process_alive(r),
                "proposals": r.iterations, "budget": (r.config or {}).get("iterations"),
                "best_score": r.best_score, "best_candidate": r.best_candidate_id,
                "proposer": r.proposer, "model": r.model, "guidance": len(r.guidance or []),
                "created_at": r.created_at.isoformat(timespec="seconds"),
            } for r in runs]
        return {"runs": items, "count": len(items)}

    def list_tasks(self, category: str | None = None) -> dict[str, Any]:
        from daedalus.tasks import list_tasks

        tasks = [t for t in list_tasks() if category is None or t.category == category]
        if not tasks and category is not None:
            categories = sorted({t.category for t in list_tasks()})
            raise ToolError(f"no task has category {category!r}; categories: {', '.join(categories)}")
        return {"tasks": [{"name": t.name, "category": t.category, "kind": t.kind,
                           "description": t.description.strip().split("\n")[0][:160]}
                          for t in tasks]}

    def show_run(self, run: str) -> dict[str, Any]:
        with self.archive.session(readonly=True) as s:
            r = resolve_run(s, run)
            best = store.best_candidate(s, run_id=r.id)
            config = r.config or {}
            lessons = [lesson.text for lesson in store.lessons(s, task=r.task, run_id=r.id, limit=5)]
            data: dict[str, Any] = {
                "id": r.id, "task": r.task, "kind": r.kind, "status": r.status,
                "alive": run_process_alive(r), "host": r.host, "pid": r.pid,
                "settings": {k: config.get(k) for k in (
                    "iterations", "workers", "proposers", "models", "backend", "sandbox",
                    "overrides", "budget_usd", "time_limit_s") if k in config},
                "spent": {"proposals": r.iterations, "cost_usd": round(r.cost_usd, 6),
                          "prompt_tokens": r.prompt_tokens, "completion_tokens": r.completion_tokens,
                          "device_seconds": round(r.device_seconds, 1), "elapsed_s": round(r.elapsed_s, 1)},
                "by_status": store.count_by_status(s, run_id=r.id),
                "best": summary(best) if best is not None else None,
                "guidance": numbered_guidance(r.guidance or []),
                "lessons": lessons,
                "created_at": r.created_at.isoformat(timespec="seconds"),
                "finished_at": r.finished_at.isoformat(timespec="seconds") if r.finished_at else None,
            }
        log = self.home / "chat-runs" / f"{data['id']}.log"
        if log.is_file():
            data["log"] = str(log)
            data["log_tail"] = redact(log.read_text(errors="replace")[-800:])
        return data

    # ------------------------------------------------------------------ candidates

    def top_candidates(self, run: str, limit: int = 5, status: str = "ok") -> dict[str, Any]:
        limit = max(1, min(limit, 50))
        with self.archive.session(readonly=True) as s:
            r = resolve_run(s, run)
            if status == "ok":
                rows = store.top_candidates(s, run_id=r.id, limit=limit)
            else:
                rows = store.list_candidates(s, run_id=r.id, status=status, limit=limit)
            items = [summary(c) for c in rows]
            counts = store.count_by_status(s, run_id=r.id)
        return {"run": r.id, "task": r.task, "status": status, "candidates": items,
                "by_status": counts}

    def show_candidate(self, candidate: str, code: bool = True) -> dict[str, Any]:
        with self.archive.session(readonly=True) as s:
            c = store.get_candidate(s, candidate_id=candidate)
            ev = c.evaluation
            data: dict[str, Any] = {
                **summary(c), "run": c.run_id, "task": c.task, "model": c.model,
                "generation": c.generation, "island": c.island, "features": c.features,
                "cell": c.cell, "duplicate_of": c.duplicate_of,
                "cost_usd": c.cost_usd, "created_at": c.created_at.isoformat(timespec="seconds"),
                "evaluation": _evaluation(ev),
                "feedback": clip(memory.feedback(ev), MAX_LOG_TAIL + 1000),
                "hardware": (ev.fingerprint if ev is not None else {}),
                "lineage": {
                    "ancestors": [summary(a) for a in store.lineage(s, candidate_id=c.id)],
                    "children": [summary(k) for k in store.children(s, candidate_id=c.id)],
                },
            }
            if code:
                data["code"] = clip(c.code, MAX_CODE)
        return data

    def diff_candidates(self, a: str, b: str) -> dict[str, Any]:
        with self.archive.session(readonly=True) as s:
            first = store.get_candidate(s, candidate_id=a)
            second = store.get_candidate(s, candidate_id=b)
            diff, total = candidate_diff(first, second)
            metrics: dict[str, Any] = {}
            ma = first.evaluation.metrics if first.evaluation else {}
            mb = second.evaluation.metrics if second.evaluation else {}
            for key in sorted(set(ma) & set(mb)):
                metrics[key] = {"a": ma[key], "b": mb[key]}
            return {"a": summary(first), "b": summary(second), "same_code": total == 0,
                    "diff": diff or "(identical code)", "diff_lines": total, "metrics": metrics}

    def explain_failure(self, candidate: str) -> dict[str, Any]:
        with self.archive.session(readonly=True) as s:
            c = store.get_candidate(s, candidate_id=candidate)
            ev = c.evaluation
            data: dict[str, Any] = {"candidate": summary(c), "failed": c.status not in ("ok", "pending")}
            if c.status == "duplicate":
                data["why"] = (f"it is a {c.duplicate_kind or 'exact'} duplicate of candidate "
                               f"{c.duplicate_of}, so it was not evaluated again")
            elif ev is None:
                data["why"] = "it has no evaluation yet (pending)"
            else:
                data["evaluation"] = _evaluation(ev)
                data["log_tail"] = clip(redact((ev.logs or "").strip()), MAX_LOG_TAIL) or "(no log output)"
                same = [f for f in store.recent_failures(s, run_id=c.run_id, limit=50)
                        if f.evaluation is not None and f.evaluation.stage == ev.stage
                        and f.status == c.status]
                data["same_failure_in_run"] = {"count": len(same), "recent": [f.id for f in same[:5]]}
            if c.parent_id:
                parent = store.find_candidate(s, candidate_id=c.parent_id)
                if parent is not None:
                    diff, total = candidate_diff(parent, c)
                    data["parent"] = summary(parent)
                    data["change_from_parent"] = diff or "(identical code)"
                    data["change_lines"] = total
        return data

    # ------------------------------------------------------------------ guidance

    def pin_idea(self, run: str, text: str) -> dict[str, Any]:
        return self._guide(run, "pin", text)

    def ban_idea(self, run: str, text: str) -> dict[str, Any]:
        return self._guide(run, "ban", text)

    def _guide(self, ref: str, kind: str, text: str) -> dict[str, Any]:
        text = " ".join((text or "").split())
        if not text:
            raise ToolError(f"{kind}_idea needs the idea as non-empty text")
        if len(text) > MAX_GUIDANCE_CHARS:
            raise ToolError(f"the idea is {len(text)} characters; keep it under {MAX_GUIDANCE_CHARS}")
        with self.archive.session() as s, s.begin():
            r = resolve_run(s, ref)
            entries = [e for e in (r.guidance or [])
                       if not (isinstance(e, dict) and e.get("text", "").lower() == text.lower())]
            replaced = len(entries) != len(r.guidance or [])
            entries.append({"kind": kind, "text": text, "source": "chat",
                            "at": datetime.now(UTC).isoformat(timespec="seconds")})
            r.guidance = entries  # a new list, so SQLAlchemy sees the JSON change
            run_id, guidance = r.id, numbered_guidance(entries)
        verb = "pinned" if kind == "pin" else "banned"
        note = " (it replaced the same idea's earlier entry)" if replaced else ""
        return {"run": run_id, "ok": True, "note": f"{verb} for every later proposal of this run{note}",
                "guidance": guidance}

    def remove_guidance(self, run: str, number: int) -> dict[str, Any]:
        with self.archive.session() as s, s.begin():
            r = resolve_run(s, run)
            entries = list(r.guidance or [])
            if not 1 <= number <= len(entries):
                raise ToolError(f"run {r.id} has {len(entries)} guidance entries; "
                                f"give a number from 1 to {len(entries)} (see show_run)")
            removed = entries.pop(number - 1)
            r.guidance = entries
            return {"run": r.id, "removed": removed, "guidance": numbered_guidance(entries)}

    # ------------------------------------------------------------------ stop

    def stop_run(self, run: str) -> dict[str, Any]:
        with self.archive.session(readonly=True) as s:
            r = resolve_run(s, run)
            run_id, status, pid, host, alive = r.id, r.status, r.pid, r.host, run_process_alive(r)
        if status != "running":
            raise ToolError(f"run {run_id} is not running (status {status}); nothing to stop")
        if alive is None:
            raise ToolError(f"run {run_id} is driven from host {host}; stop it there")
        if not alive or pid is None or not _is_daedalus(pid):
            raise ToolError(f"run {run_id}'s process is gone (it was killed); resume_run continues it")
        os.kill(pid, signal.SIGINT)  # `daedalus run` stops cleanly on the first SIGINT
        return {"run": run_id, "stopping": True, "pid": pid,
                "note": "the run finishes its current step, then its status becomes 'stopped'"}


def numbered_guidance(entries: list[Any]) -> list[str]:
    return [f"{i}. {line}" for i, line in enumerate(memory.guidance_lines(entries), 1)]


def _is_daedalus(pid: int) -> bool:
    """Never signal a process that merely reuses a dead run's pid."""
    try:
        return b"daedalus" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
