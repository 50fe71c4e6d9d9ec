"""`daedalus archive export` and `daedalus archive import`: move runs between archives.

Registered onto ``cli_archive.app`` by ``cli_review.register``; shared helpers come from
``cli_archive`` at call time, as in ``cli_review``.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from daedalus.agent.cli_review import (
    BackendOpt,
    FingerprintOpt,
    JsonFlag,
    TaskOpt,
    _base,
    make_filter,
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
