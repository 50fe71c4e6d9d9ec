"""What the one stub LLM answers: the same programs, in the same order, to both tools.

Each run asks for a model named ``bench-<tool>-<scenario>-<n>``; the conductor keeps one
counter per model, so every run of every tool gets the same sequence of replies: an
optional hostile program first (the scenario), then ordinary search programs (random
search, simulated annealing, restarts with local refinement) with varied parameters. The
replies are full programs, so they do not depend on which parent a tool picked, and both
tools evaluate exactly the same code.
"""

from __future__ import annotations

import json
import random
import re
import textwrap
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
TASK_DIR = ROOT / "tasks" / "programs" / "function_minimization"
BLOCK = re.compile(r"(# EVOLVE-BLOCK-START\n).*?(# EVOLVE-BLOCK-END)", re.DOTALL)

# The benchmark's evaluator is the shipped one plus this wrapper: like evaluators that take
# a score the program reports, it lets a program put inf or NaN into combined_score, so the
# inf/NaN cases reach each tool. It reads the program's text; it never runs it again.
TRUSTING_EVALUATOR = '''

# --- benchmark only: a program may report its own score (REPORTED_SCORE = float("...")) ---
import re as _re

_honest_evaluate = evaluate


def evaluate(program_path):
    result = _honest_evaluate(program_path)
    with open(program_path) as handle:
        match = _re.search(r'REPORTED_SCORE = float\\("(-?inf|nan)"\\)', handle.read())
    if match and isinstance(result, dict):
        result["combined_score"] = float(match.group(1))
    return result
'''

_RANDOM = """\
def search_algorithm(iterations={iterations}, bounds=(-5.0, 5.0)):
    best_x = np.random.uniform(bounds[0], bounds[1])
    best_y = np.random.uniform(bounds[0], bounds[1])
    best_value = evaluate_function(best_x, best_y)
    for _ in range(iterations):
        x = np.random.uniform(bounds[0], bounds[1])
        y = np.random.uniform(bounds[0], bounds[1])
        value = evaluate_function(x, y)
        if value < best_value:
            best_x, best_y, best_value = x, y, value
    return best_x, best_y, best_value
"""
_ANNEAL = """\
def search_algorithm(iterations={iterations}, bounds=(-5.0, 5.0)):
    x = np.random.uniform(bounds[0], bounds[1])
    y = np.random.uniform(bounds[0], bounds[1])
    value = evaluate_function(x, y)
    best_x, best_y, best_value = x, y, value
    temperature = {temperature}
    for _ in range(iterations):
        nx = min(max(x + np.random.normal(0.0, {step}), bounds[0]), bounds[1])
        ny = min(max(y + np.random.normal(0.0, {step}), bounds[0]), bounds[1])
        new_value = evaluate_function(nx, ny)
        if new_value < value or np.random.random() < np.exp((value - new_value) / temperature):
            x, y, value = nx, ny, new_value
            if value < best_value:
                best_x, best_y, best_value = x, y, value
        temperature = max(temperature * {cooling}, 1e-4)
    return best_x, best_y, best_value
"""
_RESTARTS = """\
def search_algorithm(restarts={restarts}, steps={steps}, bounds=(-5.0, 5.0)):
    best_x, best_y, best_value = 0.0, 0.0, evaluate_function(0.0, 0.0)
    for _ in range(restarts):
        x = np.random.uniform(bounds[0], bounds[1])
        y = np.random.uniform(bounds[0], bounds[1])
        value = evaluate_function(x, y)
        step = {step}
        for _ in range(steps):
            nx, ny = x + np.random.normal(0.0, step), y + np.random.normal(0.0, step)
            new_value = evaluate_function(nx, ny)
            if new_value < value:
                x, y, value = nx, ny, new_value
            else:
                step *= {shrink}
        if value < best_value:
            best_x, best_y, best_value = x, y, value
    return best_x, best_y, best_value
"""


def _ordinary(count: int) -> list[tuple[str, str]]:
    """``count`` distinct (description, block) pairs, the same on every call."""
    rng = random.Random(20240601)
    out: list[tuple[str, str]] = []
    seen: set[str] = set()
    while len(out) < count:
        family = rng.choice(("random", "anneal", "anneal", "restarts"))
        params: dict[str, float]
        if family == "random":
            params = {"iterations": rng.choice(range(200, 3001, 100))}
            body = _RANDOM.format(**params)
        elif family == "anneal":
            params = {"iterations": rng.choice(range(300, 2001, 100)),
                      "temperature": rng.choice((0.5, 1.0, 2.0)),
                      "step": rng.choice((0.1, 0.3, 0.5, 1.0)),
                      "cooling": rng.choice((0.99, 0.995, 0.999))}  # fmt: skip
            body = _ANNEAL.format(**params)
        else:
            params = {"restarts": rng.choice((4, 8, 12, 16)),
                      "steps": rng.choice((40, 80, 120)),
                      "step": rng.choice((0.2, 0.5, 1.0)),
                      "shrink": rng.choice((0.9, 0.95, 0.98))}  # fmt: skip
            body = _RESTARTS.format(**params)
        if body not in seen:
            seen.add(body)
            out.append((f"{family} {params}", body))
    return out


