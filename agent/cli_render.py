"""Rich renderings shared by the archive's terminal commands: one candidate with its
evaluation, logs, hardware and lineage, and the small cell formatters the listings use."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from rich.console import Group
from rich.panel import Panel
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from daedalus.archive.models import Candidate

LOG_TAIL_LINES = 40
LINEAGE_SHOWN = 8


def code_panel(code: str) -> Panel:
    """A candidate's code, highlighted with line numbers."""
    return Panel(Syntax(code, "python", line_numbers=True), title="code")


def fmt_when(value: datetime | None, fmt: str = "%m-%d %H:%M") -> str:
    return value.astimezone().strftime(fmt) if value else "-"


def fmt_num(value: float | None, fmt: str = ".4g") -> str:
    return "-" if value is None else format(value, fmt)


def status_text(status: str) -> Text:
    style = {"ok": "green", "pending": "cyan", "duplicate": "dim"}.get(status, "red")
    return Text(status, style=style)


def render_candidate(c: Candidate, ancestors: list[Candidate], kids: list[Candidate]) -> Group:
    ev = c.evaluation
    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold")
    head.add_column()
    rows: list[tuple[str, str | Text]] = [
        ("candidate", c.id),
        ("run", f"{c.run_id}  (task {c.task}, seq {c.seq}, iteration {c.iteration})"),
        ("status", status_text(c.status)),
        ("score", fmt_num(c.score)),
        ("speedup", fmt_num(ev.speedup if ev else None, ".3f")),
        ("origin", f"{c.mode} by {c.proposer} ({c.model})"),
        ("parent", c.parent_id or "-"),
        ("island / generation", f"{c.island} / {c.generation}"),
        ("cell", c.cell or "-"),
        ("proposal cost", f"{c.prompt_tokens}+{c.completion_tokens} tokens, ${c.cost_usd:.4f}"),
        ("created", fmt_when(c.created_at, "%Y-%m-%d %H:%M:%S")),
    ]
    if c.inspirations:
        rows.append(("inspirations", ", ".join(str(i)[:12] for i in c.inspirations)))
    if c.duplicate_of:
        rows.append(("duplicate of", f"{c.duplicate_of} ({c.duplicate_kind})"))
    if c.description:
        rows.append(("description", Text(c.description)))
    if c.instruction:
        rows.append(("instruction", Text(c.instruction)))
    for key, value in rows:
        head.add_row(key, value)
    parts: list[Any] = [head, code_panel(c.code)]
    if ev is None:
        parts.append(Text("Not evaluated (pending or duplicate).", style="dim"))
    else:
        parts.append(_render_evaluation(ev))
    parts.append(_render_lineage(c, ancestors, kids))
    return Group(*parts)


def _render_evaluation(ev: Any) -> Group:
    info = Table.grid(padding=(0, 2))
    info.add_column(style="bold")
    info.add_column()
    info.add_row("stage", ev.stage or "-")
    info.add_row("duration", f"{ev.duration_s:.2f} s on {ev.backend or '?'} ({ev.sandbox or '?'})")
    if ev.flags:
        info.add_row("flags", ", ".join(map(str, ev.flags)))
    if ev.error:
        info.add_row("error", Text(ev.error, style="red"))
    parts: list[Any] = [Panel(info, title="evaluation")]
    values = {**ev.metrics, **{f"objective {k}": v for k, v in ev.objectives.items()}}
    if values:
        metrics = Table("metric", "value", title="metrics", title_justify="left")
        for key, value in sorted(values.items()):
            metrics.add_row(
                Text(str(key)), Text(fmt_num(value) if isinstance(value, float) else str(value))
            )
        parts.append(metrics)
    if ev.logs:
        lines = ev.logs.splitlines()
        tail = "\n".join(lines[-LOG_TAIL_LINES:])
        note = (
            f" (last {LOG_TAIL_LINES} of {len(lines)} lines)" if len(lines) > LOG_TAIL_LINES else ""
        )
        parts.append(Panel(Text(tail), title=f"feedback / logs{note}"))
    hw = Table("hardware", "value", title="fingerprint", title_justify="left")
    for key, value in sorted(ev.fingerprint.items()):
        hw.add_row(Text(str(key)), Text(str(value)))
    hw.add_row("hash", ev.fingerprint_hash, style="dim")
    parts.append(hw if ev.fingerprint else Text("No hardware fingerprint recorded.", style="dim"))
    return Group(*parts)


def _render_lineage(c: Candidate, ancestors: list[Candidate], kids: list[Candidate]) -> Panel:
    chain = list(reversed(ancestors[:LINEAGE_SHOWN]))
    text = Text()
    if len(ancestors) > LINEAGE_SHOWN:
        text.append(f"... {len(ancestors) - LINEAGE_SHOWN} older ancestors\n", style="dim")
    for a in [*chain, c]:
        text.append(f"{a.id[:12]}", style="bold" if a is c else "")
        text.append(f"  gen {a.generation}  {a.status}  score {fmt_num(a.score)}  {a.mode}\n")
    text.append(f"{len(kids)} children", style="dim")
    if kids:
        text.append(": " + ", ".join(k.id[:12] for k in kids[:10]), style="dim")
    return Panel(text, title=f"lineage ({len(ancestors)} ancestors)")
