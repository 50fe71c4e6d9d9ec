"""Profile: who the model is asked to be, and what it is shown, rendered from ``prompts/``.

Roles: the researcher plans, the engineer writes code, the analyst distils lessons. The
proposal prompt carries the task, the parent and its full feedback, archive entries,
recent failures, lessons, the user's guidance and per-category knowledge with a one-shot
example. Everything that came out of the archive (code, feedback, descriptions, lessons)
was written or influenced by a model or a candidate, so it is fenced as data: wrapped in
``<<<ARCHIVE DATA: ...>>>`` / ``<<<END ARCHIVE DATA>>>`` markers that the role prompts
explain, with any marker-like text inside neutralised so it cannot close the fence early.
That is a mitigation that raises the bar for prompt injection, not a security boundary;
the sandbox is the boundary.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

from daedalus import prompts
from daedalus.tools.proposer import ArchiveEntry, Brief

if TYPE_CHECKING:
    from daedalus.tasks.model import Task

Role = Literal["engineer", "researcher", "analyst"]
EditFormat = Literal["full", "diff"]

CATEGORIES: tuple[str, ...] = (
    "activation", "normalization", "reduction", "matmul", "convolution", "pooling", "loss",
    "fusion", "attention", "indexing", "resize", "math", "optimizer",
)
_ALIASES = {
    "activations": "activation", "norm": "normalization", "normalisation": "normalization",
    "reductions": "reduction", "gemm": "matmul", "linear": "matmul", "matrix": "matmul",
    "conv": "convolution", "convolutions": "convolution", "pool": "pooling",
    "losses": "loss", "fused": "fusion", "elementwise": "fusion", "sdpa": "attention",
    "gather": "indexing", "scatter": "indexing", "upsample": "resize", "interpolate": "resize",
    "layout": "resize", "scan": "math", "optim": "optimizer", "optimiser": "optimizer",
}

# Bounds keep one runaway log or program from crowding everything else out of the context.
MAX_PARENT_CODE = 24_000
MAX_OTHER_CODE = 8_000
MAX_FEEDBACK = 4_000
MAX_LESSONS = 3_000

_OPEN_RE = re.compile(r"^<<<ARCHIVE DATA: [^\n]*>>>$", re.MULTILINE)
_CLOSE = "<<<END ARCHIVE DATA>>>"
# Anything a reader could take for our fence markers, however it is spaced or cased.
_MARKER_WORDS = re.compile(r"archive[\s_\-]*data", re.IGNORECASE)
_CHAT_TOKENS = re.compile(r"<\|")


def neutralise(text: str, *, code: bool = False) -> str:
    """Make ``text`` unable to end a fence (or a code block, for ``code=True``)."""
    text = _MARKER_WORDS.sub("archive-data(quoted)", text)
    text = _CHAT_TOKENS.sub("< |", text)
    if code:
        text = text.replace("```", "'''")
    return text


def is_fenced(text: str) -> bool:
    """True for exactly one fence produced by ``fence`` (so fencing twice is harmless)."""
    stripped = text.strip()
    return (
        len(_OPEN_RE.findall(stripped)) == 1
        and _OPEN_RE.match(stripped) is not None
        and stripped.endswith(_CLOSE)
        and stripped.count(_CLOSE) == 1
    )


def clip(text: str, limit: int) -> str:
    """Keep the head and the tail (errors are usually at the end of a log)."""
    if len(text) <= limit:
        return text
    head = limit * 2 // 3
    tail = limit - head
    note = prompts.render("clip_note", omitted=len(text) - head - tail).strip()
    return f"{text[:head]}\n{note}\n{text[-tail:]}"


def fence(text: str, *, label: str = "archive text", lang: str = "") -> str:
    """Wrap archive text as data. ``lang`` puts it in a code block inside the fence."""
    if is_fenced(text):
        return text.strip()
    body = neutralise(text.strip("\n"), code=bool(lang))
    return prompts.render("fence", label=neutralise(label).replace(">", ""), text=body,
                          lang=lang).strip()


def category_knowledge(category: str) -> str:
    """Advice and a one-shot example for the task's category (generic when unknown)."""
    key = category.strip().lower().replace("-", "_")
    key = _ALIASES.get(key, key)
    if key not in CATEGORIES:
        key = "generic"
    return prompts.render(f"knowledge_{key}")


def _number(value: float | None) -> str | None:
    return None if value is None else f"{value:.4g}"


def _entry(entry: ArchiveEntry, *, code_limit: int, label: str) -> dict[str, object]:
    notes = "\n".join(
        part for part in (
            f"description: {entry.description.strip()}" if entry.description.strip() else "",
            clip(entry.feedback.strip(), MAX_FEEDBACK),
        ) if part
    )
    return {
        "candidate_id": neutralise(entry.candidate_id),
        "status": neutralise(entry.status),
        "score": _number(entry.score),
        "speedup": _number(entry.speedup),
        "origin": neutralise(entry.origin),
        "has_code": bool(entry.code.strip()),
        "code": fence(clip(entry.code, code_limit), label=f"{label} code", lang="python"),
        "feedback": fence(notes, label=f"{label} feedback") if notes else "",
    }


def _lessons(lessons: Sequence[str]) -> str:
    items = [f"- {line.strip()}" for line in lessons if line.strip()]
    return fence(clip("\n".join(items), MAX_LESSONS), label="lessons") if items else ""


