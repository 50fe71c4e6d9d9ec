"""What a built-in proposal records about itself, and reading it back from the archive.

The description is for people and for the proposer alike: its first two lines are a fixed
format that ``parse`` reads back, so a resumed run rebuilds the bandit from archived
descriptions, and crossover can replay a parent's lineage (the transformations applied
since the seed) instead of guessing from its code.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass

from daedalus.tools.builtin.base import Change

_HEAD = re.compile(
    r"^builtin/(?P<mode>\w+): applied (?P<applied>[\w, ]+) to (?:parent (?P<parent>\S+)|the seed) "
    r"\(score (?P<score>[-+\d.eE]+|nan|inf)\)\.$"
)
_LINEAGE = re.compile(r"^lineage: (?P<lineage>[\w >]*)$")


@dataclass(frozen=True)
class Record:
    mode: str
    applied: tuple[str, ...]
    lineage: tuple[str, ...]  # every transformation since the seed, oldest first
    parent_id: str  # "" when the parent was the seed
    parent_score: float


def describe(record: Record, changes: Sequence[Change]) -> str:
    parent = f"parent {record.parent_id}" if record.parent_id else "the seed"
    lines = [
        f"builtin/{record.mode}: applied {', '.join(record.applied)} to {parent} "
        f"(score {record.parent_score:.6g}).",
        f"lineage: {' > '.join(record.lineage)}",
    ]
    lines += [f"- {change.render()}" for change in changes]
    return "\n".join(lines)


def meta(record: Record, changes: Sequence[Change]) -> dict[str, str]:
    return {
        "transforms": json.dumps(
            [{"name": c.transform, "where": c.where, "detail": c.detail} for c in changes]
        ),
        "applied": json.dumps(list(record.applied)),
        "lineage": json.dumps(list(record.lineage)),
        "parent": record.parent_id,
        "parent_score": repr(record.parent_score),
        "mode": record.mode,
    }


def parse(description: str) -> Record | None:
    """The record at the head of a built-in description, or None for anything else."""
    lines = description.strip().splitlines()
    if len(lines) < 2:
        return None
    head = _HEAD.match(lines[0].strip())
    tail = _LINEAGE.match(lines[1].strip())
    if head is None or tail is None:
        return None
    try:
        parent_score = float(head["score"])
    except ValueError:
        return None
    lineage = tuple(n.strip() for n in tail["lineage"].split(">") if n.strip())
    applied = tuple(n.strip() for n in head["applied"].split(",") if n.strip())
    return Record(head["mode"], applied, lineage, head["parent"] or "", parent_score)
