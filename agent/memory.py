"""Memory: turn archive rows into what a proposer sees.

The parent's code and full evaluation feedback, top and diverse archive entries, recent
failures, lessons and the run's guidance. Text that came from candidates or models is passed
on as data; the profile module fences it when a prompt is rendered.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from daedalus.agent.profile import architecture_card
from daedalus.agent.security import redact
from daedalus.tools.proposer import ArchiveEntry, Brief, Mode

if TYPE_CHECKING:
    from daedalus.tasks.model import Task

_LOG_TAIL = 1500
_ARTIFACT_CHARS = 4000  # per artifact; the profile clips the whole feedback again
_METRIC_ORDER = ("ref_ms", "cand_ms", "speedup", "ref_iqr_rel", "cand_iqr_rel", "repeats", "threads")


def feedback(evaluation: Any | None) -> str:
    """A compact, complete account of one evaluation for the next proposal."""
    if evaluation is None:
        return "not evaluated yet"
    lines = [f"status: {evaluation.status} (stage: {evaluation.stage or '-'})"]
    if evaluation.error:
        lines.append(f"error: {evaluation.error}")
    metrics = evaluation.metrics or {}
    shown = [k for k in _METRIC_ORDER if k in metrics] + sorted(
        k for k in metrics if k not in _METRIC_ORDER
    )
    if shown:
        lines.append("metrics: " + ", ".join(f"{k}={_fmt(metrics[k])}" for k in shown[:16]))
    if set(evaluation.objectives or {}) - {"speedup"}:  # multi-objective tasks
        lines.append("objectives: " + ", ".join(f"{k}={_fmt(v)}" for k, v in sorted(evaluation.objectives.items())))
    curve = (evaluation.artifacts or {}).get("learning_curve")
    if curve:  # architecture tasks: how validation moved while the design trained
        lines.append("learning curve (step: validation): " + ", ".join(
            f"{int(step)}: {_fmt(float(value))}" for step, value in curve[-12:]))
    if evaluation.flags:
        lines.append("flags: " + ", ".join(evaluation.flags))
    evaluator_notes = (evaluation.artifacts or {}).get("evaluator")
    if isinstance(evaluator_notes, dict) and evaluator_notes:  # a program task's artifacts
        lines.append("evaluator artifacts:")
        lines += [f"  {k}: {_artifact(v)}" for k, v in evaluator_notes.items()]
    logs = (evaluation.logs or "").strip()
    if logs:
        lines.append("logs (tail):\n" + logs[-_LOG_TAIL:])
    return redact("\n".join(lines))


def _artifact(value: Any) -> str:
    text = str(value).strip()
    if len(text) > _ARTIFACT_CHARS:
        text = text[:_ARTIFACT_CHARS] + " [...]"
    return text.replace("\n", "\n    ")


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


GUIDANCE_KINDS = ("pin", "ban")


def guidance_lines(entries: Iterable[Any]) -> list[str]:
    """A run's stored guidance as brief strings: ``pin: TEXT``, ``ban: TEXT`` or plain notes.

    Entries are ``{"kind": "pin"|"ban", "text": ...}`` dicts (written by the chat agent);
    plain strings are kept as notes. The profile groups them so prompts state them clearly.
    """
    lines: list[str] = []
    for item in entries:
        if isinstance(item, dict):
            text = str(item.get("text") or "").strip()
            kind = str(item.get("kind") or "")
            if text:
                lines.append(f"{kind}: {text}" if kind in GUIDANCE_KINDS else text)
        elif str(item).strip():
            lines.append(str(item).strip())
    return lines


def entry(candidate: Any) -> ArchiveEntry:
    """An archive candidate (with its evaluation, if any) as a proposer-facing entry."""
    evaluation = candidate.evaluation
    return ArchiveEntry(
        candidate_id=candidate.id,
        code=candidate.code,
        status=evaluation.status if evaluation is not None else "pending",
        score=float(evaluation.score) if evaluation is not None else 0.0,
        speedup=evaluation.speedup if evaluation is not None else None,
        feedback=feedback(evaluation),
        origin=f"{candidate.proposer}/{candidate.mode}",
        description=candidate.description or "",
    )


def brief(
    *,
    task: Task,
    mode: str,
    parent: Any,
    inspirations: list[Any],
    failures: list[Any],
    lessons: list[str],
    guidance: list[str],
    seed: int,
) -> Brief:
    """Everything one proposal may use, as plain value types."""
    proposal_mode: Mode = "improve" if mode == "random" else mode  # type: ignore[assignment]
    program = task.kind == "program"
    return Brief(
        task_name=task.name,
        # A program task's "source" is its initial program, already the seed; the model
        # learns about the task from its instructions (and its evaluator, if it opted in).
        task_source=_program_context(task) if program else task.source,
        kind=task.kind,
        instructions=(str(task.settings.get("instructions") or task.description) if program
                      else architecture_card(task) if task.kind == "architecture" else ""),
        category=task.category,
        mode=proposal_mode,
        parent=entry(parent),
        inspirations=tuple(entry(c) for c in inspirations if c.id != parent.id),
        failures=tuple(entry(c) for c in failures if c.id != parent.id),
        lessons=tuple(lessons),
        guidance=tuple(guidance),
        seed=seed,
    )


def _program_context(task: Task) -> str:
    if not task.settings.get("show_evaluator"):
        return ""
    name = str(task.settings.get("evaluator_file", "evaluator.py"))
    return task.files.get(name, "")


def statistical_lessons(task_name: str, entries: list[Any]) -> list[str]:
    """The analyst without an LLM: which recorded approaches helped and which broke."""
    by_origin: dict[str, list[Any]] = {}
    for e in entries:
        key = (e.description or e.origin).split(";")[0].strip()[:80] or e.origin
        by_origin.setdefault(key, []).append(e)
    lessons: list[str] = []
    for key, items in sorted(by_origin.items(), key=lambda kv: -len(kv[1])):
        ok = [e for e in items if e.status == "ok"]
        failed = [e for e in items if e.status not in ("ok", "pending")]
        best = max((e.speedup or 0.0 for e in ok), default=0.0)
        if failed and not ok:
            statuses = sorted({e.status for e in failed})
            lessons.append(f"'{key}' failed {len(failed)}x on {task_name} ({', '.join(statuses)}); avoid or fix it.")
        elif ok and best > 1.0:
            lessons.append(f"'{key}' produced correct candidates up to {best:.2f}x on {task_name}.")
    return lessons[:3]
