"""Shared pieces of the `daedalus chat` tests: a small real archive and scripted replies.

The archive is made the way `daedalus run` makes one: ``launch.create_run`` stores the run
and its seed (the reference renamed to ``ModelNew``), the real process sandbox evaluates
the seed, and ``recording.record_result`` stores the result. Variants then come from the
chat itself, so every candidate the tests look at was really evaluated.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from daedalus.agent.config import RunConfig
from daedalus.archive import store
from daedalus.archive.db import Archive, open_archive

OVERRIDES = {"dim": 4096, "batch_size": 64}

# A correct in-place rewrite of swish_scale; {tag} makes each one a distinct program.
VARIANT = '''Doing the swish, scale and bias in place on one buffer saves two temporaries.

```python
import torch
import torch.nn as nn
import torch.nn.functional as F


class ModelNew(nn.Module):
    def __init__(self, scale_factor, bias_shape):
        super().__init__()
        self.scale_factor = scale_factor
        self.bias = nn.Parameter(torch.randn(bias_shape))

    def forward(self, x):
        y = F.silu(x)
        y.mul_(self.scale_factor{tag})
        return y.add_(self.bias)
```
'''

# Wrong on purpose: the bias is subtracted.
WRONG = '''Subtracting instead.

```python
import torch
import torch.nn as nn
import torch.nn.functional as F


class ModelNew(nn.Module):
    def __init__(self, scale_factor, bias_shape):
        super().__init__()
        self.scale_factor = scale_factor
        self.bias = nn.Parameter(torch.randn(bias_shape))

    def forward(self, x):
        return F.silu(x) * self.scale_factor - self.bias
```
'''

# Refused by the static policy before anything runs.
HOSTILE = '''```python
import os
import torch.nn as nn


class ModelNew(nn.Module):
    def forward(self, x):
        os.system("echo hi")
        return x
```
'''


def variant(n: int) -> str:
    return VARIANT.format(tag=" * 1.0" * n)


@dataclass
class World:
    root: Path
    archive: Archive
    run_id: str
    seed_id: str

    @property
    def home(self) -> Path:
        return self.root / ".daedalus"

    @property
    def url(self) -> str:
        return f"sqlite:///{self.home / 'archive.db'}"


def make_world(root: Path) -> World:
    """A finished run on small swish_scale whose seed was evaluated in the real sandbox."""
    from daedalus.agent.launch import create_run
    from daedalus.agent.recording import record_result
    from daedalus.sandbox import Evaluator
    from daedalus.sandbox.result import Limits
    from daedalus.tasks import load_task

    (root / ".daedalus").mkdir(parents=True, exist_ok=True)
    archive = open_archive(f"sqlite:///{root / '.daedalus' / 'archive.db'}")
    task = load_task("swish_scale", dict(OVERRIDES))
    config = RunConfig(task="swish_scale", overrides=dict(OVERRIDES), iterations=3)
    run_id = create_run(archive, task, config)
    with archive.session() as s:
        seed = store.pending_candidates(s, run_id=run_id)[0]
        seed_id, code = seed.id, seed.code
    with Evaluator(limits=Limits(timeout_s=config.timeout_s)) as evaluator:
        result = evaluator.evaluate(task, code)
    assert result.ok, result.error
    with archive.session() as s, s.begin():
        record_result(s, task=task, candidate_id=seed_id, result=result, backend="cpu", sandbox="process")
        store.update_run_status(s, run_id=run_id, status="finished")
    return World(root=root, archive=archive, run_id=run_id, seed_id=seed_id)


def tool_results(request: dict[str, Any]) -> list[str]:
    """The tool observations the model was sent in one request."""
    return [m["content"] for m in request["messages"] if m.get("role") == "tool"]


def is_chat_request(request: dict[str, Any]) -> bool:
    system = json.dumps(request.get("messages", [])[:1])
    return "chat agent of Daedalus" in system
