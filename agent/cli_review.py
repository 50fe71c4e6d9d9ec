"""Review commands of `daedalus archive`: diff, lineage, export, import, hardware, and the
filter options the listings share (task, run, status, backend, hardware fingerprint).

Registered onto ``cli_archive.app`` by ``register``; the archive is imported inside each
command so `daedalus --help` stays fast. Helpers come from ``cli_archive`` at call time
(not import time), so either module can be imported first.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from daedalus.archive.models import Candidate, Run
    from daedalus.archive.review import CandidateFilter
    from daedalus.archive.review_tree import TreeNode

TaskOpt = Annotated[str | None, typer.Option("--task", help="Only this task (key).")]
BackendOpt = Annotated[
    str | None, typer.Option("--backend", help="Only evaluations on this backend (cpu, cuda, ...).")
]
FingerprintOpt = Annotated[
    str | None,
    typer.Option(
        "--fingerprint", help="Only this hardware: a fingerprint hash prefix (see `hardware`)."
    ),
]
SearchOpt = Annotated[
    str | None, typer.Option("--search", help="Text in the code or description, or an id prefix.")
]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def _base() -> ModuleType:
    from daedalus.agent import cli_archive

    return cli_archive


def make_filter(
    *,
    run_id: str | None = None,
    task: str | None = None,
    status: str | None = None,
    backend: str | None = None,
    fingerprint: str | None = None,
    search: str | None = None,
) -> CandidateFilter:
    from daedalus.archive.models import CANDIDATE_STATUSES
    from daedalus.archive.review import CandidateFilter

    if status is not None and status not in CANDIDATE_STATUSES:
        _base()._fail(
            f"unknown status {status!r}. Fix: use one of {', '.join(CANDIDATE_STATUSES)}."
        )
    return CandidateFilter(run_id, task, status, backend, fingerprint, search)


def filtered(
    session: Session,
    *,
    run_id: str | None,
    task: str | None,
    status: str | None,
    backend: str | None,
    fingerprint: str | None,
    search: str | None,
    limit: int,
    order: str,
) -> list[Candidate]:
    """Candidates of one run or across runs matching the filters, for `archive list`."""
    from daedalus.archive.review import filter_candidates

    flt = make_filter(
        run_id=run_id,
        task=task,
        status=status,
        backend=backend,
        fingerprint=fingerprint,
        search=search,
    )
    return filter_candidates(session, flt=flt, limit=limit, order=order)


def best_on(
    session: Session,
    *,
    run: str,
    task: str | None,
    backend: str | None,
    fp: str | None,
) -> Candidate:
    """The best correct candidate of the run (or the task) on this backend / hardware."""
    from daedalus.archive.review import best_matching

    base = _base()
    scope = None if task else base._resolve_run(session, run).id
    flt = make_filter(run_id=scope, task=task, backend=backend, fingerprint=fp)
    found = best_matching(session, flt=flt)
    if found is None:
        base._fail(
            "no correct candidate matches these filters. Fix: list the hardware with "
            "`daedalus archive hardware` and check --backend / --fingerprint."
        )
        raise typer.Exit(2)  # not reached (_fail exits); tells the type checker so
    return found


def runs_on(session: Session, **filters: Any) -> list[Run]:
    """Runs with at least one evaluation on this backend / hardware (`archive runs`)."""
    from daedalus.archive.review import filter_runs

    return filter_runs(session, **filters)


def diff_command(
    a: Annotated[str, typer.Argument(help="Candidate id or unique prefix.")],
    b: Annotated[
        str | None, typer.Argument(help="The other candidate (default: A's parent).")
    ] = None,
    context: Annotated[int, typer.Option(help="Unchanged lines around each change.")] = 3,
    as_json: JsonFlag = False,
) -> None:
    """Show a unified diff between two candidates (B -> A), or A against its parent."""
    import difflib

    from daedalus.archive import store

    base = _base()
    with base._session() as s:
        new = store.get_candidate(s, candidate_id=a)
        if b is None:
            if new.parent_id is None:
                base._fail(
                    f"candidate {new.id} has no parent to compare with. Fix: name the other "
                    "candidate: `daedalus archive diff A B`."
                )
            old = store.get_candidate(s, candidate_id=new.parent_id or "")
        else:
            old = store.get_candidate(s, candidate_id=b)
    lines = list(
        difflib.unified_diff(
            old.code.splitlines(keepends=True),
            new.code.splitlines(keepends=True),
            fromfile=f"#{old.seq} {old.id}",
            tofile=f"#{new.seq} {new.id}",
            n=max(0, context),
        )
    )
    text = "".join(x if x.endswith("\n") else x + "\n" for x in lines)
    added = sum(1 for x in lines if x.startswith("+") and not x.startswith("+++"))
    removed = sum(1 for x in lines if x.startswith("-") and not x.startswith("---"))
    if as_json:
        base._print_json(
            {"from": old.id, "to": new.id, "added": added, "removed": removed, "diff": text}
        )
        return
    out = base._out()
    if not text:
        out.print(Text(f"#{old.seq} {old.id} and #{new.seq} {new.id} have identical code."))
        return
    out.print(Text(f"+{added} -{removed} lines", style="bold"))
    out.print(Syntax(text, "diff", background_color="default"))


def _label(item: TreeNode, focus: str) -> Text:
    n = item.node
    text = Text()
    if item.hidden_above:
        text.append(f"⋯ {item.hidden_above} folded ⋯ ", style="dim italic")
    text.append(f"#{n.seq} {n.id[:12]}", style="bold reverse" if n.id == focus else "bold")
    text.append("  ")
    text.append_text(_base()._status(n.status))
    text.append(f"  score {_base()._num(n.score)}  {n.mode}  gen {n.generation}")
    if item.more_children:
        text.append(f"  (+{item.more_children} more children)", style="dim")
    return text


def _tree_json(item: TreeNode) -> dict[str, Any]:
    n = item.node
    return {
        "id": n.id,
        "seq": n.seq,
        "run_id": n.run_id,
        "status": n.status,
        "score": n.score,
        "mode": n.mode,
        "generation": n.generation,
        "folded_above": item.hidden_above,
        "more_children": item.more_children,
        "children": [_tree_json(c) for c in item.children],
    }


def lineage_command(
    candidate: Annotated[str, typer.Argument(help="Candidate id or unique prefix.")],
    depth: Annotated[int, typer.Option(help="Generations of descendants to show.")] = 3,
    limit: Annotated[int, typer.Option(help="At most this many descendants.")] = 200,
    fold: Annotated[
        bool, typer.Option("--fold/--no-fold", help="Fold chains without branches.")
    ] = True,
    as_json: JsonFlag = False,
) -> None:
    """Show a candidate's ancestors and descendants as a tree, with status and score."""
    from daedalus.archive import review_tree, store

    base = _base()
    with base._session() as s:
        c = store.get_candidate(s, candidate_id=candidate)
        up = review_tree.ancestry(s, leaf_ids=[c.id])
        down, more = review_tree.descendants(s, candidate_id=c.id, depth=max(0, depth), limit=limit)
    keep = {c.id} | ({c.parent_id} if c.parent_id else set())
    forest = review_tree.build_tree([*up, *down], keep=keep, fold=fold, more_children=more)
    if as_json:
        base._print_json(
            {
                "candidate": c.id,
                "ancestors": len(up) - 1,
                "descendants": len(down),
                "tree": [_tree_json(t) for t in forest],
            }
        )
        return
    out = base._out()
    for root in forest:
        tree = Tree(_label(root, c.id), guide_style="dim")
        stack = [(tree, root)]
        while stack:
            branch, item = stack.pop()
            for child in item.children:
                sub = branch.add(_label(child, c.id))
                stack.append((sub, child))
        out.print(tree)
    out.print(
        Text(
            f"{len(up) - 1} ancestors, {len(down)} descendants within {depth} generations",
            style="dim",
        )
    )


