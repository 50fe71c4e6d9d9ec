"""Review commands of `daedalus archive`: diff, lineage, export, import, hardware, and the
filter options the listings share (task, run, status, backend, hardware fingerprint).

Registered onto ``cli_archive.app`` by ``register``; the archive is imported inside each
command so `daedalus --help` stays fast. Helpers come from ``cli_archive`` at call time
(not import time), so either module can be imported first.
"""

from __future__ import annotations

from types import ModuleType
from typing import TYPE_CHECKING, Annotated, Any

import typer
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
    # Imported here: it imports this module's option types.
    from daedalus.agent.cli_transfer import export_command, import_command

    app.command("diff")(diff_command)
    app.command("lineage")(lineage_command)
    app.command("export")(export_command)
    app.command("import")(import_command)
    app.command("hardware")(hardware_command)
