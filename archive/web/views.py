"""What each page shows: contexts assembled from the archive for the templates.

Heavy run panels (progress, Pareto front, MAP-Elites grid, lineage) are computed once
per run *version* and cached, so a finished run costs its queries once per server
lifetime; a live run's version changes as results land, which refreshes them. Runs above
``INLINE_LIMIT`` candidates get their panels by separate requests, so the run page itself
answers quickly however large the run is.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from daedalus.archive import review_charts, review_tree, store
from daedalus.archive.models import Candidate, Run
from daedalus.archive.serialize import run_process_alive
from daedalus.archive.web import svg
from daedalus.archive.web.render import highlight, unified_diff

INLINE_LIMIT = 20_000
PANELS = ("progress", "pareto", "grid", "lineage")
LINEAGE_LEAVES = 5
CHILDREN_SHOWN = 50


class PanelCache:
    """A small thread-safe LRU of computed panels keyed by (run, panel, version)."""

    def __init__(self, size: int = 64) -> None:
        self._items: OrderedDict[tuple[str, str], tuple[str, Any]] = OrderedDict()
        self._lock = threading.Lock()
        self.size = size

    def get(self, key: tuple[str, str], version: str, compute: Callable[[], Any]) -> Any:
        with self._lock:
            hit = self._items.get(key)
            if hit is not None and hit[0] == version:
                self._items.move_to_end(key)
                return hit[1]
        value = compute()  # outside the lock: two racing requests may both compute; fine
        with self._lock:
            self._items[key] = (version, value)
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return value


def run_version(run: Run, counts: dict[str, int]) -> str:
    """Changes whenever anything a run page shows can have changed."""
    parts = (
        run.status,
        run.updated_at.isoformat(),
        run.candidate_count,
        run.iterations,
        run.best_score,
        sorted(counts.items()),
    )
    return hashlib.sha1(repr(parts).encode()).hexdigest()[:16]


def is_live(run: Run) -> bool:
    """A running run whose process is not known to be dead: worth refreshing."""
    return run.status == "running" and run_process_alive(run) is not False


def progress(run: Run) -> tuple[float | None, str]:
    """Fraction of the iteration budget spent, and a caption."""
    budget = run.config.get("iterations") if isinstance(run.config, dict) else None
    if isinstance(budget, int) and budget > 0:
        return min(1.0, run.iterations / budget), f"{run.iterations:,} / {budget:,} iterations"
    return None, f"{run.iterations:,} iterations"


def run_summary(session: Session, run: Run) -> dict[str, Any]:
    """The JSON a live page polls: the run, its counts, its version."""
    from daedalus.archive.serialize import run_to_dict

    counts = store.count_by_status(session, run_id=run.id)
    data = run_to_dict(run)
    data.update(counts=counts, version=run_version(run, counts), live=is_live(run))
    return data


def panel(session: Session, cache: PanelCache, run: Run, version: str, name: str) -> dict[str, Any]:
    """The context of one run panel (computed or from the cache)."""
    compute: dict[str, Callable[[], dict[str, Any]]] = {
        "progress": lambda: _progress_panel(session, run),
        "pareto": lambda: _pareto_panel(session, run),
        "grid": lambda: _grid_panel(session, run),
        "lineage": lambda: _lineage_panel(session, run),
    }
    if name not in compute:
        raise KeyError(name)
    data: dict[str, Any] = cache.get((run.id, name), version, compute[name])
    return {"name": name, "run": run, **data}


def _progress_panel(session: Session, run: Run) -> dict[str, Any]:
    hist = review_charts.history(session, run_id=run.id)
    return {
        "history": hist,
        "best": svg.best_chart(hist),
        "statuses": svg.status_chart(hist),
        "bucket": hist.bucket,
    }


def ancestor_ids(session: Session, candidate: Candidate) -> list[str]:
    """The candidate's ancestors, parent first (one recursive query, not one per level)."""
    parents = {n.id: n.parent_id for n in review_tree.ancestry(session, leaf_ids=[candidate.id])}
    chain: list[str] = []
    current = parents.get(candidate.id)
    while current is not None and current in parents and current not in chain:
        chain.append(current)
        current = parents[current]
    return chain


