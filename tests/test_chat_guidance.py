"""Pinned and banned ideas (stored by `daedalus chat` in Run.guidance) reach the run's prompts."""

from __future__ import annotations

from daedalus.agent import memory, profile
from daedalus.tools.proposer import ArchiveEntry, Brief

TASK = "import torch\n\n\nclass Model(torch.nn.Module):\n    def forward(self, x):\n        return x * 2\n"


def _brief(guidance: tuple[str, ...]) -> Brief:
    parent = ArchiveEntry(candidate_id="p1", code=TASK.replace("Model(", "ModelNew("), status="ok",
                          score=1.0, speedup=1.0)
    return Brief(task_name="double", task_source=TASK, category="activation", mode="improve",
                 parent=parent, guidance=guidance)


def test_guidance_lines_turn_stored_entries_into_tagged_strings() -> None:
    stored = [
        {"kind": "pin", "text": "fuse the two loops"},
        {"kind": "ban", "text": " torch.compile "},
        {"kind": "pin", "text": "  "},  # empty text is dropped
        "prefer in-place ops",  # a legacy plain string stays a note
        {"kind": "other", "text": "be brief"},
    ]
    assert memory.guidance_lines(stored) == [
        "pin: fuse the two loops", "ban: torch.compile", "prefer in-place ops", "be brief",
    ]


def test_pins_and_bans_are_stated_apart_in_the_proposal_prompt() -> None:
    lines = memory.guidance_lines([{"kind": "pin", "text": "fuse the two loops"},
                                   {"kind": "ban", "text": "torch.compile"}, "keep it short"])
    user = profile.build_messages(_brief(tuple(lines)))[1]["content"]
    section = user[user.index("## Guidance from the user"):user.index("## Parent")]
    pinned = section.index("Pursue these ideas (pinned by the user):")
    banned = section.index("Never use these ideas (banned by the user)")
    assert pinned < section.index("- fuse the two loops") < banned < section.index("- torch.compile")
    assert "Also follow this:\n- keep it short" in section
    # The raw storage format never leaks into the prompt.
    assert "{'kind'" not in user and "pin:" not in user and "ban:" not in user


def test_no_guidance_no_section() -> None:
    user = profile.build_messages(_brief(()))[1]["content"]
    assert "Guidance from the user" not in user
