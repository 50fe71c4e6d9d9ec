"""The compiling transformations: the generated C++ loop and torch.compile, run for real.

One C++ build (about 25-60 s on two busy cores; torch caches it by source afterwards) is
exercised on every layout the runtime harness handles: contiguous, transposed, broadcast
over extra leading dimensions, and the fallbacks (float64, autograd) that must give exactly
the reference semantics.
"""

from __future__ import annotations

import pytest
import torch

from daedalus.sandbox.static import check_candidate
from daedalus.tools.builtin import BY_NAME, reference_as_candidate
from daedalus.tools.builtin.base import float_inputs
from daedalus.tools.builtin.engine import Engine
from tests.test_builtin_transforms import PROGRAMS, assert_equivalent, body, load, task

pytestmark = pytest.mark.slow

CHAIN = task(
    "\n".join(["        self.scale = 1.5", "        self.bias = nn.Parameter(torch.randn(24))"]),
    body(
        "y = x * torch.sigmoid(x)",
        "y = y * self.scale + self.bias",
        "y = torch.clamp(y, -2.0, 2.0)",
        "y = F.gelu(y) - torch.tanh(y) / 3.0 + F.leaky_relu(y, 0.2) * y ** 2",
        "return torch.relu(y) + F.softplus(-y)",
    ),
    "[torch.randn(16, 24)]",
)


def test_cpp_fuse_matches_the_reference_on_every_layout() -> None:
    applied = Engine(float_inputs(CHAIN)).apply(reference_as_candidate(CHAIN), BY_NAME["cpp_fuse"])
    assert applied is not None
    code = applied.code
    assert "load_inline(" in code and "def forward" in code
    assert check_candidate(code) == []
    assert "if _fused_ok(" in code and "else:" in code  # the reference path stays as fallback
    assert_equivalent(CHAIN, code)  # builds the extension

    reference, candidate = load(CHAIN), load(code)
    torch.manual_seed(0)
    ref = reference.Model()
    torch.manual_seed(0)
    new = candidate.ModelNew()
    cases = {
        "transposed": torch.randn(24, 16).t(),
        "leading dims": torch.randn(3, 5, 24),
        "row broadcast": torch.randn(1, 24).expand(7, 24),
        "float64 fallback": torch.randn(4, 24, dtype=torch.float64),
        "single row": torch.randn(24),
    }
    with torch.no_grad():
        for name, x in cases.items():
            expected, got = ref(x.clone()), new(x)
            assert got.dtype == expected.dtype, name
            assert torch.allclose(expected, got, atol=1e-5, rtol=1e-4), name
    x = torch.randn(5, 24, requires_grad=True)  # autograd: the fallback keeps gradients
    new(x).sum().backward()
    assert x.grad is not None


def test_cpp_fuse_fuses_only_dead_intermediates() -> None:
    source = task(
        "        pass",
        body("a = torch.sigmoid(x)", "b = a * 2.0 + 1.0", "return b * a, a"),
        "[torch.randn(8)]",
    )
    applied = Engine(float_inputs(source)).apply(
        reference_as_candidate(source), BY_NAME["cpp_fuse"]
    )
    # `a` is read again after the chain, so it stays a Python value and feeds the kernel
    assert applied is not None and applied.changes[0].where == "forward, statements 2-2"
    forward = applied.code.split("def forward", 1)[1]
    assert forward.index("a = torch.sigmoid(x)") < forward.index("if _fused_ok(a)")


def test_torch_compile_wraps_forward_and_keeps_results() -> None:
    source = PROGRAMS["swish_chain"]
    engine = Engine(float_inputs(source))
    applied = engine.apply(reference_as_candidate(source), BY_NAME["torch_compile"])
    assert applied is not None and "torch.compile(self.forward_eager" in applied.code
    assert check_candidate(applied.code) == []
    # later rewrites still reach the eager body behind the compiled forward
    stacked = engine.apply(applied.code, BY_NAME["inplace"])
    assert stacked is not None and "_iadd(x, self.bias)" in stacked.code
    assert_equivalent(source, stacked.code, trials=2)


ROWS = task(
    "\n".join(
        [
            "        self.eps = 1e-6",
            "        self.weight = nn.Parameter(torch.randn(32))",
            "        self.norm = nn.LayerNorm(32)",
        ]
    ),
    body(
        "h = x + residual",
        "v = (h * h).mean(dim=-1, keepdim=True)",
        "h = h * torch.rsqrt(v + self.eps)",
        "h = self.norm(h * self.weight)",
        "h = F.gelu(h)",
        "return torch.softmax(h, dim=-1) + h.sum(-1, keepdim=True) * 0.01",
    ),
    "[torch.randn(4, 6, 32), torch.randn(4, 6, 32)]",
    params="x, residual",
)


def test_cpp_rowfuse_matches_the_reference_on_every_layout() -> None:
    applied = Engine(float_inputs(ROWS)).apply(reference_as_candidate(ROWS), BY_NAME["cpp_rowfuse"])
    assert applied is not None and "statements 1-6" in applied.changes[0].where
    assert "row reductions" in applied.changes[0].detail
    assert check_candidate(applied.code) == []
    assert "len(self.norm.normalized_shape) == 1" in applied.code  # LayerNorm over one dim
    assert_equivalent(ROWS, applied.code)  # builds the extension

    reference, candidate = load(ROWS), load(applied.code)
    torch.manual_seed(0)
    ref = reference.Model()
    torch.manual_seed(0)
    new = candidate.ModelNew()
    cases = {
        "transposed rows": (torch.randn(32, 5).t(), torch.randn(5, 32)),
        "broadcast residual": (torch.randn(3, 7, 32), torch.randn(32)),
        "single row": (torch.randn(32), torch.randn(32)),
    }
    with torch.no_grad():
        for name, (x, residual) in cases.items():
            expected, got = ref(x.clone(), residual.clone()), new(x, residual)
            assert got.shape == expected.shape and got.dtype == expected.dtype, name
            assert torch.allclose(expected, got, atol=1e-5, rtol=1e-4), name
    x, residual = torch.randn(3, 32, requires_grad=True), torch.randn(3, 32)
    got = new(x, residual)  # autograd: the Python fallback, with gradients
    assert torch.allclose(ref(x, residual), got, atol=1e-5, rtol=1e-4)
    got.sum().backward()
    assert x.grad is not None
