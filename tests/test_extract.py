"""Code extraction from LLM replies and SEARCH/REPLACE edits."""

from __future__ import annotations

import pytest

from daedalus.tools.extract import (
    EditBlock,
    EditError,
    apply_edits,
    code_blocks,
    extract_code,
    has_edit_markers,
    parse_edits,
)

PROGRAM = """import torch
import torch.nn as nn


class ModelNew(nn.Module):
    def forward(self, x):
        return torch.relu(x)
"""

PARENT = """import torch
import torch.nn as nn


class ModelNew(nn.Module):
    def __init__(self, scale: float):
        super().__init__()
        self.scale = scale

    def forward(self, x):
        y = x * self.scale
        y = torch.relu(y)
        return y
"""


def test_single_fenced_block_with_prose() -> None:
    reply = f"I fused the ops.\n\n```python\n{PROGRAM}```\n\nThis should be faster."
    assert extract_code(reply) == PROGRAM


def test_last_block_defining_modelnew_wins_over_draft_and_snippets() -> None:
    draft = PROGRAM.replace("relu", "sigmoid")
    reply = (
        f"First attempt:\n```python\n{draft}```\nOops, fix:\n```python\n{PROGRAM}```\n"
        "Usage:\n```python\nmodel = ModelNew()\n```\n"
    )
    assert extract_code(reply) == PROGRAM


def test_block_that_does_not_parse_loses_to_one_that_does() -> None:
    broken = PROGRAM + "    def oops(:\n"
    reply = f"```python\n{PROGRAM}```\nand a variant\n```python\n{broken}```"
    assert extract_code(reply) == PROGRAM


def test_unterminated_block_from_truncated_reply() -> None:
    reply = f"Here it is:\n```python\n{PROGRAM}"
    assert extract_code(reply) == PROGRAM
    assert code_blocks(reply)[0].closed is False


def test_unfenced_program_and_program_after_prose() -> None:
    assert extract_code(PROGRAM) == PROGRAM
    reply = f"Sure! The faster version is below.\n\n{PROGRAM}\nLet me know if it helps."
    assert extract_code(reply) == PROGRAM


def test_no_code_at_all() -> None:
    assert extract_code("I could not find a faster formulation, sorry.") is None
    assert extract_code("") is None
    assert extract_code("Yes.") is None


def test_reasoning_sections_are_ignored() -> None:
    thinking = PROGRAM.replace("relu", "tanh")
    reply = f"<think>maybe\n```python\n{thinking}```\n</think>\nFinal:\n```python\n{PROGRAM}```"
    assert extract_code(reply) == PROGRAM


def test_tilde_fence_and_py_language_tag() -> None:
    assert extract_code(f"~~~py\n{PROGRAM}~~~\n") == PROGRAM


def test_non_python_blocks_are_skipped() -> None:
    reply = f"```bash\npip install torch\n```\n```python\n{PROGRAM}```"
    assert extract_code(reply) == PROGRAM


def test_fallback_to_largest_python_block_without_modelnew() -> None:
    small = "x = 1\n"
    big = "import torch\n\n\ndef f(x):\n    return x + 1\n"
    assert extract_code(f"```python\n{small}```\n```python\n{big}```") == big
    assert extract_code(f"```python\n{big}```", prefer=None) == big


def test_edit_blocks_are_not_taken_for_programs() -> None:
    reply = "```python\n<<<<<<< SEARCH\nx = 1\n=======\nx = 2\n>>>>>>> REPLACE\n```"
    assert extract_code(reply) is None
    assert has_edit_markers(reply)


def test_parse_and_apply_exact_edits_in_order() -> None:
    reply = """Fuse the scale and the relu.
```python
<<<<<<< SEARCH
        y = x * self.scale
        y = torch.relu(y)
        return y
=======
        return torch.relu(x * self.scale)
>>>>>>> REPLACE
```
<<<<<<< SEARCH
import torch.nn as nn
=======
import torch.nn as nn
import torch.nn.functional as F
>>>>>>> REPLACE
"""
    edits = parse_edits(reply)
    assert len(edits) == 2
    result = apply_edits(PARENT, edits)
    assert "return torch.relu(x * self.scale)" in result
    assert "import torch.nn.functional as F" in result
    assert "y = torch.relu(y)" not in result
    compile(result, "<edited>", "exec")


def test_edit_with_wrong_indentation_is_reindented() -> None:
    edit = EditBlock(search="y = x * self.scale\ny = torch.relu(y)\n",
                     replace="y = torch.relu(x * self.scale)\nif True:\n    pass\n")
    result = apply_edits(PARENT, [edit])
    assert "        y = torch.relu(x * self.scale)\n        if True:\n            pass\n" in result
    compile(result, "<edited>", "exec")


def test_edit_tolerates_trailing_whitespace_and_blank_lines() -> None:
    search = "    def __init__(self, scale: float):   \n\n        super().__init__()\n"
    edit = EditBlock(search=search, replace="    def __init__(self, scale: float = 1.0):\n"
                                            "        super().__init__()\n")
    result = apply_edits(PARENT, [edit])
    assert "def __init__(self, scale: float = 1.0):" in result
    compile(result, "<edited>", "exec")


def test_exact_match_must_start_a_line() -> None:
    # "return y" also occurs inside a deeper-indented line; it must not match mid-line.
    code = "def f(y):\n    if y:\n        return y\n    return y\n"
    edit = EditBlock(search="    return y\n", replace="    return -y\n")
    assert apply_edits(code, [edit]) == "def f(y):\n    if y:\n        return y\n    return -y\n"


def test_edit_not_found_names_block_and_closest_line() -> None:
    edits = [
        EditBlock(search="import torch\n", replace="import torch\nimport math\n"),
        EditBlock(search="        y = torch.relu(z)\n", replace="        y = y.relu_()\n"),
    ]
    with pytest.raises(EditError) as info:
        apply_edits(PARENT, edits)
    message = str(info.value)
    assert info.value.index == 2 and info.value.total == 2
    assert "edit 2 of 2 did not apply" in message
    assert "not found" in message
    assert "y = torch.relu(y)" in message  # the closest line is quoted as a hint


def test_ambiguous_edit_is_an_error() -> None:
    code = "a = 1\nb = 2\na = 1\n"
    with pytest.raises(EditError, match="occurs 2 times"):
        apply_edits(code, [EditBlock(search="a = 1\n", replace="a = 3\n")])


def test_empty_search_and_no_blocks_are_errors() -> None:
    with pytest.raises(EditError, match="SEARCH section is empty"):
        apply_edits(PARENT, [EditBlock(search="\n", replace="x = 1\n")])
    with pytest.raises(EditError, match="no SEARCH/REPLACE blocks"):
        apply_edits(PARENT, [])


def test_marker_variants_parse() -> None:
    reply = "<<<<<<<< SEARCH  \nx = 1\n========\nx = 2\n>>>>>>>> REPLACE\n"
    assert parse_edits(reply) == [EditBlock(search="x = 1\n", replace="x = 2\n")]
    deletion = "<<<<<<< SEARCH\nx = 1\n=======\n>>>>>>> REPLACE\n"
    assert apply_edits("x = 1\ny = 2\n", parse_edits(deletion)) == "y = 2\n"
