"""
Evaluator in the style of OpenEvolve's function_minimization example: the program is
imported in-process, run with a thread-based timeout, and scored; failures come back as
zero scores with an "error" string; stage 1 is a quick single run.
"""

import concurrent.futures
import importlib.util
import traceback

import numpy as np
from openevolve.evaluation_result import EvaluationResult

GLOBAL_MIN_X = -1.704
GLOBAL_MIN_Y = 0.678
GLOBAL_MIN_VALUE = -1.519


def run_with_timeout(func, args=(), kwargs=None, timeout_seconds=5):
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as executor:
        future = executor.submit(func, *args, **(kwargs or {}))
        try:
            return future.result(timeout=timeout_seconds)
        except concurrent.futures.TimeoutError:
            raise TimeoutError(f"Function timed out after {timeout_seconds} seconds")


def _load(program_path):
    spec = importlib.util.spec_from_file_location("program", program_path)
    program = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(program)
    return program


def evaluate(program_path):
    try:
        program = _load(program_path)
        if not hasattr(program, "run_search"):
            return {"combined_score": 0.0, "error": "Missing run_search function"}
        values, distances = [], []
        for trial in range(5):
            np.random.seed(trial)
            x, y, value = run_with_timeout(program.run_search, timeout_seconds=5)
            x, y, value = float(x), float(y), float(value)
            if np.isnan(value) or np.isinf(value):
                continue
            values.append(value)
            distances.append(np.hypot(x - GLOBAL_MIN_X, y - GLOBAL_MIN_Y))
        if not values:
            return {"combined_score": 0.0, "error": "All trials failed"}
        value_score = 1.0 / (1.0 + abs(float(np.mean(values)) - GLOBAL_MIN_VALUE))
        distance_score = 1.0 / (1.0 + float(np.mean(distances)))
        reliability_score = len(values) / 5
        combined = 0.5 * value_score + 0.3 * distance_score + 0.2 * reliability_score
        return EvaluationResult(
            metrics={
                "value_score": value_score,
                "distance_score": distance_score,
                "reliability_score": reliability_score,
                "combined_score": combined,
            },
            artifacts={"stdout_summary": f"mean value {np.mean(values):.4f} over {len(values)} runs"},
        )
    except Exception as e:
        return {"combined_score": 0.0, "error": str(e), "traceback": traceback.format_exc()}


def evaluate_stage1(program_path):
    try:
        program = _load(program_path)
        x, y, value = run_with_timeout(program.run_search, timeout_seconds=5)
        distance = float(np.hypot(float(x) - GLOBAL_MIN_X, float(y) - GLOBAL_MIN_Y))
        return {"runs_successfully": 1.0, "distance_score": 1.0 / (1.0 + distance)}
    except Exception as e:
        return {"runs_successfully": 0.0, "error": str(e)}


def evaluate_stage2(program_path):
    return evaluate(program_path)
