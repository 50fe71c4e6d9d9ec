"""The LLM path end to end: `daedalus run --proposer llm` through the real litellm client
against the scripted OpenAI-compatible stub on 127.0.0.1, with provider faults mixed in."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from sqlalchemy import select

from daedalus.archive.db import open_archive
from daedalus.archive.models import Candidate, Run
from tests.stub_llm import Reply, StubLLM

GOOD = '''Fusing the chain with in-place ops on one buffer:

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
        y.mul_(self.scale_factor{variant})
        return y.add_(self.bias)
```
'''


def _script() -> Any:
    counter = itertools.count()
    faults: dict[int, Reply | str] = {
        1: Reply.rate_limited(0.05), 3: Reply.malformed(), 5: "I would rather not write code today."
    }

    def reply(request: dict[str, Any]) -> Reply | str:
        system = json.dumps(request.get("messages", [])[:1]).lower()
        if "analyst" in system and "lesson" in system:
            return "- In-place elementwise chains on one buffer beat the unfused reference."
        n = next(counter)
        if n in faults:
            return faults[n]
        return GOOD.format(variant=" * 1.0" * (n % 4))

    return reply


def test_llm_run_end_to_end_through_litellm(tmp_path: Path) -> None:
    with StubLLM(_script()) as stub:
        out = subprocess.run(
            [sys.executable, "-m", "daedalus.agent.cli", "run", "swish_scale", "--set", "dim=4096",
             "--set", "batch_size=64", "--proposer", "llm", "--model", "openai/stub",
             "--api-base", stub.url, "--iterations", "5", "--workers", "2", "--json"],
            cwd=tmp_path, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr
        requests = list(stub.requests)
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert summary["status"] == "finished" and summary["iterations"] == 5
    assert summary["prompt_tokens"] > 0 and summary["completion_tokens"] > 0
    archive = open_archive(f"sqlite:///{tmp_path / '.daedalus' / 'archive.db'}")
    with archive.session() as s:
        run = s.scalars(select(Run)).one()
        llm = s.scalars(select(Candidate).where(Candidate.proposer == "llm")).all()
        assert len(llm) == 5
        assert sum(c.prompt_tokens for c in llm) == run.prompt_tokens
        statuses = {c.status for c in llm}
        assert "ok" in statuses, statuses
        # The malformed body and the code-less reply are recorded, not fatal.
        assert any(c.status == "rejected" and c.evaluation and "code" in (c.evaluation.error or "").lower()
                   for c in llm) or len(requests) > 5
        ok = [c for c in llm if c.status == "ok"]
        assert all(c.evaluation is not None and c.evaluation.speedup for c in ok)
        assert all("ModelNew" in c.prompt or c.prompt == "" for c in llm)
    # The prompt carried the parent's code and its evaluation feedback.
    first_user = next(m["content"] for m in requests[0]["messages"] if m["role"] == "user")
    assert "class ModelNew" in first_user and "status" in first_user.lower()


def test_functional_duplicate_in_a_run_is_linked_not_rescored(tmp_path: Path) -> None:
    # Two different programs with the same outputs: the second is a functional duplicate of
    # the first (one worker, no lookahead, so the first's result is known when it arrives).
    variants = iter([" * 1.0", " * 1.0 * 1.0", ""])

    def reply(request: dict[str, Any]) -> str:
        system = json.dumps(request.get("messages", [])[:1]).lower()
        if "analyst" in system and "lesson" in system:
            return "- nothing new"
        return GOOD.format(variant=next(variants, ""))

    with StubLLM(reply) as stub:
        out = subprocess.run(
            [sys.executable, "-m", "daedalus.agent.cli", "run", "swish_scale", "--set", "dim=4096",
             "--set", "batch_size=64", "--proposer", "llm", "--model", "openai/stub",
             "--api-base", stub.url, "--iterations", "2", "--workers", "1", "--lookahead", "0",
             "--json"],
            cwd=tmp_path, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
    assert out.returncode == 0, out.stderr
    archive = open_archive(f"sqlite:///{tmp_path / '.daedalus' / 'archive.db'}")
    with archive.session() as s:
        first, second = s.scalars(
            select(Candidate).where(Candidate.proposer == "llm").order_by(Candidate.seq)).all()
        assert first.status == "ok" and first.functional_hash
        # Linked to the first and never timed: the probe stage caught it.
        assert second.duplicate_kind == "functional" and second.duplicate_of == first.id
        assert second.evaluation is not None and second.evaluation.speedup is None
        assert "computes exactly what an earlier candidate computes" in (second.evaluation.error or "")
