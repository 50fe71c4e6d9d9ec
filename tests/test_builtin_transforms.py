"""Every built-in transformation preserves semantics on representative KernelBench programs.

Each program is a small KernelBench-style task; each transformation that applies to it is
run against the reference with torch directly: same seeded weights, several seeded inputs,
allclose outputs, inputs left unchanged, and the code must pass the static candidate policy.
The slow ones (torch.compile, the C++ build) live in test_builtin_cpp.py.
"""

from __future__ import annotations

import sys
import types
from itertools import count

import pytest
import torch

from daedalus.sandbox.static import check_candidate
from daedalus.tools.builtin import BY_NAME, reference_as_candidate
from daedalus.tools.builtin.base import float_inputs
from daedalus.tools.builtin.engine import Engine

HEADER = "import math\nimport torch\nimport torch.nn as nn\nimport torch.nn.functional as F\n\n"


def task(init: str, forward: str, inputs: str, init_args: str = "[]", params: str = "x") -> str:
    return (
        HEADER
        + "class Model(nn.Module):\n"
        + f"    def __init__(self, *args):\n        super().__init__()\n{init}\n"
        + f"    def forward(self, {params}):\n{forward}\n\n"
        + f"def get_inputs():\n    return {inputs}\n\n"
        + f"def get_init_inputs():\n    return {init_args}\n"
    )


def body(*lines: str) -> str:
    return "\n".join("        " + line for line in lines)


PROGRAMS: dict[str, str] = {
    "swish_chain": task(
        body("self.scale = 2.0", "self.bias = nn.Parameter(torch.randn(64))"),
        body("x = x * torch.sigmoid(x)", "x = x * self.scale", "x = x + self.bias", "return x"),
        "[torch.randn(32, 64)]",
    ),
    "swish_commuted": task(
        body("self.bias = nn.Parameter(torch.randn(8, 1, 1))"),
        body("y = torch.sigmoid(x) * x", "return self.bias + y * 0.5 / 3.0"),
        "[torch.randn(4, 8, 5, 5)]",
    ),
    "gemm_scale_residual": task(
        body("self.matmul = nn.Linear(16, 24)", "self.scaling_factor = 0.5"),
        body(
            "x = self.matmul(x)",
            "original_x = x.clone().detach()",
            "x = x * self.scaling_factor",
            "x = x + original_x",
            "return x",
        ),
        "[torch.randn(10, 16)]",
    ),
    "conv_relu_bias": task(
        body("self.conv = nn.Conv2d(3, 8, 3)", "self.bias = nn.Parameter(torch.randn(8, 1, 1))"),
        body("x = self.conv(x)", "x = torch.relu(x)", "x = x + self.bias", "return x"),
        "[torch.randn(2, 3, 12, 12)]",
    ),
    "conv_scaled": task(
        body("self.conv = nn.Conv2d(3, 8, 3, padding=1)"),
        body("y = self.conv(x)", "y = y / 4.0", "return torch.clamp(y, min=0)"),
        "[torch.randn(2, 3, 9, 9)]",
    ),
    "layernorm_gelu_erf": task(
        body("self.norm = nn.LayerNorm(32)"),
        body("x = self.norm(x)", "return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))"),
        "[torch.randn(6, 32) * 2]",
    ),
    "layernorm_gelu_module": task(
        body("self.norm = nn.LayerNorm(32)"),
        body("x = self.norm(x)", 'x = F.gelu(x, approximate="tanh")', "return F.gelu(x * 2)"),
        "[torch.randn(6, 32) * 2]",
    ),
    "gelu_tanh_formula": task(
        "        pass",
        body(
            "c = math.sqrt(2.0 / math.pi)",
            "return 0.5 * x * (1 + torch.tanh(c * (x + 0.044715 * torch.pow(x, 3))))",
        ),
        "[torch.randn(64)]",
    ),
    "softmax_manual": task(
        body("self.linear = nn.Linear(12, 20)"),
        body(
            "x = self.linear(x)",
            "e = torch.exp(x - x.max(dim=1, keepdim=True)[0])",
            "return e / e.sum(dim=1, keepdim=True)",
        ),
        "[torch.randn(7, 12)]",
    ),
    "softmax_inline": task(
        "        pass",
        body(
            "y = torch.exp(x) / torch.exp(x).sum(dim=-1, keepdim=True)",
            "return y - torch.logsumexp(y, dim=-1, keepdim=True)",
        ),
        "[torch.randn(5, 9)]",
    ),
    "rms_norm": task(
        body("self.weight = nn.Parameter(torch.randn(16))", "self.eps = 1e-6"),
        body(
            "h = x + residual",
            "variance = h.pow(2).mean(dim=-1, keepdim=True)",
            "h = h * torch.rsqrt(variance + self.eps)",
            "return self.weight * h",
        ),
        "[torch.randn(3, 4, 16), torch.randn(3, 4, 16)]",
        params="x, residual",
    ),
    "manual_linear": task(
        body(
            "self.weight = nn.Parameter(torch.randn(6, 10))",
            "self.bias = nn.Parameter(torch.randn(6))",
        ),
        body(
            "y = torch.matmul(x, self.weight.t()) + self.bias",
            "z = x @ self.weight.T + self.bias",
            "return torch.where(y > 0, y, 0.0) + torch.maximum(z, torch.zeros_like(z))",
        ),
        "[torch.randn(4, 10)]",
    ),
    "identities": task(
        body("self.drop = nn.Dropout(0.0)"),
        body(
            "y = self.drop(x * 1.0) + 0",
            "y = F.dropout(y, p=0.0)",
            "y = y * 2 * 3",
            "y = y ** 2 + y ** 0.5",
            "return (y / 1).contiguous() - 0",
        ),
        "[torch.rand(3, 5) + 0.1]",
    ),
    # Cases where an in-place rewrite would be wrong: the guards must keep the reference.
    "bias_wider_than_activation": task(
        body("self.bias = nn.Parameter(torch.randn(4, 6))"),
        body("x = torch.tanh(x)", "x = x + self.bias", "return x * 3"),
        "[torch.randn(6)]",
    ),
    "integer_input": task(
        "        pass",
        body("y = x * 3", "y = y * 0.5", "y = y + 1", "return torch.relu(y)"),
        "[torch.randint(-5, 5, (4, 4))]",
    ),
    "aliasing_view": task(
        "        pass",
        body(
            "y = torch.sigmoid(x)",
            "z = y.view(-1)",
            "y = y * 2",
            "w = torch.exp(z)",
            "return w + y.sum()",
        ),
        "[torch.randn(3, 4)]",
    ),
    "value_used_later": task(
        "        pass",
        body("a = torch.sigmoid(x)", "b = a * 2", "c = a + b", "return c * a"),
        "[torch.randn(8)]",
    ),
    "input_mutation_bait": task(
        "        pass",
        body("x = x * 1.5", "y = residual + x", "return y, residual * 2"),
        "[torch.randn(5), torch.randn(5)]",
        params="x, residual",
    ),
}

