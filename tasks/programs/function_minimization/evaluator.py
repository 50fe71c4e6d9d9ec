"""Score a search program: how close it gets to the global minimum, reliably and quickly.

The program is imported in this process and ``run_search()`` is called once per trial with
a fixed seed, so every tool that runs this evaluator sees the same numbers for the same
program. Metrics are numbers; ``feedback`` is text that goes back to the proposer.
"""

import importlib.util
import math
import random
import time

import numpy as np

GLOBAL_X, GLOBAL_Y, GLOBAL_VALUE = -1.7041, 0.6775, -1.5187
TRIALS = 8


def _load(program_path):
    spec = importlib.util.spec_from_file_location("program", program_path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _trial(program, seed):
    random.seed(seed)
    np.random.seed(seed)
    start = time.perf_counter()
    x, y, value = (float(v) for v in program.run_search())
    elapsed = time.perf_counter() - start
    if not all(math.isfinite(v) for v in (x, y, value)):
        raise ValueError(f"non-finite result ({x}, {y}, {value})")
    true_value = float(np.sin(x) * np.cos(y) + np.sin(x * y) + (x**2 + y**2) / 20)
    if abs(true_value - value) > 1e-6 * max(1.0, abs(true_value)):
        raise ValueError(f"reported f={value:.6g} but f({x:.4g}, {y:.4g}) = {true_value:.6g}")
    return x, y, true_value, elapsed


def _score(program, trials):
    results, problems = [], []
    for seed in range(trials):
        try:
            results.append(_trial(program, seed))
        except Exception as exc:  # a failing trial is scored, not fatal
            problems.append(f"trial {seed}: {type(exc).__name__}: {exc}")
    if not results:
        return {
            "combined_score": 0.0,
            "reliability": 0.0,
            "error": "every trial failed: " + "; ".join(problems[:3]),
        }
    distances = [math.hypot(x - GLOBAL_X, y - GLOBAL_Y) for x, y, _, _ in results]
    gaps = [value - GLOBAL_VALUE for _, _, value, _ in results]
    seconds = sum(t for *_, t in results) / len(results)
    reliability = len(results) / trials
    value_score = 1.0 / (1.0 + max(0.0, float(np.mean(gaps))))
    distance_score = 1.0 / (1.0 + float(np.mean(distances)))
    speed_score = 1.0 / (1.0 + seconds / 0.05)
    combined = 0.45 * value_score + 0.35 * distance_score + 0.1 * speed_score + 0.1 * reliability
    best = int(np.argmin(gaps))
    x, y, value, _ = results[best]
    feedback = (
        f"{len(results)}/{trials} trials ran; best f={value:.5f} at ({x:.4f}, {y:.4f}), "
        f"mean distance to the global minimum {np.mean(distances):.4f}, "
        f"{seconds * 1000:.1f} ms per search"
    )
    if problems:
        feedback += "; problems: " + "; ".join(problems[:3])
    return {
        "combined_score": combined,
        "value_score": value_score,
        "distance_score": distance_score,
        "speed_score": speed_score,
        "reliability": reliability,
        "feedback": feedback,
    }


def evaluate(program_path):
    return _score(_load(program_path), TRIALS)


def evaluate_stage1(program_path):
    """One trial: does the program run and land anywhere sensible?"""
    return _score(_load(program_path), 1)


def evaluate_stage2(program_path):
    """The full evaluation (OpenEvolve's cascade only goes on to stages that exist)."""
    return evaluate(program_path)
