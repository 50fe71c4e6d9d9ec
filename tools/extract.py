"""Getting a program out of an LLM reply: fenced code, bare code, and SEARCH/REPLACE edits.

Models answer in many shapes: one fenced block, several (a draft and a fix), a block
left unterminated because the reply hit its token limit, code with no fence at all,
reasoning in ``<think>`` tags, or aider/OpenEvolve-style edit blocks::

    <<<<<<< SEARCH
    old lines
    =======
    new lines
    >>>>>>> REPLACE

Edits are matched exactly first, then tolerantly (trailing whitespace, a uniform
indentation shift, blank lines), and must match exactly one place; an edit that does
not apply raises ``EditError`` naming the block and the reason, which the proposer sends
back to the model.
"""

from __future__ import annotations

import ast
import difflib
import re
from dataclasses import dataclass

_THINK = re.compile(r"<think(?:ing)?>.*?(?:</think(?:ing)?>|\Z)", re.DOTALL | re.IGNORECASE)
_FENCE = re.compile(r"^[ \t]*(`{3,}|~{3,})[ \t]*([\w+.-]*)[^\n]*$", re.MULTILINE)
_EDIT = re.compile(
    r"^[ \t]*<{5,9}[ \t]*SEARCH[^\n]*\n(.*?)^[ \t]*={5,9}[ \t]*\n(.*?)^[ \t]*>{5,9}[ \t]*REPLACE[^\n]*$",
    re.MULTILINE | re.DOTALL,
)
_EDIT_MARKER = re.compile(r"^[ \t]*(<{5,9}[ \t]*SEARCH|>{5,9}[ \t]*REPLACE)", re.MULTILINE)
_PY_LANGS = {"", "python", "py", "python3", "py3", "ipython", "pytorch", "torch"}
_CODE_START = re.compile(r"^(import |from \S+ import |class |def |@|#!|\"\"\"|''')", re.MULTILINE)


class EditError(ValueError):
    """A SEARCH/REPLACE block that does not apply. ``index`` is 1-based."""

    def __init__(self, message: str, *, index: int = 0, total: int = 0) -> None:
        super().__init__(message)
        self.index = index
        self.total = total


@dataclass(frozen=True)
class CodeBlock:
    language: str
    code: str
    closed: bool  # False when the reply ended inside the block (truncated)


@dataclass(frozen=True)
class EditBlock:
    search: str
    replace: str


def strip_reasoning(reply: str) -> str:
    """Drop ``<think>`` sections: code in them is a draft, not the answer."""
    return _THINK.sub("", reply)


def code_blocks(reply: str) -> list[CodeBlock]:
    """Fenced blocks in order. A fence closes only with the same character, at least as long."""
    blocks: list[CodeBlock] = []
    lines = reply.splitlines()
    i = 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        fence, language = opening.group(1), opening.group(2).lower()
        body: list[str] = []
        j = i + 1
        closed = False
        while j < len(lines):
            stripped = lines[j].strip()
            if stripped.startswith(fence[0] * len(fence)) and set(stripped) == {fence[0]}:
                closed = True
                break
            body.append(lines[j])
            j += 1
        blocks.append(CodeBlock(language, "\n".join(body).strip("\n") + "\n", closed))
        i = j + 1
    return blocks


def _parses(code: str) -> bool:
    try:
        ast.parse(code)
    except (SyntaxError, ValueError):
        return False
    return True


def _defines(code: str, name: str) -> bool:
    return re.search(rf"^[ \t]*class[ \t]+{re.escape(name)}\b", code, re.MULTILINE) is not None


def extract_code(reply: str, *, prefer: str | None = "ModelNew") -> str | None:
    """The program in ``reply``, or None when there is none.

    Among fenced Python blocks, the last one that defines ``class <prefer>`` and parses
    wins (models often print a draft, then the fix); else the largest such block; else
    the largest Python block. Without fences, the reply itself or its code-looking tail.
    """
    text = strip_reasoning(reply)
    blocks = [
        b for b in code_blocks(text)
        if b.language in _PY_LANGS and b.code.strip() and not _EDIT_MARKER.search(b.code)
    ]
    if len(blocks) == 1:  # whatever the rules below weigh, a lone block is the answer
        return blocks[0].code
    if blocks:
        if prefer:
            defining = [b for b in blocks if _defines(b.code, prefer)]
            parsing = [b for b in defining if _parses(b.code)]
            if parsing:
                return parsing[-1].code
            if defining:
                return max(defining, key=lambda b: len(b.code)).code
        parsing = [b for b in blocks if _parses(b.code)]
        return max(parsing or blocks, key=lambda b: len(b.code)).code
    if _EDIT_MARKER.search(text):
        return None
    return _bare_code(text, prefer)


