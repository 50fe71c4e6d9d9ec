"""Store functions for runs, and id-prefix resolution (re-exported by ``store``)."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable, Mapping
from functools import cache
from typing import Any, NamedTuple, TypeVar, cast

from sqlalchemy import CursorResult, Select, Table, Update, bindparam, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.orm.util import identity_key

from daedalus.archive.errors import AmbiguousIdError, NotFoundError
from daedalus.archive.models import RUN_STATUSES, Candidate, Run, new_run_id, utcnow

_Row = TypeVar("_Row", Run, Candidate)


def by_prefix(session: Session, model: type[_Row], ref: str, what: str) -> _Row:
    """The row with id ``ref``, else the one row whose id starts with ``ref``.

    Raises NotFoundError or AmbiguousIdError with a message that says what to do.
    """
    ref = ref.strip()
    listing = "runs" if model is Run else "list --run RUN"
    if not ref:
        raise NotFoundError(f"empty {what} id. Fix: copy one from `daedalus archive {listing}`.")
    row = session.get(model, ref)
    if row is not None:
        return row
    # Generated ids are lowercase hex; users may paste them in upper case.
    if ref.lower() != ref and (row := session.get(model, ref.lower())) is not None:
        return row
    ref = ref.lower()
    # The range [ref, ref with its last character bumped) is an index scan; startswith
    # keeps it exact under any collation.
    upper = ref[:-1] + chr(ord(ref[-1]) + 1)
    ids = session.scalars(
        select(model.id)
        .where(model.id >= ref, model.id < upper, model.id.startswith(ref, autoescape=True))
        .order_by(model.id)
        .limit(3)
    ).all()
    if not ids:
        raise NotFoundError(
            f"no {what} with id {ref!r} in this archive. Fix: check the id with "
            f"`daedalus archive {listing}` (and DAEDALUS_DATABASE_URL, if you set it)."
        )
    if len(ids) > 1:
        shown = ", ".join(ids[:2]) + (", ..." if len(ids) > 2 else "")
        raise AmbiguousIdError(
            f"{what} id prefix {ref!r} matches several {what}s ({shown}). "
            "Fix: type more characters of the id."
        )
    found = session.get(model, ids[0])
    assert found is not None
    return found


def create_run(
    session: Session,
    *,
    task: str,
    task_path: str = "",
    kind: str = "kernel",
    config: Mapping[str, Any] | None = None,
    proposer: str = "builtin",
    model: str = "builtin",
    guidance: Iterable[Any] = (),
    run_id: str | None = None,
    host: str | None = None,
    pid: int | None = None,
) -> Run:
    """Start a run (status ``running``) owned by ``host``/``pid``, by default the calling
    process, so review can tell a live run from one whose process died."""
    run = Run(
        id=run_id or new_run_id(),
        task=task,
        task_path=task_path,
        kind=kind,
        config=dict(config or {}),
        status="running",
        proposer=proposer,
        model=model,
        guidance=list(guidance),
        host=host or socket.gethostname(),
        pid=pid if pid is not None else os.getpid(),
    )
    session.add(run)
    session.flush()
    return run


def ensure_run(session: Session, *, run_id: str, task: str, **fields: Any) -> Run:
    """The run ``run_id``, created (as ``create_run`` would) if it does not exist yet.

    Safe when several processes race to create the same run: the loser's insert fails
    inside a savepoint (its transaction stays usable) and it returns the winner's row.
    """
    existing = session.get(Run, run_id)
    if existing is not None:
        return existing
    try:
        with session.begin_nested():
            return create_run(session, task=task, run_id=run_id, **fields)
    except IntegrityError:
        winner = session.get(Run, run_id, populate_existing=True)
        if winner is None:
            raise
        return winner


def get_run(session: Session, *, run_id: str) -> Run:
    """The run with this id or unique id prefix; NotFoundError / AmbiguousIdError otherwise."""
    return by_prefix(session, Run, run_id, "run")


def latest_run(
    session: Session, *, task: str | None = None, status: str | None = None
) -> Run | None:
    """The most recently created run (optionally of one task / status), or None."""
    runs = list_runs(session, task=task, status=status, limit=1)
    return runs[0] if runs else None


def list_runs(
    session: Session,
    *,
    task: str | None = None,
    status: str | None = None,
    limit: int | None = None,
) -> list[Run]:
    """Runs, newest first, optionally filtered by task key and status."""
    query = select(Run)
    if task is not None:
        query = query.where(Run.task == task)
    if status is not None:
        check_choice(status, RUN_STATUSES, "run status")
        query = query.where(Run.status == status)
    query = query.order_by(Run.created_at.desc(), Run.id)
    if limit is not None:
        query = query.limit(limit)
    return list(session.scalars(query))


def update_run_status(
    session: Session,
    *,
    run_id: str,
    status: str,
    host: str | None = None,
    pid: int | None = None,
) -> Run:
    """Set a run's status. ``running`` claims it for ``host``/``pid`` (by default this
    process: a resume); any other status stamps ``finished_at``."""
    check_choice(status, RUN_STATUSES, "run status")
    run = get_run(session, run_id=run_id)
    run.status = status
    if status == "running":
        run.finished_at = None
        run.host = host or socket.gethostname()
        run.pid = pid if pid is not None else os.getpid()
    else:
        run.finished_at = utcnow()
    session.flush()
    return run


def set_run_elapsed(session: Session, *, run_id: str, elapsed_s: float) -> None:
    """Record the wall time the run has been driven so far (summed over resumes by the
    caller), so a resumed run honours its time limit."""
    if update_run_row(session, _elapsed_statement(), run_id=run_id, elapsed_s=elapsed_s).rowcount != 1:
        raise NotFoundError(f"no run {run_id!r}. Fix: create the run first.")


def add_spend(
    session: Session,
    *,
    run_id: str,
    iterations: int = 0,
    prompt_tokens: int = 0,
    completion_tokens: int = 0,
    cost_usd: float = 0.0,
    device_seconds: float = 0.0,
) -> None:
    """Add to a run's budget counters with one atomic UPDATE (safe for concurrent workers)."""
    added = update_run_row(
        session, _spend_statement(), run_id=run_id, add_iterations=iterations,
        add_prompt_tokens=prompt_tokens, add_completion_tokens=completion_tokens,
        add_cost_usd=cost_usd, add_device_seconds=device_seconds,
    )  # fmt: skip
    if added.rowcount != 1:
        raise NotFoundError(f"no run {run_id!r} to charge. Fix: create the run first.")


