"""Chart geometry for server-drawn SVG: numbers in, coordinates and labels out.

No markup is built here. The templates turn these dataclasses into ``<svg>`` with
autoescaping on, so archive text (objective names, feature values) can never become
markup; colours and classes come only from this module's own tables.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from daedalus.archive.review_charts import Grid, History, Pareto

W, H = 720, 240
LEFT, RIGHT, TOP, BOTTOM = 64, 16, 14, 34
STATUS_ORDER = (
    "ok",
    "incorrect",
    "runtime_error",
    "compile_error",
    "timeout",
    "rejected",
    "duplicate",
    "pending",
)
# viridis-like stops for MAP-Elites scores (low -> high)
_STOPS = ((68, 1, 84), (59, 82, 139), (33, 145, 140), (94, 201, 98), (253, 231, 37))


@dataclass(frozen=True)
class Tick:
    pos: float
    label: str


@dataclass(frozen=True)
class Point:
    x: float
    y: float
    label: str
    href: str = ""


@dataclass(frozen=True)
class Rect:
    x: float
    y: float
    w: float
    h: float
    css: str
    label: str
    href: str = ""
    fill: str = ""


@dataclass
class Chart:
    width: int = W
    height: int = H
    x_ticks: list[Tick] = field(default_factory=list)
    y_ticks: list[Tick] = field(default_factory=list)
    x_label: str = ""
    y_label: str = ""
    line: str = ""  # polyline points "x,y x,y ..."
    points: list[Point] = field(default_factory=list)
    faint: list[Point] = field(default_factory=list)
    rects: list[Rect] = field(default_factory=list)
    legend: list[tuple[str, str]] = field(default_factory=list)  # (css class, label)

    @property
    def plot(self) -> tuple[int, int, int, int]:
        return LEFT, TOP, self.width - RIGHT, self.height - BOTTOM


def fmt(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    return f"{value:.4g}"


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round tick values covering [lo, hi]."""
    if hi <= lo:
        hi = lo + (abs(lo) or 1.0)
    raw = (hi - lo) / max(1, count - 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first, last = math.floor(lo / step), math.ceil(hi / step - 1e-9)
    return [round(k * step, 12) for k in range(first, last + 1)]


class _Scale:
    def __init__(self, lo: float, hi: float, a: float, b: float) -> None:
        self.lo, self.hi = (lo, hi) if hi > lo else (lo - 0.5, lo + 0.5)
        self.a, self.b = a, b

    def __call__(self, v: float) -> float:
        return round(self.a + (v - self.lo) / (self.hi - self.lo) * (self.b - self.a), 1)


def best_chart(hist: History, *, href: str = "/candidates/") -> Chart:
    """Best correct score reached so far, over the run's candidates (a step line), with a
    marker wherever a slice raised it."""
    chart = Chart(x_label="candidates (seq)", y_label="best score")
    known = [
        (end, best)
        for end, best in zip(hist.ends, hist.best_so_far, strict=True)
        if best is not None
    ]
    if not known:
        return chart
    x0, y0, x1, y1 = chart.plot
    ys = nice_ticks(min(b for _, b in known), max(b for _, b in known))
    sx = _Scale(0, hist.ends[-1], x0, x1)
    sy = _Scale(ys[0], ys[-1], y1, y0)
    chart.y_ticks = [Tick(sy(v), fmt(v)) for v in ys]
    chart.x_ticks = [
        Tick(sx(v), f"{int(v):,}") for v in nice_ticks(0, hist.ends[-1]) if v <= hist.ends[-1]
    ]
    coords: list[str] = []
    prev_y: float | None = None
    # A slice's best holds from its last candidate on, so the line steps up at the end of
    # the slice that improved it, where its marker sits.
    for i, (end, best) in enumerate(zip(hist.ends, hist.best_so_far, strict=True)):
        if best is None:
            continue
        y = sy(best)
        if prev_y is None:
            coords.append(f"{sx(end)},{y}")
        elif y != prev_y:
            coords.append(f"{sx(end)},{prev_y}")
            coords.append(f"{sx(end)},{y}")
        prev_y = y
        if hist.improved[i]:
            record = hist.record_ids[i] if i < len(hist.record_ids) else None
            link = f"{href}{record}" if record else ""
            where = f"candidate #{end:,}" if hist.bucket == 1 else f"candidates to #{end:,}"
            chart.points.append(Point(sx(end), y, f"best {fmt(best)} by {where}", link))
    if prev_y is not None:
        coords.append(f"{sx(hist.ends[-1])},{prev_y}")
    chart.line = " ".join(coords)
    return chart


def status_chart(hist: History) -> Chart:
    """Stacked bars: how each slice of candidates ended, by status."""
    chart = Chart(height=200, x_label="candidates (seq)", y_label="share of slice")
    if not hist.ends:
        return chart
    x0, y0, x1, y1 = chart.plot
    sx = _Scale(0, hist.ends[-1], x0, x1)
    chart.y_ticks = [Tick(round(y1 - f * (y1 - y0), 1), f"{int(f * 100)}%") for f in (0, 0.5, 1)]
    chart.x_ticks = [
        Tick(sx(v), f"{int(v):,}") for v in nice_ticks(0, hist.ends[-1]) if v <= hist.ends[-1]
    ]
    seen: set[str] = set()
    start = 0
    for end, counts in zip(hist.ends, hist.counts, strict=True):
        total = sum(counts.values()) or 1
        left, width = sx(start), max(0.5, sx(end) - sx(start) - 0.5)
        base = float(y1)
        ordered = [s for s in STATUS_ORDER if s in counts] + sorted(set(counts) - set(STATUS_ORDER))
        for status in ordered:
            h = counts[status] / total * (y1 - y0)
            base -= h
            seen.add(status)
            chart.rects.append(
                Rect(
                    left,
                    round(base, 1),
                    width,
                    round(h, 1),
                    f"st-{_css(status)}",
                    f"#{start + 1:,}-{end:,}: {counts[status]} {status}",
                )
            )
        start = end
    chart.legend = [(f"st-{_css(s)}", s) for s in STATUS_ORDER if s in seen]
    chart.legend += [(f"st-{_css(s)}", s) for s in sorted(seen - set(STATUS_ORDER))]
    return chart


def _css(status: str) -> str:
    return status if status in STATUS_ORDER else "other"


def pareto_chart(front: Pareto, x: int = 0, y: int = 1, *, href: str = "/candidates/") -> Chart:
    """Objective ``x`` against objective ``y``: the front highlighted, the rest faint."""
    x_way = {"max": "max, → better", "min": "min, ← better"}
    y_way = {"max": "max, ↑ better", "min": "min, ↓ better"}
    chart = Chart(
        height=300,
        x_label=f"{front.names[x]} ({x_way[front.directions[x]]})",
        y_label=f"{front.names[y]} ({y_way[front.directions[y]]})",
    )
    everything = front.front + front.others
    x0, y0, x1, y1 = chart.plot
    xs = nice_ticks(min(p.values[x] for p in everything), max(p.values[x] for p in everything))
    ys = nice_ticks(min(p.values[y] for p in everything), max(p.values[y] for p in everything))
    sx, sy = _Scale(xs[0], xs[-1], x0, x1), _Scale(ys[0], ys[-1], y1, y0)
    chart.x_ticks = [Tick(sx(v), fmt(v)) for v in xs]
    chart.y_ticks = [Tick(sy(v), fmt(v)) for v in ys]
    for p in front.others:
        chart.faint.append(Point(sx(p.values[x]), sy(p.values[y]), f"#{p.seq}"))
    for p in front.front:
        values = ", ".join(f"{n} {fmt(v)}" for n, v in zip(front.names, p.values, strict=True))
        chart.points.append(
            Point(sx(p.values[x]), sy(p.values[y]), f"#{p.seq}: {values}", href + p.candidate_id)
        )
    if len(front.names) == 2:
        chart.line = " ".join(f"{p.x},{p.y}" for p in sorted(chart.points, key=lambda p: p.x))
    return chart


def colour(t: float) -> str:
    """A hex colour on the viridis-like ramp for ``t`` in [0, 1]."""
    t = min(1.0, max(0.0, t)) * (len(_STOPS) - 1)
    i = min(int(t), len(_STOPS) - 2)
    f = t - i
    r, g, b = (round(a + (c - a) * f) for a, c in zip(_STOPS[i], _STOPS[i + 1], strict=True))
    return f"#{r:02x}{g:02x}{b:02x}"


def grid_chart(grid: Grid, *, href: str = "/candidates/") -> Chart:
    """One square per MAP-Elites cell, coloured by its elite's score; empty cells grey."""
    cols, rows = len(grid.x_values), len(grid.y_values)
    size = max(18, min(56, (W - LEFT - RIGHT) // max(1, cols)))
    chart = Chart(
        width=LEFT + RIGHT + cols * size,
        height=TOP + BOTTOM + rows * size,
        x_label=grid.x_axis,
        y_label=grid.y_axis or "",
    )
    scores = [c.score for c in grid.cells.values() if c.score is not None]
    lo, hi = (min(scores), max(scores)) if scores else (0.0, 1.0)
    span = (hi - lo) or 1.0
    chart.x_ticks = [Tick(LEFT + (i + 0.5) * size, v) for i, v in enumerate(grid.x_values)]
    chart.y_ticks = [Tick(TOP + (j + 0.5) * size, v) for j, v in enumerate(reversed(grid.y_values))]
    for j, yv in enumerate(reversed(grid.y_values)):
        for i, xv in enumerate(grid.x_values):
            elite = grid.cells.get((xv, yv))
            x, y = LEFT + i * size, TOP + j * size
            if elite is None:
                chart.rects.append(
                    Rect(x, y, size - 2, size - 2, "cell empty", f"{xv} / {yv}: empty")
                )
                continue
            t = ((elite.score or lo) - lo) / span
            chart.rects.append(
                Rect(
                    x,
                    y,
                    size - 2,
                    size - 2,
                    "cell",
                    f"{grid.x_axis}={xv}"
                    + (f", {grid.y_axis}={yv}" if grid.y_axis else "")
                    + f": #{elite.seq} score {fmt(elite.score)}",
                    href + elite.id,
                    colour(t),
                )
            )
    chart.legend = [("", f"score {fmt(lo)} (dark) to {fmt(hi)} (bright)")]
    return chart
