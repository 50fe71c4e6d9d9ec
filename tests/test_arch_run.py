"""`daedalus run` on every shipped architecture task (built-in proposer, tiny budgets), an LLM
run through the real litellm client against the scripted stub, `daedalus archive pareto`,
and the planner's Pareto-front parent selection."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import select

from daedalus.agent import planning
from daedalus.archive.db import open_archive
from daedalus.archive.models import Candidate, Run
from daedalus.tasks import load_task
from daedalus.tasks.model import Objective
from tests.stub_llm import StubLLM

SEQ = ["proxy_steps=10", "full_steps=20", "eval_every=10", "warmup_steps=5", "proxy_threshold=0"]
TINY: dict[str, list[str]] = {
    "mqar": [*SEQ, "train_size=512", "val_size=64", "test_size=64"],
    "selective_copy": [*SEQ, "train_size=512", "val_size=64", "test_size=64"],
    "char_lm": [*SEQ, "chars=20000"],
    "digits": ["proxy_steps=10", "full_steps=30", "eval_every=10", "warmup_steps=5",
               "proxy_threshold=0"],
}


def _daedalus(cwd: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "daedalus.agent.cli", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)  # fmt: skip


def _candidates(cwd: Path) -> tuple[Run, list[Candidate]]:
    archive = open_archive(f"sqlite:///{cwd / '.daedalus' / 'archive.db'}")
    with archive.session() as s:
        run = s.scalars(select(Run)).one()
        found = list(s.scalars(select(Candidate).order_by(Candidate.seq)))
        for c in found:
            _ = c.evaluation  # load before the session closes
        s.expunge_all()
    archive.close()
    return run, found


@pytest.mark.slow  # four short runs, ~10 s each on an idle machine
@pytest.mark.parametrize("task", sorted(TINY))
def test_builtin_run_on_each_shipped_task(tmp_path: Path, task: str) -> None:
    sets = [arg for item in TINY[task] for arg in ("--set", item)]
    out = _daedalus(tmp_path, "run", task, "--iterations", "2", "--workers", "2", "--json", *sets)
    assert out.returncode == 0, out.stderr[-3000:]
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert summary["status"] == "finished" and summary["iterations"] == 2
    run, candidates = _candidates(tmp_path)
    assert run.kind == "architecture"
    assert {o["name"] for o in run.config["objectives"]} >= {"params", "latency_ms"}
    seed = candidates[0]
    assert seed.mode == "seed" and seed.code == load_task(task).source
    assert seed.evaluation is not None and seed.status == "ok", seed.evaluation
    assert set(seed.evaluation.objectives) >= {"params", "latency_ms"}
    proposals = candidates[1:]
    assert len(proposals) == 2
    assert all(c.description.startswith("builtin/") for c in proposals if c.code)
    # Every proposal is a real design change of its parent, evaluated like the seed.
    assert all(c.code != seed.code for c in proposals if c.code)
    assert any(c.status == "ok" and c.evaluation is not None and c.evaluation.objectives
               for c in proposals), [(c.status, c.evaluation and c.evaluation.error) for c in proposals]


DESIGN = '''A small convolutional design: features from two 3x3 convolutions, then a linear head.

```python
import torch
import torch.nn as nn


class ModelNew(nn.Module):
    def __init__(self, num_classes: int, channels: int = {channels}):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, channels, kernel_size=3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(channels, channels, kernel_size=3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.head = nn.Linear(channels * 4, num_classes)

    def forward(self, x):
        return self.head(self.features(x).flatten(1))
```
'''


def test_llm_run_on_an_architecture_task_and_its_pareto_front(tmp_path: Path) -> None:
    replies = iter(range(100))

    def reply(request: dict[str, Any]) -> str:
        system = json.dumps(request.get("messages", [])[:1]).lower()
        if "analyst" in system and "lesson" in system:
            return "- Convolutions beat the perceptron on digits."
        return DESIGN.format(channels=4 + 2 * next(replies))

    sets = [arg for item in TINY["digits"] for arg in ("--set", item)]
    with StubLLM(reply) as stub:
        out = _daedalus(tmp_path, "run", "digits", "--proposer", "llm", "--model", "openai/stub",
                        "--api-base", stub.url, "--iterations", "3", "--workers", "2", "--json",
                        *sets)  # fmt: skip
        requests = list(stub.requests)
    assert out.returncode == 0, out.stderr[-3000:]
    prompt = next(m["content"] for m in requests[0]["messages"] if m["role"] == "user")
    for phrase in ("# Architecture task: digits", "ModelNew(num_classes=10)",
                   "Checks before training", "Objectives and score", "class ModelNew"):
        assert phrase in prompt, phrase
    system = next(m["content"] for m in requests[0]["messages"] if m["role"] == "system")
    assert "better neural-network architectures" in system
    _, candidates = _candidates(tmp_path)
    llm = [c for c in candidates if c.proposer == "llm"]
    assert len(llm) == 3 and all(c.status == "ok" for c in llm), [c.status for c in llm]
    assert all(c.evaluation is not None and c.evaluation.objectives["params"] > 0 for c in llm)

    pareto = _daedalus(tmp_path, "archive", "pareto", "--run", "latest", "--json")
    assert pareto.returncode == 0, pareto.stderr
    front = json.loads(pareto.stdout)
    assert front["objectives"] == {"accuracy": "max", "latency_ms": "min", "params": "min"}
    assert 1 <= len(front["front"]) <= front["evaluated"] == 4
    table = _daedalus(tmp_path, "archive", "pareto")
    assert table.returncode == 0 and "Pareto front of run" in table.stdout


def _entry(name: str, **objectives: float) -> Any:
    return SimpleNamespace(id=name, evaluation=SimpleNamespace(objectives=objectives))


def test_pareto_parents_come_from_the_front() -> None:
    objectives = (Objective("accuracy", "max"), Objective("params", "min"),
                  Objective("latency_ms", "min"))
    pool = [
        _entry("big-accurate", accuracy=0.99, params=9000, latency_ms=2.0),
        _entry("small", accuracy=0.80, params=1000, latency_ms=0.5),
        _entry("dominated", accuracy=0.79, params=1200, latency_ms=0.6),
        _entry("middle", accuracy=0.90, params=4000, latency_ms=1.0),
        _entry("worse-middle", accuracy=0.89, params=4000, latency_ms=1.0),
        _entry("no-objectives"),
    ]
    front = {c.id for c in planning.pareto_front(pool, objectives)}
    assert front == {"big-accurate", "small", "middle"}
    rng = random.Random(0)
    drawn = {getattr(planning.pareto_parent(rng, pool, objectives), "id", None) for _ in range(60)}
    assert drawn == front
    assert planning.pareto_parent(rng, pool, objectives[:1]) is None  # single objective
    assert planning.pareto_parent(rng, [pool[-1]], objectives) is None
