"""The LLM proposer end to end: profile prompts -> real litellm -> stub server -> Proposal."""

from __future__ import annotations

import time
from dataclasses import replace

import pytest

from daedalus.agent.profile import build_messages
from daedalus.tools.llm import LLMBudgetExceeded, LLMGateway, LLMUnavailable
from daedalus.tools.llm_proposer import LLMProposer
from daedalus.tools.proposer import ArchiveEntry, Brief
from tests.stub_llm import Reply, StubLLM

TASK = """import torch
import torch.nn as nn


class Model(nn.Module):
    def __init__(self, scale: float):
        super().__init__()
        self.scale = scale

    def forward(self, x):
        return torch.relu(x * self.scale)


def get_inputs():
    return [torch.randn(16, 16)]


def get_init_inputs():
    return [2.0]
"""

PARENT = TASK.replace("class Model(", "class ModelNew(").split("\n\ndef get_inputs")[0] + "\n"

FULL = """import torch
import torch.nn as nn


class ModelNew(nn.Module):
    def __init__(self, scale: float):
        super().__init__()
        self.scale = scale

    def forward(self, x):
        return torch.mul(x, self.scale).relu_()
"""

GOOD_EDIT = """Multiply then ReLU in place on the fresh tensor.
<<<<<<< SEARCH
        return torch.relu(x * self.scale)
=======
        return torch.mul(x, self.scale).relu_()
>>>>>>> REPLACE
"""

BAD_EDIT = """Trying an edit.
<<<<<<< SEARCH
        return torch.sigmoid(x)
=======
        return x
>>>>>>> REPLACE
"""