def export_command(
    run: Annotated[
        str | None,
        typer.Option("--run", "-r", help="Run id, prefix or 'latest' (default: all runs)."),
    ] = None,
    task: TaskOpt = None,
    status: Annotated[str | None, typer.Option(help="Only candidates with this status.")] = None,
    backend: BackendOpt = None,
    fingerprint: FingerprintOpt = None,
    fmt: Annotated[
        str, typer.Option("--format", help="jsonl (lossless, importable) or csv.")
    ] = "jsonl",
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here instead of standard output.")
    ] = None,
) -> None:
    """Export runs with their candidates, evaluations and lessons (JSONL) or a table (CSV)."""
    from daedalus.archive.export import export_csv, export_jsonl

    base = _base()
    if fmt not in ("jsonl", "csv"):
        base._fail(f"unknown format {fmt!r}. Fix: use --format jsonl or --format csv.")
    with base._session() as s:
        run_id = base._resolve_run(s, run).id if run else None
        flt = make_filter(
            run_id=run_id, task=task, status=status, backend=backend, fingerprint=fingerprint
        )
        if output is None:
            counts = (
                export_jsonl(s, sys.stdout, flt=flt)
                if fmt == "jsonl"
                else export_csv(s, sys.stdout, flt=flt)
            )
        else:
            # Write beside the target and rename, so a failed export never leaves half a file.
            output.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{output.name}.", dir=output.parent)
            try:
                with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
                    counts = (
                        export_jsonl(s, fh, flt=flt)
                        if fmt == "jsonl"
                        else export_csv(s, fh, flt=flt)
                    )
                os.replace(tmp, output)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
    what = (
        ", ".join(f"{n} {k}s" for k, n in counts.items())
        if isinstance(counts, dict)
        else f"{counts} rows"
    )
    Console(stderr=True, highlight=False).print(
        Text(f"exported {what or 'nothing'}" + (f" to {output}" if output else ""), style="dim")
    )