def split_guidance(guidance: Sequence[str]) -> dict[str, list[str]]:
    """The user's guidance by kind: ``pin: ...`` lines, ``ban: ...`` lines and other notes."""
    groups: dict[str, list[str]] = {"pinned": [], "banned": [], "guidance": []}
    for line in (g.strip() for g in guidance):
        kind, _, text = line.partition(":")
        if kind in ("pin", "ban") and text.strip():
            groups["pinned" if kind == "pin" else "banned"].append(text.strip())
        elif line:
            groups["guidance"].append(line)
    return groups


def build_messages(brief: Brief, *, role: Role = "engineer",
                   edit_format: EditFormat = "full") -> list[dict[str, str]]:
    """System and user messages for one proposal (``role`` engineer or researcher)."""
    if role == "analyst":
        raise ValueError("the analyst has its own prompt: use build_analyst_messages()")
    if edit_format not in ("full", "diff"):
        raise ValueError(f"unknown edit format {edit_format!r}: use 'full' or 'diff'")
    parent = _entry(brief.parent, code_limit=MAX_PARENT_CODE, label="parent")
    if brief.kind == "program":
        return _program_messages(brief, parent, role=role, edit_format=edit_format)
    if brief.kind == "architecture":
        return _architecture_messages(brief, parent, role=role, edit_format=edit_format)
    user = prompts.render(
        "proposal",
        role=role,
        edit_format=edit_format,
        task_name=brief.task_name,
        category=brief.category,
        task_source=brief.task_source.strip(),
        mode=brief.mode,
        parent=parent,
        inspirations=[
            _entry(e, code_limit=MAX_OTHER_CODE, label=f"candidate {e.candidate_id}")
            for e in brief.inspirations
        ],
        failures=[
            _entry(e, code_limit=MAX_OTHER_CODE, label=f"failure {e.candidate_id}")
            for e in brief.failures
        ],
        lessons=_lessons(brief.lessons),
        **split_guidance(brief.guidance),
        knowledge=category_knowledge(brief.category).strip(),
    )
    return [
        {"role": "system", "content": prompts.render(f"role_{role}")},
        {"role": "user", "content": user},
    ]


def _program_messages(brief: Brief, parent: dict[str, object], *, role: Role,
                      edit_format: EditFormat) -> list[dict[str, str]]:
    """A program task's prompt: the author's instructions stand in for the kernel
    knowledge, and the evaluator's metrics and artifacts are the feedback."""
    user = prompts.render(
        "program_proposal",
        role=role,
        edit_format=edit_format,
        task_name=brief.task_name,
        evaluator_source=brief.task_source.strip(),
        mode=brief.mode,
        parent=parent,
        inspirations=[_entry(e, code_limit=MAX_OTHER_CODE, label=f"program {e.candidate_id}")
                      for e in brief.inspirations],
        failures=[_entry(e, code_limit=MAX_OTHER_CODE, label=f"failure {e.candidate_id}")
                  for e in brief.failures],
        lessons=_lessons(brief.lessons),
        guidance=[g.strip() for g in brief.guidance if g.strip()],
    )  # fmt: skip
    system = prompts.render("role_program", instructions=brief.instructions.strip())
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def architecture_card(task: Task) -> str:
    """An architecture task described for a model: interface, data, training, checks, score."""
    settings = task.settings
    return prompts.render("arch_task", task_name=task.name, description=task.description,
                          seed=task.seed, **settings)


def _architecture_messages(brief: Brief, parent: dict[str, object], *, role: Role,
                           edit_format: EditFormat) -> list[dict[str, str]]:
    """An architecture task's prompt: the task card (``brief.instructions``, rendered by
    ``architecture_card``) replaces the kernel reference and the kernel knowledge."""
    user = prompts.render(
        "arch_proposal",
        role=role,
        edit_format=edit_format,
        card=brief.instructions.strip(),
        task_source=brief.task_source.strip(),
        mode=brief.mode,
        parent=parent,
        inspirations=[_entry(e, code_limit=MAX_OTHER_CODE, label=f"design {e.candidate_id}")
                      for e in brief.inspirations],
        failures=[_entry(e, code_limit=MAX_OTHER_CODE, label=f"failure {e.candidate_id}")
                  for e in brief.failures],
        lessons=_lessons(brief.lessons),
        **split_guidance(brief.guidance),
    )  # fmt: skip
    return [{"role": "system", "content": prompts.render("role_architect", role=role)},
            {"role": "user", "content": user}]


def build_analyst_messages(*, task_name: str, category: str, results: Sequence[ArchiveEntry],
                           lessons: Sequence[str]) -> list[dict[str, str]]:
    """Messages asking the analyst for one to three new lessons from recent results."""
    user = prompts.render(
        "analyst",
        task_name=task_name,
        category=category,
        results=[
            _entry(e, code_limit=MAX_OTHER_CODE // 2, label=f"candidate {e.candidate_id}")
            for e in results
        ],
        lessons=_lessons(lessons),
    )
    return [
        {"role": "system", "content": prompts.render("role_analyst")},
        {"role": "user", "content": user},
    ]


_BULLET = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s+(.*\S)\s*$")


def parse_lessons(reply: str, *, limit: int = 3, max_chars: int = 300) -> list[str]:
    """The analyst's lessons: bulleted lines, without "none", capped in number and length."""
    lessons: list[str] = []
    for line in reply.splitlines():
        match = _BULLET.match(line)
        if not match:
            continue
        text = match.group(1).strip().strip('"').strip()
        if not text or text.lower().rstrip(".") in ("none", "n/a", "no new lessons"):
            continue
        lessons.append(text[:max_chars])
        if len(lessons) == limit:
            break
    return lessons