PRICES = {"input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6}


def make_brief(**changes: object) -> Brief:
    parent = ArchiveEntry(candidate_id="p1", code=PARENT, status="ok", score=1.0, speedup=1.0,
                          feedback="status: ok\nmetrics: speedup=1.0")
    brief = Brief(task_name="scale_relu", task_source=TASK, category="fusion", mode="improve",
                  parent=parent)
    return replace(brief, **changes)  # type: ignore[arg-type]


def proposer(stub: StubLLM, *, edit_format: str = "full", retries: int = 2,
             **config: object) -> LLMProposer:
    gateway = LLMGateway(stub.llm_config(**{**PRICES, **config}), sleep=lambda s: None)
    return LLMProposer(gateway, edit_format=edit_format, max_edit_retries=retries,
                       build_messages=build_messages)


def test_full_rewrite_with_accounting_and_prompt(stub_llm: StubLLM) -> None:
    stub_llm.script([Reply(f"Fused the scale into one pass.\n```python\n{FULL}```",
                           prompt_tokens=1200, completion_tokens=80)])
    proposal = proposer(stub_llm).propose(make_brief())
    assert proposal.error is None and proposal.code == FULL
    assert (proposal.model, proposal.proposer, proposal.edit_format) == ("openai/stub", "llm", "full")
    assert (proposal.prompt_tokens, proposal.completion_tokens) == (1200, 80)
    assert proposal.cost_usd == pytest.approx(1200 * 1e-6 + 80 * 2e-6)
    assert proposal.description == "Fused the scale into one pass."
    messages = stub_llm.requests[0]["messages"]
    assert [m["role"] for m in messages] == ["system", "user"]
    assert "engineer" in messages[0]["content"]
    assert "scale_relu" in messages[1]["content"]
    assert "<<<ARCHIVE DATA: parent code>>>" in messages[1]["content"]
    assert proposal.meta["prompt"] == messages[1]["content"]


def test_diff_edits_are_applied_to_the_parent(stub_llm: StubLLM) -> None:
    stub_llm.script([GOOD_EDIT])
    proposal = proposer(stub_llm, edit_format="diff").propose(make_brief())
    assert proposal.error is None and proposal.edit_format == "diff"
    assert proposal.code == PARENT.replace("torch.relu(x * self.scale)",
                                           "torch.mul(x, self.scale).relu_()")
    assert "SEARCH/REPLACE" in stub_llm.requests[0]["messages"][1]["content"]


def test_failed_edit_is_fed_back_and_retried(stub_llm: StubLLM) -> None:
    stub_llm.script([Reply(BAD_EDIT, completion_tokens=30), Reply(GOOD_EDIT, completion_tokens=40)])
    proposal = proposer(stub_llm, edit_format="diff").propose(make_brief())
    assert proposal.error is None
    assert "relu_()" in proposal.code
    assert len(stub_llm.requests) == 2
    follow_up = stub_llm.requests[1]["messages"]
    assert follow_up[-2] == {"role": "assistant", "content": BAD_EDIT}
    assert "edit 1 of 1 did not apply" in follow_up[-1]["content"]
    assert "torch.sigmoid(x)" in follow_up[-1]["content"]
    assert proposal.completion_tokens == 70  # both replies are paid for
    assert BAD_EDIT in proposal.raw and GOOD_EDIT in proposal.raw


def test_edits_that_never_apply_become_an_error_proposal(stub_llm: StubLLM) -> None:
    stub_llm.script([Reply(BAD_EDIT, prompt_tokens=100, completion_tokens=10)] * 3)
    proposal = proposer(stub_llm, edit_format="diff", retries=2).propose(make_brief())
    assert proposal.code == ""
    assert proposal.error is not None and "did not apply" in proposal.error
    assert "after 3 replies" in proposal.error
    assert proposal.meta["error_kind"] == "edit_failed"
    assert (proposal.prompt_tokens, proposal.completion_tokens) == (300, 30)
    assert proposal.cost_usd == pytest.approx(300 * 1e-6 + 30 * 2e-6)
    assert stub_llm.overruns == 0


def test_full_program_next_to_broken_edits_is_used(stub_llm: StubLLM) -> None:
    stub_llm.script([f"{BAD_EDIT}\nOr the whole thing:\n```python\n{FULL}```"])
    proposal = proposer(stub_llm, edit_format="diff").propose(make_brief())
    assert proposal.code == FULL and proposal.edit_format == "full"


def test_reply_without_code_is_retried_then_recorded(stub_llm: StubLLM) -> None:
    stub_llm.script([Reply("I think it is already optimal.", completion_tokens=9)] * 2)
    proposal = proposer(stub_llm, retries=1).propose(make_brief())
    assert proposal.error is not None and "no program" in proposal.error
    assert proposal.meta["error_kind"] == "no_code"
    assert proposal.completion_tokens == 18 and proposal.cost_usd > 0
    assert "contained no program" in stub_llm.last_user_message()


def test_no_code_then_code_succeeds(stub_llm: StubLLM) -> None:
    stub_llm.script(["Let me think.", f"```python\n{FULL}```"])
    proposal = proposer(stub_llm).propose(make_brief())
    assert proposal.error is None and proposal.code == FULL
    assert proposal.meta["replies"] == "2"


@pytest.mark.parametrize(
    ("script", "kind"),
    [
        ([Reply.malformed()] * 2, "bad_reply"),
        ([Reply.rate_limited(0.01)] * 2, "rate_limited"),
        ([Reply.server_error(500)] * 2, "server_error"),
    ],
)
def test_provider_faults_become_error_proposals(stub_llm: StubLLM, script: list[Reply],
                                                kind: str) -> None:
    stub_llm.script(script)
    proposal = proposer(stub_llm, max_retries=1).propose(make_brief())
    assert proposal.error and proposal.code == ""
    assert proposal.meta["error_kind"] == kind
    assert "fatal" not in proposal.meta
    assert len(stub_llm.requests) == 2  # the gateway retried once, the proposer did not add more


def test_timeout_becomes_an_error_proposal_in_bounded_time(stub_llm: StubLLM) -> None:
    stub_llm.script([Reply.slow(5.0)] * 2)
    started = time.monotonic()
    proposal = proposer(stub_llm, timeout_s=0.3, max_retries=1).propose(make_brief())
    assert time.monotonic() - started < 3.0
    assert proposal.meta["error_kind"] == "timeout" and "did not answer" in (proposal.error or "")


def test_rejected_key_is_raised_for_the_caller_to_stop(stub_llm: StubLLM) -> None:
    stub_llm.script([Reply.auth_error()])
    with pytest.raises(LLMUnavailable) as info:
        proposer(stub_llm).propose(make_brief())
    assert info.value.fatal


def test_budget_too_small_for_one_call_raises_before_sending(stub_llm: StubLLM) -> None:
    with pytest.raises(LLMBudgetExceeded):
        proposer(stub_llm).propose(make_brief(max_cost_usd=1e-6))
    assert stub_llm.requests == []


def test_budget_stops_retries_and_is_never_exceeded(stub_llm: StubLLM) -> None:
    # The first reply costs most of the budget; the follow-up cannot be afforded.
    stub_llm.script([Reply("no code here", prompt_tokens=19_000, completion_tokens=100)])
    budget = 0.02
    proposal = proposer(stub_llm, retries=2).propose(make_brief(max_cost_usd=budget))
    assert proposal.meta["error_kind"] == "budget" and proposal.meta["fatal"] == "true"
    assert proposal.cost_usd == pytest.approx(19_000 * 1e-6 + 100 * 2e-6)
    assert proposal.cost_usd <= budget
    assert len(stub_llm.requests) == 1


def test_chaotic_provider_never_crashes_and_never_exceeds_the_budget(stub_llm: StubLLM) -> None:
    chaos: list[Reply | str] = [Reply.slow(5.0), Reply.rate_limited(0.01), Reply.server_error(502),
             Reply.malformed(), "no code", BAD_EDIT, GOOD_EDIT, f"```python\n{FULL}```"]
    stub_llm.script(lambda request: chaos[len(stub_llm.requests) % len(chaos)])
    llm = proposer(stub_llm, edit_format="diff", retries=1, timeout_s=0.3, max_retries=0)
    budget, spent, outcomes = 0.05, 0.0, []
    for _ in range(40):
        try:
            proposal = llm.propose(make_brief(max_cost_usd=budget - spent))
        except LLMBudgetExceeded:
            break
        spent += proposal.cost_usd
        outcomes.append(proposal.meta.get("error_kind", "ok"))
        assert spent <= budget
        if proposal.meta.get("fatal"):
            break
    assert "ok" in outcomes and {"timeout", "rate_limited", "server_error"} <= set(outcomes)
    assert spent <= budget


def test_message_sources_without_a_builder(stub_llm: StubLLM) -> None:
    gateway = LLMGateway(stub_llm.llm_config())
    bare = LLMProposer(gateway)
    with pytest.raises(ValueError, match="build_messages"):
        bare.propose(make_brief())
    stub_llm.script([f"```python\n{FULL}```"] * 2)
    bare.propose(make_brief(prompt="write ModelNew"))
    assert stub_llm.requests[0]["messages"] == [{"role": "user", "content": "write ModelNew"}]
    messages = ({"role": "system", "content": "s"}, {"role": "user", "content": "u"})
    bare.propose(make_brief(messages=messages))
    assert stub_llm.requests[1]["messages"] == list(messages)
    with pytest.raises(ValueError, match="edit format"):
        LLMProposer(gateway, edit_format="patch")
