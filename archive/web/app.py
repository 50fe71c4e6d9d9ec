"""The review web app: ``create_app(archive, *, token=None)``.

Server-rendered pages over a read-only archive session per request; every asset is
served from this package (no CDN); charts are SVG drawn on the server. The app defines
GET routes only, and ``security.Guard`` refuses every other method, checks the token or
the loopback Host, and adds a strict Content-Security-Policy.
"""

from __future__ import annotations

import hashlib
from importlib import resources
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from sqlalchemy import select
from starlette.exceptions import HTTPException as StarletteHTTPException

from daedalus.archive import review, store
from daedalus.archive.db import Archive
from daedalus.archive.errors import AmbiguousIdError, ArchiveError, NotFoundError
from daedalus.archive.models import CANDIDATE_STATUSES, RUN_STATUSES, Candidate, Run
from daedalus.archive.serialize import candidate_to_dict, run_to_dict
from daedalus.archive.web import views
from daedalus.archive.web.render import highlight_css, render
from daedalus.archive.web.security import LOOPBACK_NAMES, Guard

PAGE_SIZE = 50
MIN_TOKEN_LENGTH = 16
_STATIC = {"style.css": "text/css", "live.js": "text/javascript"}


def check_token(token: str | None) -> None:
    """Tokens travel in a cookie and in URLs: long, and URL/cookie-safe characters only."""
    if token is None:
        return
    if len(token) < MIN_TOKEN_LENGTH or not all(ch.isalnum() or ch in "-_.~" for ch in token):
        raise ValueError(
            f"the access token must be at least {MIN_TOKEN_LENGTH} characters of letters, "
            "digits, '-', '_', '.' or '~'. Fix: use --token auto to generate one, or "
            "python -c 'import secrets; print(secrets.token_urlsafe(24))'."
        )


def _opt(value: str | None) -> str | None:
    value = (value or "").strip()
    return value or None


def _filter(request: Request, *, run_id: str | None = None) -> review.CandidateFilter:
    q = request.query_params
    status = _opt(q.get("status"))
    if status is not None and status not in CANDIDATE_STATUSES:
        raise ValueError(
            f"unknown status {status!r}. Fix: use one of {', '.join(CANDIDATE_STATUSES)}."
        )
    return review.CandidateFilter(
        run_id=run_id or _opt(q.get("run")),
        task=_opt(q.get("task")),
        status=status,
        backend=_opt(q.get("backend")),
        fingerprint=_opt(q.get("fingerprint")),
        search=_opt(q.get("q")),
    )


def _limit(request: Request, default: int = PAGE_SIZE, most: int = 500) -> int:
    raw = request.query_params.get("limit") or str(default)
    if not raw.isdigit() or not 1 <= int(raw) <= most:
        raise ValueError(f"limit must be a whole number from 1 to {most}. Fix: change ?limit=.")
    return int(raw)