def _pareto_panel(session: Session, run: Run) -> dict[str, Any]:
    front = review_charts.pareto(session, run_id=run.id)
    if front is None:
        return {"front": None, "chart": None}
    return {"front": front, "chart": svg.pareto_chart(front)}


def _grid_panel(session: Session, run: Run) -> dict[str, Any]:
    elites = store.cell_elites(session, run_id=run.id)
    grid = review_charts.elites_grid(elites)
    return {"grid": grid, "chart": svg.grid_chart(grid) if grid else None, "elites": len(elites)}


def _lineage_panel(session: Session, run: Run) -> dict[str, Any]:
    leaves = [c.id for c in store.top_candidates(session, run_id=run.id, limit=LINEAGE_LEAVES)]
    nodes = review_tree.ancestry(session, leaf_ids=leaves)
    rows, cut = review_tree.tree_rows(review_tree.build_tree(nodes, keep=leaves))
    return {"rows": rows, "cut": cut, "leaves": set(leaves), "nodes": len(nodes)}


def run_page(session: Session, cache: PanelCache, run: Run) -> dict[str, Any]:
    counts = store.count_by_status(session, run_id=run.id)
    version = run_version(run, counts)
    inline = run.candidate_count <= INLINE_LIMIT
    panels = {
        name: panel(session, cache, run, version, name) if inline else None for name in PANELS
    }
    fraction, caption = progress(run)
    best = store.best_candidate(session, run_id=run.id)
    return {
        "run": run,
        "alive": run_process_alive(run),
        "live": is_live(run),
        "version": version,
        "counts": counts,
        "total": sum(counts.values()),
        "fraction": fraction,
        "caption": caption,
        "best": best,
        "top": store.top_candidates(session, run_id=run.id, limit=10),
        "recent": store.recent_candidates(session, run_id=run.id, limit=15),
        "lessons": store.lessons(session, task=run.task, run_id=run.id, limit=20),
        "panels": panels,
        "panel_names": PANELS,
    }


def candidate_page(
    session: Session, candidate: Candidate, against: Candidate | None
) -> dict[str, Any]:
    ev = candidate.evaluation
    parent = session.get(Candidate, candidate.parent_id) if candidate.parent_id else None
    base = against or parent
    diff = None
    if base is not None:
        text, added, removed = unified_diff(
            base.code,
            candidate.code,
            old_name=f"#{base.seq} {base.id}",
            new_name=f"#{candidate.seq} {candidate.id}",
        )
        diff = {
            "base": base,
            "html": highlight(text, "diff") if text else None,
            "added": added,
            "removed": removed,
        }
    ancestors = review_tree.ancestry(session, leaf_ids=[candidate.id])
    below, more = review_tree.descendants(
        session, candidate_id=candidate.id, depth=2, limit=CHILDREN_SHOWN
    )
    keep = {candidate.id} | ({candidate.parent_id} if candidate.parent_id else set())
    forest = review_tree.build_tree([*ancestors, *below], keep=keep, more_children=more)
    rows, cut = review_tree.tree_rows(forest, max_rows=200)
    n_children = session.scalar(
        select(func.count()).select_from(Candidate).where(Candidate.parent_id == candidate.id)
    )
    return {
        "c": candidate,
        "ev": ev,
        "run": session.get(Run, candidate.run_id),
        "parent": parent,
        "code_html": highlight(candidate.code),
        "diff": diff,
        "lineage_rows": rows,
        "tree_cut": cut,
        "n_children": n_children or 0,
        "metrics": sorted((ev.metrics if ev else {}).items()),
        "objectives": sorted((ev.objectives if ev else {}).items()),
        "fingerprint": sorted((ev.fingerprint if ev else {}).items()),
    }