FAST = [n for n, t in BY_NAME.items() if t.cost == 1.0]  # no compiler or C++ build
_modules = count()


def load(code: str) -> types.ModuleType:
    """Import source as a real module (torch.compile and pickling want one in sys.modules)."""
    name = f"_builtin_test_{next(_modules)}"
    module = types.ModuleType(name)
    sys.modules[name] = module
    exec(compile(code, name, "exec"), module.__dict__)
    return module


def outputs(value: object) -> list[torch.Tensor]:
    return list(value) if isinstance(value, tuple | list) else [value]  # type: ignore[list-item]


def assert_equivalent(task_source: str, candidate: str, trials: int = 3) -> None:
    reference = load(task_source)
    new = load(candidate)
    torch.manual_seed(0)
    ref_model = reference.Model(*reference.get_init_inputs())
    torch.manual_seed(0)
    new_model = new.ModelNew(*reference.get_init_inputs())
    earlier: list[tuple[torch.Tensor, torch.Tensor]] = []  # (output, its value when returned)
    for trial in range(trials):
        torch.manual_seed(100 + trial)
        inputs = reference.get_inputs()
        kept = [t.clone() for t in inputs]
        with torch.no_grad():
            expected = outputs(ref_model(*[t.clone() for t in inputs]))
            got = outputs(new_model(*inputs))
        for before, after in zip(kept, inputs, strict=True):
            assert torch.equal(before, after), "the candidate modified its input"
        for output, value in earlier:  # a persistent buffer returned as output would change
            assert torch.equal(output, value), "a later call changed an earlier call's output"
        earlier += [(g, g.clone()) for g in got]
        assert len(got) == len(expected)
        for e, g in zip(expected, got, strict=True):
            assert type(g) is torch.Tensor and g.shape == e.shape and g.dtype == e.dtype
            assert torch.allclose(e, g, atol=1e-5, rtol=1e-4), f"max error {(e - g).abs().max()}"


def applications() -> list[tuple[str, str]]:
    cases = []
    for program, source in PROGRAMS.items():
        engine = Engine(float_inputs(source))
        seed = reference_as_candidate(source)
        for name in FAST:
            if engine.apply(seed, BY_NAME[name]) is not None:
                cases.append((program, name))
    return cases


CASES = applications()


@pytest.mark.parametrize(("program", "name"), CASES, ids=[f"{p}-{n}" for p, n in CASES])
def test_transformation_preserves_semantics(program: str, name: str) -> None:
    source = PROGRAMS[program]
    seed = reference_as_candidate(source)
    applied = Engine(float_inputs(source)).apply(seed, BY_NAME[name])
    assert applied is not None and applied.code != seed
    assert applied.changes and all(c.transform == name for c in applied.changes)
    assert check_candidate(applied.code) == []
    assert "class ModelNew" in applied.code
    assert_equivalent(source, applied.code)