def create_app(
    archive: Archive, *, token: str | None = None, allowed_hosts: set[str] | None = None
) -> Any:
    """The ASGI app. ``token`` makes every request need it; without one, only requests
    whose Host is a loopback name (or one of ``allowed_hosts``) are answered."""
    check_token(token)
    app = FastAPI(title="Daedalus review", docs_url=None, redoc_url=None, openapi_url=None)
    cache = views.PanelCache()
    static = {
        name: resources.files("daedalus.archive.web").joinpath("static", name).read_bytes()
        for name in _STATIC
    }
    static["highlight.css"] = highlight_css().encode()

    def page(template: str, http_status: int = 200, **context: Any) -> HTMLResponse:
        return HTMLResponse(render(template, **context), status_code=http_status)

    def failure(request: Request, status: int, message: str) -> Response:
        if request.url.path.startswith("/api/"):
            return JSONResponse({"error": message}, status_code=status)
        return page("error.html.j2", status, status=status, message=message, live=False)

    @app.exception_handler(NotFoundError)
    def _not_found(request: Request, exc: NotFoundError) -> Response:
        return failure(request, 404, str(exc))

    @app.exception_handler(AmbiguousIdError)
    def _ambiguous(request: Request, exc: AmbiguousIdError) -> Response:
        return failure(request, 400, str(exc))

    @app.exception_handler(ArchiveError)
    def _archive(request: Request, exc: ArchiveError) -> Response:
        return failure(request, 503, str(exc))

    @app.exception_handler(ValueError)
    def _bad_value(request: Request, exc: ValueError) -> Response:
        return failure(request, 400, str(exc))

    @app.exception_handler(StarletteHTTPException)
    def _http(request: Request, exc: StarletteHTTPException) -> Response:
        message = (
            "no such page. Fix: start from the runs overview at /."
            if exc.status_code == 404
            else str(exc.detail)
        )
        return failure(request, exc.status_code, message)

    @app.get("/static/{name}")
    def static_file(name: str) -> Response:
        if name not in static:
            raise StarletteHTTPException(404)
        kind = _STATIC.get(name, "text/css")
        return Response(static[name], media_type=kind, headers={"cache-control": "max-age=300"})

    def run_filters(request: Request) -> dict[str, str | None]:
        q = request.query_params
        status = _opt(q.get("status"))
        if status is not None and status not in RUN_STATUSES:
            raise ValueError(
                f"unknown run status {status!r}. Fix: use one of {', '.join(RUN_STATUSES)}."
            )
        return {
            "task": _opt(q.get("task")),
            "status": status,
            "backend": _opt(q.get("backend")),
            "fingerprint": _opt(q.get("fingerprint")),
            "search": _opt(q.get("q")),
        }

    @app.get("/", response_class=HTMLResponse)
    def runs_page(request: Request) -> Response:
        filters = run_filters(request)
        with archive.session(readonly=True) as s:
            runs = review.filter_runs(s, **filters, limit=_limit(request, 200, 2000))
            rows = [
                (r, views.progress(r), r.status == "running" and not views.is_live(r)) for r in runs
            ]
            tasks = sorted(s.scalars(select(Run.task).distinct()))
            return page(
                "runs.html.j2",
                rows=rows,
                filters=filters,
                tasks=tasks,
                statuses=RUN_STATUSES,
                live=any(views.is_live(r) for r in runs),
                live_url="/api/live",
            )

    @app.get("/runs/{run_id}", response_class=HTMLResponse)
    def run_page(run_id: str) -> Response:
        with archive.session(readonly=True) as s:
            run = store.get_run(s, run_id=run_id)
            ctx = views.run_page(s, cache, run)
            return page("run.html.j2", **ctx, live_url=f"/api/runs/{run.id}")

    @app.get("/runs/{run_id}/panels/{name}", response_class=HTMLResponse)
    def run_panel(run_id: str, name: str, request: Request) -> Response:
        if name not in views.PANELS:
            raise StarletteHTTPException(404)
        with archive.session(readonly=True) as s:
            run = store.get_run(s, run_id=run_id)
            counts = store.count_by_status(s, run_id=run.id)
            ctx = views.panel(s, cache, run, views.run_version(run, counts), name)
            full = request.query_params.get("full") == "1"
            return page("panel.html.j2", p=ctx, full=full, run=run, live=False)

    def listing(request: Request, flt: review.CandidateFilter, **extra: Any) -> dict[str, Any]:
        order = request.query_params.get("order") or "recent"
        if order not in ("recent", "score"):
            raise ValueError(f"unknown order {order!r}. Fix: use order=recent or order=score.")
        limit = _limit(request)
        with archive.session(readonly=True) as s:
            if order == "recent":
                cursor = _opt(request.query_params.get("cursor"))
                result = review.browse(s, flt=flt, limit=limit, cursor=cursor)
            else:
                items = review.filter_candidates(s, flt=flt, limit=limit, order="score")
                result = review.Page(items, None)
            run = store.get_run(s, run_id=flt.run_id) if flt.run_id else None
        return {
            "result": result,
            "flt": flt,
            "order": order,
            "run": run,
            "limit": limit,
            "statuses": CANDIDATE_STATUSES,
            "live": False,
            **extra,
        }

    @app.get("/runs/{run_id}/candidates", response_class=HTMLResponse)
    def run_candidates(run_id: str, request: Request) -> Response:
        with archive.session(readonly=True) as s:
            run_id = store.get_run(s, run_id=run_id).id
        return page("candidates.html.j2", **listing(request, _filter(request, run_id=run_id)))

    @app.get("/candidates", response_class=HTMLResponse)
    def candidates(request: Request) -> Response:
        return page("candidates.html.j2", **listing(request, _filter(request)))

    @app.get("/candidates/{candidate_id}", response_class=HTMLResponse)
    def candidate(candidate_id: str, request: Request) -> Response:
        with archive.session(readonly=True) as s:
            c = store.get_candidate(s, candidate_id=candidate_id)
            other = _opt(request.query_params.get("against"))
            against = store.get_candidate(s, candidate_id=other) if other else None
            ctx = views.candidate_page(s, c, against)
            live = c.status == "pending" and ctx["run"] is not None and views.is_live(ctx["run"])
            return page("candidate.html.j2", **ctx, live=live, live_url=f"/api/candidates/{c.id}")

    @app.get("/hardware", response_class=HTMLResponse)
    def hardware_page(request: Request) -> Response:
        with archive.session(readonly=True) as s:
            rows = review.hardware(s, backend=_opt(request.query_params.get("backend")))
        return page("hardware.html.j2", rows=rows, live=False)

    # ------------------------------------------------------------------------ JSON API

    @app.get("/api/runs")
    def api_runs(request: Request) -> Any:
        with archive.session(readonly=True) as s:
            runs = review.filter_runs(s, **run_filters(request), limit=_limit(request, 200, 2000))
            return [run_to_dict(r) for r in runs]

    @app.get("/api/live")
    def api_live() -> Any:
        """What the runs overview polls: changes when any running run changes."""
        with archive.session(readonly=True) as s:
            running = review.filter_runs(s, status="running", limit=None)
            parts = [(r.id, r.updated_at.isoformat(), r.candidate_count) for r in running]
            version = hashlib.sha1(repr(parts).encode()).hexdigest()[:16] if parts else "idle"
            return {"version": version, "live": any(views.is_live(r) for r in running)}

    @app.get("/api/runs/{run_id}")
    def api_run(run_id: str) -> Any:
        with archive.session(readonly=True) as s:
            return views.run_summary(s, store.get_run(s, run_id=run_id))

    @app.get("/api/runs/{run_id}/history")
    def api_history(run_id: str) -> Any:
        with archive.session(readonly=True) as s:
            run = store.get_run(s, run_id=run_id)
            counts = store.count_by_status(s, run_id=run.id)
            version = views.run_version(run, counts)
            hist = views.panel(s, cache, run, version, "progress")["history"]
            front = views.panel(s, cache, run, version, "pareto")["front"]
            return {
                "bucket": hist.bucket,
                "ends": hist.ends,
                "counts": hist.counts,
                "best_so_far": hist.best_so_far,
                "pareto": None
                if front is None
                else {
                    "objectives": dict(zip(front.names, front.directions, strict=True)),
                    "evaluated": front.evaluated,
                    "front": [
                        {"id": p.candidate_id, "seq": p.seq, "values": list(p.values)}
                        for p in front.front
                    ],
                },
            }

    @app.get("/api/runs/{run_id}/candidates")
    def api_run_candidates(run_id: str, request: Request) -> Any:
        with archive.session(readonly=True) as s:
            run_id = store.get_run(s, run_id=run_id).id
        return _json_page(listing(request, _filter(request, run_id=run_id)))

    @app.get("/api/candidates")
    def api_candidates(request: Request) -> Any:
        return _json_page(listing(request, _filter(request)))

    @app.get("/api/candidates/{candidate_id}")
    def api_candidate(candidate_id: str) -> Any:
        with archive.session(readonly=True) as s:
            c = store.get_candidate(s, candidate_id=candidate_id)
            data = candidate_to_dict(c, code=True, prompt=True, evaluation=True)
            data["lineage"] = views.ancestor_ids(s, c)
            data["children"] = [k.id for k in store.children(s, candidate_id=c.id)][:1000]
            run = s.get(Run, c.run_id)
            data["version"] = f"{c.status}:{c.score}"
            data["live"] = c.status == "pending" and run is not None and views.is_live(run)
            return data

    @app.get("/api/hardware")
    def api_hardware(request: Request) -> Any:
        with archive.session(readonly=True) as s:
            rows = review.hardware(s, backend=_opt(request.query_params.get("backend")))
            return [h.__dict__ for h in rows]

    hosts = set(LOOPBACK_NAMES) | {h.lower() for h in allowed_hosts or ()}
    return Guard(app, token=token, allowed_hosts=hosts)


def _json_page(ctx: dict[str, Any]) -> dict[str, Any]:
    result: review.Page = ctx["result"]
    items: list[Candidate] = result.items
    return {
        "items": [candidate_to_dict(c) for c in items],
        "cursor": result.cursor,
        "scanned": result.scanned,
        "partial": result.partial,
    }