def import_command(
    file: Annotated[Path, typer.Argument(help="A JSONL export ('-' reads standard input).")],
    dry_run: Annotated[bool, typer.Option(help="Check and count, then roll back.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Merge a JSONL export into this archive (ids kept; re-import is a no-op).

    Conflicting rows are reported and skipped; the exit status is 1 when there are any.
    """
    from daedalus.archive.db import default_url, open_archive
    from daedalus.archive.errors import ArchiveError
    from daedalus.archive.importer import import_jsonl

    base = _base()
    if str(file) != "-" and not file.is_file():
        base._fail(
            f"no file {file}. Fix: pass the path of a file written by `daedalus archive export`."
        )
    try:
        with open_archive(default_url()) as archive, archive.session() as s:
            with sys.stdin if str(file) == "-" else file.open(encoding="utf-8") as fh:
                report = import_jsonl(s, fh, source=str(file))
            if dry_run:
                s.rollback()
    except ArchiveError as exc:
        base._fail(str(exc))
    if as_json:
        base._print_json(
            {
                "added": dict(report.added),
                "same": dict(report.same),
                "updated": dict(report.updated),
                "skipped": dict(report.skipped),
                "conflicts": [c.__dict__ for c in report.conflicts],
                "warnings": report.warnings,
                "dry_run": dry_run,
            }
        )
    else:
        out = base._out()
        table = Table(
            "records",
            "added",
            "unchanged",
            "updated",
            "skipped",
            title_justify="left",
            title=f"import of {file}" + (" (dry run: nothing kept)" if dry_run else ""),
        )
        for kind in ("run", "candidate", "evaluation", "lesson"):
            table.add_row(
                kind + "s",
                *(
                    str(c[kind])
                    for c in (report.added, report.same, report.updated, report.skipped)
                ),
            )
        out.print(table)
        for warning in report.warnings:
            out.print(Text(f"warning: {warning}", style="yellow"))
        for conflict in report.conflicts:
            out.print(
                Text(f"conflict: {conflict.kind} {conflict.id}: {conflict.reason}", style="red")
            )
    if report.conflicts:
        raise typer.Exit(1)


def hardware_command(backend: BackendOpt = None, as_json: JsonFlag = False) -> None:
    """List the hardware fingerprints evaluations ran on (for --fingerprint HASH)."""
    from daedalus.archive.review import hardware

    base = _base()
    with base._session() as s:
        rows = hardware(s, backend=backend)
    if as_json:
        base._print_json([h.__dict__ for h in rows])
        return
    table = Table(
        "fingerprint", "backend", "evaluations", "details", title="Hardware", title_justify="left"
    )
    for h in rows:
        details = ", ".join(f"{k}={v}" for k, v in sorted(h.fingerprint.items()))
        table.add_row(
            h.fingerprint_hash or "(none)", h.backend or "-", str(h.evaluations), Text(details)
        )
    base._out().print(table if rows else Text("No evaluations yet."))


def register(app: typer.Typer) -> None:
    app.command("diff")(diff_command)
    app.command("lineage")(lineage_command)
    app.command("export")(export_command)
    app.command("import")(import_command)
    app.command("hardware")(hardware_command)