@pytest.mark.parametrize("program", sorted(PROGRAMS))
def test_every_fast_transformation_stacked(program: str) -> None:
    """All fast rewrites applied one after the other still compute the reference."""
    source = PROGRAMS[program]
    engine = Engine(float_inputs(source))
    order = sorted(FAST, key=lambda n: BY_NAME[n].stage)
    code, _, _ = engine.apply_all(reference_as_candidate(source), [BY_NAME[n] for n in order])
    assert check_candidate(code) == []
    assert_equivalent(source, code)


def test_the_catalogue_covers_every_program() -> None:
    """Each representative program is rewritten by at least one fast transformation."""
    covered = {program for program, _ in CASES}
    assert covered == set(PROGRAMS)
    kinds = {name for _, name in CASES}
    assert kinds == set(FAST), f"never applied: {set(FAST) - kinds}"


def rewritten(program: str, name: str) -> str:
    source = PROGRAMS[program]
    applied = Engine(float_inputs(source)).apply(reference_as_candidate(source), BY_NAME[name])
    assert applied is not None, f"{name} should apply to {program}"
    return applied.code


@pytest.mark.parametrize(
    ("program", "name", "expected"),
    [
        ("swish_chain", "silu", "F.silu(x)"),
        ("swish_commuted", "silu", "F.silu(x)"),
        ("layernorm_gelu_erf", "gelu", "F.gelu(x)"),
        ("gelu_tanh_formula", "gelu", "approximate='tanh'"),
        ("softmax_manual", "softmax", "torch.softmax(x, dim=1)"),
        ("softmax_inline", "softmax", "torch.log_softmax("),
        ("manual_linear", "linear", "F.linear(x, self.weight, self.bias)"),
        ("manual_linear", "relu", "torch.relu(y)"),
        ("conv_scaled", "relu", "torch.relu(y)"),
        ("rms_norm", "powers", "h * h"),
        ("swish_commuted", "const_div", "* 0.333"),
        ("identities", "const_fold", "y * 6"),
        ("gemm_scale_residual", "clone", "original_x = x.detach()"),
        ("conv_scaled", "fold_scale", "self._conv_scaled(x, 1.0 / 4.0)"),
        ("conv_relu_bias", "channels_last", "memory_format=torch.channels_last"),
        ("swish_chain", "inplace", "_iadd(x, self.bias)"),
        ("conv_relu_bias", "inplace", "x.relu_()"),
        ("layernorm_gelu_module", "inplace", "torch.ops.aten.gelu_(x, approximate='tanh')"),
        ("rms_norm", "out_buffers", "torch.pow(h, 2, out=self._scratch('t2', h))"),
        ("softmax_inline", "out_buffers", "torch.exp(x, out=self._scratch("),
    ],
)
def test_rewrite_shape(program: str, name: str, expected: str) -> None:
    assert expected in rewritten(program, name)


def test_identity_drops_no_ops() -> None:
    code = rewritten("identities", "identity")
    forward = code.split("def forward", 1)[1]
    for gone in ("* 1.0", "+ 0", "F.dropout", "self.drop(", "/ 1"):
        assert gone not in forward, gone


def forward_of(code: str) -> str:
    return code.split("def forward", 1)[1]


def test_inplace_never_writes_into_inputs_or_parameters() -> None:
    code = forward_of(rewritten("input_mutation_bait", "inplace"))
    assert "_iadd(x, residual)" in code or "_iadd(residual" not in code
    assert "residual.mul_" not in code and "_imul(residual" not in code


def test_inplace_respects_later_reads_and_views() -> None:
    aliasing = forward_of(rewritten("aliasing_view", "inplace"))
    assert "_imul(y, 2)" not in aliasing  # y is viewed by z, which is read afterwards
    later = forward_of(rewritten("value_used_later", "inplace"))
    assert "_imul(a," not in later and "_iadd(a," not in later  # a is read again


def test_float_inputs_read_from_get_inputs() -> None:
    assert float_inputs(PROGRAMS["rms_norm"]) == (True, True)
    assert float_inputs(PROGRAMS["integer_input"]) == (False,)


def test_seed_renames_the_reference_and_drops_harness_functions() -> None:
    seed = reference_as_candidate(PROGRAMS["rms_norm"])
    assert "class ModelNew" in seed and "class Model(" not in seed
    assert "def get_inputs" not in seed and "def get_init_inputs" not in seed
    assert_equivalent(PROGRAMS["rms_norm"], seed)


def test_seed_keeps_constants_the_model_uses() -> None:
    source = task(
        "        self.width = WIDTH", body("return x * self.width + OFFSET"), "[torch.randn(SIZE)]"
    ).replace(HEADER, HEADER + "WIDTH = 3\nOFFSET = 0.5\nSIZE = 7\n")
    seed = reference_as_candidate(source)
    assert "WIDTH = 3" in seed and "OFFSET = 0.5" in seed and "SIZE" not in seed
    assert_equivalent(source, seed)
