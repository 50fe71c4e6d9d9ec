"""The timing statistics and the interleaving loop, with deterministic samplers."""

from __future__ import annotations

import math
import random

import pytest

from daedalus.sandbox.backends.timing import calls_per_sample, interleave, summarize


def test_summary_of_known_samples() -> None:
    s = summarize([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0])
    assert s.median == 5.0 and s.n == 9
    assert s.iqr_rel == pytest.approx((7.0 - 3.0) / 5.0)
    assert 0 < s.ci_rel < 1


def test_ci_narrows_with_more_samples() -> None:
    rng = random.Random(0)
    few = summarize([1 + rng.gauss(0, 0.05) for _ in range(20)])
    many = summarize([1 + rng.gauss(0, 0.05) for _ in range(2000)])
    assert many.ci_rel < few.ci_rel / 4


def test_degenerate_inputs() -> None:
    assert summarize([]).n == 0 and math.isinf(summarize([]).ci_rel)
    assert math.isinf(summarize([1.0, 1.0]).ci_rel)  # too few for a CI


def test_calls_per_sample_batches_fast_calls() -> None:
    assert calls_per_sample(0.010) == 1
    assert calls_per_sample(0.0001) == 20
    assert calls_per_sample(0.0) == 1000 and calls_per_sample(1e-9) == 1000


def test_interleave_alternates_and_stops_when_tight() -> None:
    order: list[str] = []

    def a() -> float:
        order.append("a")
        return 1.0

    def b() -> float:
        order.append("b")
        return 2.0

    xs, ys = interleave(a, b, budget_s=60, min_rounds=10)
    assert len(xs) == len(ys) == 10  # constant samples: the CI is zero after the minimum
    assert order[:4] == ["a", "b", "b", "a"]


def test_interleave_keeps_sampling_noisy_pairs_until_the_budget() -> None:
    rng = random.Random(1)
    xs, _ = interleave(lambda: 1 + rng.random(), lambda: 1 + rng.random(), budget_s=0.05,
                       min_rounds=10, max_rounds=100_000, target_ci_rel=1e-6)
    assert len(xs) > 10


def test_interleave_gives_slow_pairs_three_rounds() -> None:
    import time

    def slow() -> float:
        time.sleep(0.02)
        return 0.02

    xs, ys = interleave(slow, slow, budget_s=0.0, min_rounds=10)
    assert len(xs) == len(ys) == 3
