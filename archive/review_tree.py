"""Lineage trees for review: ancestors and descendants, with long chains folded.

An evolutionary run grows chains hundreds of generations deep, which no terminal or page
can draw one node per level. Trees here keep the nodes a reader needs (roots, leaves,
branch points and the highlighted candidates) and fold every run of single-child nodes
between them into a "hidden" count on the next kept node. Part of ``archive/review``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session, aliased

from daedalus.archive.models import Candidate

IN_CHUNK = 500  # ids per IN (...) list, well under every database's parameter limit


@dataclass(frozen=True)
class Node:
    """What a tree row shows about one candidate (no code: trees can be large)."""

    id: str
    parent_id: str | None
    seq: int
    status: str
    score: float | None
    mode: str
    generation: int
    run_id: str


@dataclass
class TreeNode:
    node: Node
    hidden_above: int = 0  # single-child ancestors folded away between here and the parent
    children: list[TreeNode] = field(default_factory=list)
    more_children: int = 0  # children not loaded (depth or size limit)


@dataclass(frozen=True)
class TreeRow:
    """One line of a drawn tree: box-drawing ``prefix`` then the node."""

    prefix: str
    item: TreeNode


_COLUMNS = (
    Candidate.id,
    Candidate.parent_id,
    Candidate.seq,
    Candidate.status,
    Candidate.score,
    Candidate.mode,
    Candidate.generation,
    Candidate.run_id,
)


def _nodes(rows: Iterable[tuple[object, ...]]) -> list[Node]:
    return [Node(*row) for row in rows]  # type: ignore[arg-type]


def ancestry(session: Session, *, leaf_ids: Iterable[str]) -> list[Node]:
    """``leaf_ids`` and all their ancestors, in one recursive query that carries the shown
    columns along (UNION drops repeats, so shared ancestors are read once and a corrupted
    cycle still terminates)."""
    leaves = list(dict.fromkeys(leaf_ids))
    if not leaves:
        return []
    up = aliased(Candidate)
    cte = select(*_COLUMNS).where(Candidate.id.in_(leaves)).cte("anc", recursive=True)
    cte = cte.union(
        select(*(getattr(up, c.key) for c in _COLUMNS)).join(cte, up.id == cte.c.parent_id)
    )
    return _nodes(session.execute(select(cte)))


def descendants(
    session: Session, *, candidate_id: str, depth: int = 4, limit: int = 300
) -> tuple[list[Node], dict[str, int]]:
    """Children, grandchildren ... of a candidate down to ``depth`` levels, at most
    ``limit`` nodes (breadth first, oldest first). Also returns, per node on the
    boundary, how many children were not loaded."""
    found: list[Node] = []
    frontier = [candidate_id]
    cut: dict[str, int] = {}
    for level in range(depth + 1):
        if not frontier:
            break
        batch: list[Node] = []
        for i in range(0, len(frontier), IN_CHUNK):
            chunk = frontier[i : i + IN_CHUNK]
            batch += _nodes(
                session.execute(
                    select(*_COLUMNS)
                    .where(Candidate.parent_id.in_(chunk))
                    .order_by(Candidate.created_at, Candidate.seq)
                )
            )
        room = limit - len(found)
        if level == depth or room <= 0:
            for n in batch:
                cut[n.parent_id or ""] = cut.get(n.parent_id or "", 0) + 1
            break
        for n in batch[room:]:
            cut[n.parent_id or ""] = cut.get(n.parent_id or "", 0) + 1
        found += batch[:room]
        frontier = [n.id for n in batch[:room]]
    return found, cut


def node_of(candidate: Candidate) -> Node:
    return Node(
        candidate.id,
        candidate.parent_id,
        candidate.seq,
        candidate.status,
        candidate.score,
        candidate.mode,
        candidate.generation,
        candidate.run_id,
    )


def build_tree(
    nodes: Iterable[Node],
    *,
    keep: Iterable[str] = (),
    fold: bool = True,
    more_children: dict[str, int] | None = None,
) -> list[TreeNode]:
    """Roots of the forest over ``nodes`` (a node whose parent is absent is a root).

    With ``fold``, a node with exactly one child that is neither a root nor in ``keep``
    is folded into its child's ``hidden_above``; children are ordered by ``seq``.
    """
    by_id = {n.id: n for n in nodes}
    kids: dict[str, list[Node]] = {}
    roots: list[Node] = []
    for n in sorted(by_id.values(), key=lambda n: (n.run_id, n.seq)):
        if n.parent_id in by_id and n.parent_id != n.id:
            kids.setdefault(n.parent_id, []).append(n)
        else:
            roots.append(n)
    keep_ids = set(keep)
    extra = more_children or {}

    def foldable(n: Node) -> bool:
        return (
            fold and len(kids.get(n.id, ())) == 1 and n.id not in keep_ids and not extra.get(n.id)
        )

    forest = [TreeNode(r, more_children=extra.get(r.id, 0)) for r in roots]
    stack = [(tree, root) for tree, root in zip(forest, roots, strict=True)]
    seen = {r.id for r in roots}
    while stack:
        tree, n = stack.pop()
        for child in kids.get(n.id, ()):
            hidden = 0
            while foldable(child) and child.id not in seen:
                seen.add(child.id)
                hidden += 1
                child = kids[child.id][0]
            if child.id in seen:  # a cycle in corrupted data: stop rather than loop
                continue
            seen.add(child.id)
            sub = TreeNode(child, hidden_above=hidden, more_children=extra.get(child.id, 0))
            tree.children.append(sub)
            stack.append((sub, child))
    return forest


def tree_rows(forest: list[TreeNode], *, max_rows: int = 500) -> tuple[list[TreeRow], int]:
    """Pre-order rows with ``tree``-style prefixes, and how many rows were cut off."""
    rows: list[TreeRow] = []
    total = 0
    stack: list[tuple[TreeNode, str, str]] = [(t, "", "") for t in reversed(forest)]
    while stack:
        item, lead, below = stack.pop()
        total += 1
        if len(rows) < max_rows:
            rows.append(TreeRow(lead, item))
        last = len(item.children) - 1
        for i, child in reversed(list(enumerate(item.children))):
            branch = "└─ " if i == last else "├─ "
            stack.append((child, below + branch, below + ("   " if i == last else "│  ")))
    return rows, total - len(rows)


__all__ = [
    "Node",
    "TreeNode",
    "TreeRow",
    "ancestry",
    "build_tree",
    "descendants",
    "node_of",
    "tree_rows",
]