def _bare_code(text: str, prefer: str | None) -> str | None:
    """Code written without fences, possibly with prose before and after it."""
    stripped = text.strip()
    if not stripped:
        return None
    if _parses(stripped) and _looks_like_code(stripped, prefer):
        return stripped + "\n"
    start = _CODE_START.search(text)
    if start is None:
        return None
    lines = text[start.start():].rstrip().splitlines()
    # Trim trailing prose one line at a time until the rest parses.
    while lines:
        candidate = "\n".join(lines).rstrip() + "\n"
        if _parses(candidate) and _looks_like_code(candidate, prefer):
            return candidate
        lines.pop()
    return None


def _looks_like_code(code: str, prefer: str | None) -> bool:
    if prefer and _defines(code, prefer):
        return True
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError):
        return False
    # Prose that happens to parse (a single name, a sentence-like expression) is not a program.
    return any(isinstance(node, ast.Import | ast.ImportFrom | ast.ClassDef | ast.FunctionDef)
               for node in tree.body)


def parse_edits(reply: str) -> list[EditBlock]:
    """SEARCH/REPLACE blocks in order (inside or outside fences)."""
    text = strip_reasoning(reply)
    return [EditBlock(search=m.group(1), replace=m.group(2)) for m in _EDIT.finditer(text)]


def has_edit_markers(reply: str) -> bool:
    return _EDIT_MARKER.search(strip_reasoning(reply)) is not None


def apply_edits(code: str, edits: list[EditBlock]) -> str:
    """Apply edits in order, each to the result of the previous ones."""
    if not edits:
        raise EditError("the reply has no SEARCH/REPLACE blocks")
    for index, edit in enumerate(edits, start=1):
        code = _apply_one(code, edit, index, len(edits))
    return code


def _apply_one(code: str, edit: EditBlock, index: int, total: int) -> str:
    def fail(reason: str) -> EditError:
        return EditError(f"edit {index} of {total} did not apply: {reason}", index=index,
                         total=total)

    if not edit.search.strip():
        raise fail("its SEARCH section is empty; copy the exact lines to replace into it")
    starts = _line_aligned(code, edit.search)
    count = len(starts)
    if count == 1:
        at = starts[0]
        return code[:at] + edit.replace + code[at + len(edit.search):]
    if count > 1:
        raise fail(f"its SEARCH text occurs {count} times; include more surrounding lines "
                   "so that it matches exactly one place")
    matches = _fuzzy_matches(code.splitlines(), edit.search.splitlines())
    if len(matches) > 1:
        raise fail(f"its SEARCH text matches {len(matches)} places (ignoring whitespace); "
                   "include more surrounding lines so that it matches exactly one place")
    if not matches:
        raise fail("its SEARCH text was not found in the current code. " + _hint(code, edit))
    start, end, prefix, strip = matches[0]
    lines = code.splitlines()
    replacement = [_reindent(line, prefix, strip) for line in edit.replace.splitlines()]
    new_lines = lines[:start] + replacement + lines[end + 1:]
    return "\n".join(new_lines) + ("\n" if code.endswith("\n") else "")


def _line_aligned(code: str, search: str) -> list[int]:
    """Exact occurrences that start a line (a match mid-line would misplace the indent)."""
    starts = []
    at = code.find(search)
    while at != -1:
        end = at + len(search)
        starts_line = at == 0 or code[at - 1] == "\n"
        ends_line = search.endswith("\n") or end == len(code) or code[end] == "\n"
        if starts_line and ends_line:
            starts.append(at)
        at = code.find(search, at + 1)
    return starts


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _fuzzy_matches(code: list[str], search: list[str]) -> list[tuple[int, int, str, int]]:
    """Places where ``search`` matches ignoring trailing space, blank lines and an indent shift.

    Returns (first line, last line, indent prefix to add, indent width to strip).
    """
    wanted = [line.rstrip() for line in search if line.strip()]
    if not wanted:
        return []
    strip = min(_indent(line) for line in wanted)
    wanted = [line[strip:] for line in wanted]
    present = [(i, line.rstrip()) for i, line in enumerate(code) if line.strip()]
    found: list[tuple[int, int, str, int]] = []
    for k in range(len(present) - len(wanted) + 1):
        window = present[k:k + len(wanted)]
        first = window[0][1]
        if not first.endswith(wanted[0]):
            continue
        prefix = first[: len(first) - len(wanted[0])]
        if prefix.strip():
            continue
        if all(line == prefix + want for (_, line), want in zip(window, wanted, strict=True)):
            found.append((window[0][0], window[-1][0], prefix, strip))
    return found


def _reindent(line: str, prefix: str, strip: int) -> str:
    if not line.strip():
        return ""
    removable = min(strip, _indent(line))
    return prefix + line[removable:]


def _hint(code: str, edit: EditBlock) -> str:
    first = next((line.strip() for line in edit.search.splitlines() if line.strip()), "")
    candidates = [line.strip() for line in code.splitlines() if line.strip()]
    close = difflib.get_close_matches(first, candidates, n=1, cutoff=0.6)
    shown = first if len(first) <= 120 else first[:117] + "..."
    if close:
        return (f"Its first line {shown!r} is closest to {close[0]!r}; copy the lines "
                "from the current code exactly")
    return f"Its first line {shown!r} is not in the current code; copy lines from it exactly"
