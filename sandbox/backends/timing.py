"""Device-independent timing statistics: interleaved A/B sampling until the medians are tight.

A backend supplies two zero-argument samplers (each returns seconds per call for one
sample); this module decides how many samples to take. Rounds alternate the order
(A B, B A, ...) so slow drift (thermal, other processes) hits both sides equally.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

_clock = time.perf_counter  # captured before any candidate can replace it

NOISY_IQR_REL = 0.10  # IQR/median above this is "noisy": measure again


@dataclass(frozen=True)
class Summary:
    median: float
    iqr_rel: float  # interquartile range over median
    ci_rel: float  # half-width of the ~95% confidence interval of the median, over median
    n: int


def _quantile(xs: list[float], q: float) -> float:
    pos = q * (len(xs) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def summarize(samples: list[float]) -> Summary:
    xs = sorted(samples)
    n = len(xs)
    if n == 0:
        return Summary(math.nan, math.inf, math.inf, 0)
    med = _quantile(xs, 0.5)
    iqr = _quantile(xs, 0.75) - _quantile(xs, 0.25)
    # Distribution-free CI of the median from order statistics (normal approximation
    # to the binomial): ranks n/2 -+ 0.98*sqrt(n).
    half = 0.98 * math.sqrt(n)
    lo = max(0, math.floor(n / 2 - half) - 1)
    hi = min(n - 1, math.ceil(n / 2 + half))
    ci = (xs[hi] - xs[lo]) / 2 if n >= 5 else math.inf
    scale = med if med > 0 else math.inf
    return Summary(med, iqr / scale, ci / scale, n)


def calls_per_sample(seconds_per_call: float, min_sample_s: float = 0.002, cap: int = 1000) -> int:
    """Batch fast calls so one sample lasts at least ``min_sample_s`` (timer resolution)."""
    if seconds_per_call <= 0:
        return cap
    return max(1, min(cap, math.ceil(min_sample_s / seconds_per_call)))


def interleave(
    sample_a: Callable[[], float],
    sample_b: Callable[[], float],
    *,
    budget_s: float,
    min_rounds: int = 10,
    max_rounds: int = 10_000,
    target_ci_rel: float = 0.01,
) -> tuple[list[float], list[float]]:
    """Sample A and B alternately until both medians are within ``target_ci_rel`` (95%,
    checked after ``min_rounds``), the budget is spent, or ``max_rounds`` is reached."""
    a: list[float] = []
    b: list[float] = []
    start = _clock()
    rounds = 0
    while rounds < max_rounds:
        if rounds % 2 == 0:
            a.append(sample_a())
            b.append(sample_b())
        else:
            b.append(sample_b())
            a.append(sample_a())
        rounds += 1
        if _clock() - start > budget_s and rounds >= 3:
            break  # a slow pair still gets a (wide) estimate instead of a timeout
        if rounds >= min_rounds and rounds % 5 == 0:
            sa, sb = summarize(a), summarize(b)
            if sa.ci_rel <= target_ci_rel and sb.ci_rel <= target_ci_rel:
                break
    return a, b