def update_run_row(session: Session, statement: Update, **params: Any) -> CursorResult[Any]:
    """Run a prebuilt UPDATE of the run ``params["run_id"]`` (``now`` is passed for
    ``updated_at``) and return its result (rowcount, RETURNING rows).

    A Core statement built once, not an ORM one built per call (several times cheaper; the
    loop runs several an iteration): pending ORM changes are flushed first, as autoflush
    would, and a Run object this session holds is refreshed from the row, as the ORM's
    ``synchronize_session="fetch"`` would (the discovery loop holds none).
    """
    session.flush()
    result = session.execute(statement, {**params, "now": utcnow()})
    loaded = session.identity_map.get(identity_key(Run, params["run_id"]))
    if loaded is not None:
        session.refresh(loaded)
    return cast("CursorResult[Any]", result)


RUNS_TABLE = cast(Table, Run.__table__)  # for Core statements
_RUNS = RUNS_TABLE.c


class RunCounters(NamedTuple):
    """What the discovery loop reads of its run several times an iteration."""

    iterations: int
    cost_usd: float
    device_seconds: float
    best_score: float | None
    guidance: list[Any]


@cache
def _counters_statement() -> Select[Any]:
    return select(_RUNS.iterations, _RUNS.cost_usd, _RUNS.device_seconds, _RUNS.best_score,
                  _RUNS.guidance).where(_RUNS.id == bindparam("run_id"))


def run_counters(session: Session, *, run_id: str) -> RunCounters:
    """The budget counters, best score and guidance of the run with exactly this id: one
    prebuilt SELECT of five columns (``get_run`` resolves prefixes and loads the ORM row,
    several times the cost). NotFoundError when there is no such run."""
    row = session.execute(_counters_statement(), {"run_id": run_id}).one_or_none()
    if row is None:
        raise NotFoundError(f"no run {run_id!r}. Fix: copy one from `daedalus archive runs`.")
    return RunCounters(*row)


@cache
def _elapsed_statement() -> Update:
    return (update(RUNS_TABLE).where(_RUNS.id == bindparam("run_id"))
            .values(elapsed_s=bindparam("elapsed_s"), updated_at=bindparam("now")))


@cache
def _spend_statement() -> Update:
    counters = ("iterations", "prompt_tokens", "completion_tokens", "cost_usd", "device_seconds")
    return (update(RUNS_TABLE).where(_RUNS.id == bindparam("run_id"))
            .values({**{name: _RUNS[name] + bindparam(f"add_{name}") for name in counters},
                     "updated_at": bindparam("now")}))


def check_choice(value: str, allowed: tuple[str, ...], what: str) -> None:
    if value not in allowed:
        raise ValueError(f"unknown {what} {value!r}; expected one of {', '.join(allowed)}")