def _bomb() -> str:
    # Stops at 4 GiB: never pushes the machine out of memory, whoever runs it.
    return textwrap.dedent("""\
        _BLOCKS = []


        def search_algorithm(iterations=400, bounds=(-5.0, 5.0)):
            if not _BLOCKS:
                while len(_BLOCKS) < 64:
                    _BLOCKS.append(b"\\x01" * (64 << 20))
            return _ordinary_search(iterations, bounds)
        """)


def hostile_blocks(escape: Path, port: int) -> dict[str, str]:
    """The hostile programs' EVOLVE-BLOCKs by scenario name (same code for every tool)."""
    normal = _RANDOM.format(iterations=400).replace("def search_algorithm", "def _ordinary_search")
    return {
        "infinite_loop": "def search_algorithm(iterations=400, bounds=(-5.0, 5.0)):\n    while True:\n        pass\n",
        "memory_bomb": normal + "\n\n" + _bomb(),
        "os_exit": normal + "\n\ndef search_algorithm(iterations=400, bounds=(-5.0, 5.0)):\n"
                   "    import os\n\n    os._exit(0)\n",
        "kill_parent": normal + "\n\ndef search_algorithm(iterations=400, bounds=(-5.0, 5.0)):\n"
                       "    import os\n    import signal\n\n    os.kill(os.getppid(), signal.SIGKILL)\n"
                       "    return _ordinary_search(iterations, bounds)\n",
        "write_outside": normal + "\n\ndef search_algorithm(iterations=400, bounds=(-5.0, 5.0)):\n"
                         f"    with open({str(escape)!r}, 'a') as handle:\n"
                         "        handle.write('escaped\\n')\n"
                         "    return _ordinary_search(iterations, bounds)\n",
        "loopback_socket": normal + "\n\ndef search_algorithm(iterations=400, bounds=(-5.0, 5.0)):\n"
                           "    import socket\n\n"
                           f"    socket.create_connection(('127.0.0.1', {port}), 2).sendall(b'hi')\n"
                           "    return _ordinary_search(iterations, bounds)\n",
        "json_dumps": "import json\n\njson.dumps = lambda *args, **kwargs: '{}'\n\n"
                      + normal.replace("_ordinary_search", "search_algorithm"),
        "inf_score": 'REPORTED_SCORE = float("inf")\n\n'
                     + normal.replace("_ordinary_search", "search_algorithm"),
        "nan_score": 'REPORTED_SCORE = float("nan")\n\n'
                     + normal.replace("_ordinary_search", "search_algorithm"),
    }  # fmt: skip


HOSTILE = ("infinite_loop", "memory_bomb", "os_exit", "kill_parent", "write_outside",
           "loopback_socket", "json_dumps", "inf_score", "nan_score")  # fmt: skip


def program(block: str) -> str:
    initial = (TASK_DIR / "initial_program.py").read_text()
    return BLOCK.sub(lambda m: m.group(1) + block + "\n\n" + m.group(2), initial, count=1)


def reply(description: str, block: str) -> str:
    return f"Tried {description}.\n\n```python\n{program(block)}```\n"


@dataclass
class Conductor:
    """The stub's script: per-model counters, request times, and an optional kill hook."""

    work: Path
    listener_port: int
    replies: list[tuple[str, str]] = field(default_factory=lambda: _ordinary(400))
    counts: dict[str, int] = field(default_factory=dict)
    analyst: dict[str, int] = field(default_factory=dict)
    times: dict[str, list[float]] = field(default_factory=dict)
    kill_at: dict[str, tuple[int, Callable[[], None]]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    latency_s: float = 0.0  # how long each reply takes, as a real model's would (0: at once)

    def __call__(self, request: dict[str, Any]) -> str:
        try:
            return self._answer(request)
        finally:
            if self.latency_s > 0:  # the stub serves each request in its own thread
                time.sleep(self.latency_s)

    def _answer(self, request: dict[str, Any]) -> str:
        system = json.dumps(request.get("messages", [])[:1]).lower()
        model = str(request.get("model", ""))
        if "analyst" in system and "lesson" in system:
            with self.lock:  # Daedalus's analyst: counted apart, not a proposal
                self.analyst[model] = self.analyst.get(model, 0) + 1
            return "- none"
        with self.lock:
            index = self.counts.get(model, 0)
            self.counts[model] = index + 1
            self.times.setdefault(model, []).append(time.monotonic())
            hook = self.kill_at.get(model)
        if hook is not None and index == hook[0]:
            hook[1]()  # the tool dies with this request in flight
            time.sleep(1.0)
        return self.answer(model, index)

    def answer(self, model: str, index: int) -> str:
        parts = model.split("-")  # bench-<tool>-<scenario>-<n>
        tool, scenario = (parts[1], parts[2]) if len(parts) >= 4 else ("any", "perf")
        if scenario in HOSTILE:
            if index == 0:
                escape = self.work / "escapes" / f"{tool}-{scenario}-{parts[3]}.txt"
                block = f"# hostile: {scenario}\n" + hostile_blocks(escape, self.listener_port)[scenario]
                return reply(f"a {scenario} program", block)
            index -= 1
        description, block = self.replies[index % len(self.replies)]
        return reply(description, block)
