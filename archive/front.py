"""Pareto-front arithmetic, free of the database: objective directions, oriented vectors,
dominance and the non-dominated mask.

``archive.pareto`` keeps a run's front in the archive with these; the migration that
introduced ``candidates.pareto`` backfills old archives with them too, which is why this
module imports neither SQLAlchemy nor the models.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

# Name fragments of objectives where smaller is better; everything else is maximised.
_MINIMISED = re.compile(
    r"(^|_)(latency|time|ms|us|s|seconds|params|parameters|memory|mem|bytes|loss|error|"
    r"err|size|flops|macs|cost|energy|perplexity|ppl)(_|$)"
)

Vector = tuple[float, ...]


def guess_direction(name: str) -> str:
    """``min`` for names like latency, params, memory, loss; else ``max``."""
    return "min" if _MINIMISED.search(name.lower()) else "max"


def declared(config: Any) -> dict[str, str]:
    """The objectives a run's config records (``config["objectives"] = [{"name",
    "direction"}]``), name to direction; a missing or unknown direction is guessed."""
    items = config.get("objectives") if isinstance(config, Mapping) else None
    out: dict[str, str] = {}
    for item in items if isinstance(items, list) else []:
        if isinstance(item, Mapping) and item.get("name") is not None:
            name = str(item["name"])
            direction = item.get("direction")
            out[name] = str(direction) if direction in ("max", "min") else guess_direction(name)
    return out


def run_objectives(config: Any) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
    """The objectives (sorted names, directions) a run's front is kept over: the ones its
    config declares, when there are at least two; None otherwise (no maintained front)."""
    found = declared(config)
    if len(found) < 2:
        return None
    names = tuple(sorted(found))
    return names, tuple(found[n] for n in names)


def oriented(objectives: Any, names: Sequence[str], directions: Sequence[str]) -> Vector | None:
    """The values of ``names`` with minimised ones negated, so larger is better on every
    axis; None when one is missing or not a finite number."""
    if not isinstance(objectives, Mapping):
        return None
    out: list[float] = []
    for name, direction in zip(names, directions, strict=True):
        value = objectives.get(name)
        if not isinstance(value, int | float) or not math.isfinite(value):
            return None
        out.append(float(value) if direction == "max" else -float(value))
    return tuple(out)


def dominates(a: Vector, b: Vector) -> bool:
    """``a`` is at least as good as ``b`` everywhere and better somewhere (oriented)."""
    return all(x >= y for x, y in zip(a, b, strict=True)) and a != b


def front_mask(points: Any) -> Any:
    """Boolean mask of the non-dominated rows of an (n, d) array (maximising every column);
    exact ties are all kept.

    Repeatedly takes the remaining row with the largest normalised sum, the
    lexicographically largest among equal sums (nothing left dominates it: a dominating
    row's sum is never smaller, even rounded, and it would win the tie; nothing removed
    does either, since dominance is transitive), and drops every row it dominates:
    O(front x n) vectorised, not O(n^2) in Python.
    """
    import numpy as np

    points = np.asarray(points, dtype=float)
    mask = np.zeros(len(points), dtype=bool)
    if not len(points):
        return mask
    span = points.max(axis=0) - points.min(axis=0)
    span[span == 0] = 1.0
    total = ((points - points.min(axis=0)) / span).sum(axis=1)
    idx = np.arange(len(points))
    while len(idx):
        sums = total[idx]
        tied = idx[sums == sums.max()]
        pick = tied[np.lexsort(points[tied].T[::-1])[-1]] if len(tied) > 1 else tied[0]
        p = points[pick]
        rows = points[idx]
        worse_or_equal = (rows <= p).all(axis=1)
        same = (rows == p).all(axis=1)
        mask[idx[same]] = True  # the pick itself, and exact ties with it
        idx = idx[~worse_or_equal]
    return mask


def rank(
    rows: Iterable[tuple[str, Any]], names: Sequence[str], directions: Sequence[str]
) -> dict[str, bool]:
    """For (candidate id, objectives) rows: True for the front, False for the dominated;
    rows without every objective as a finite number are left out (they are not ranked)."""
    ids: list[str] = []
    vectors: list[Vector] = []
    for cid, objectives in rows:
        vector = oriented(objectives, names, directions)
        if vector is not None:
            ids.append(cid)
            vectors.append(vector)
    mask = front_mask(vectors) if vectors else []
    return {cid: bool(on) for cid, on in zip(ids, mask, strict=True)}
