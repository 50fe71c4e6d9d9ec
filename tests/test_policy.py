"""The static candidate policy and the normalised code hash: pure functions, no execution."""

from __future__ import annotations

from pathlib import Path

import pytest

from daedalus.sandbox.static import check_candidate, needs_build, normalized_hash, uses_module

CANDIDATES = Path(__file__).parent / "candidates"

NORMAL = '''
import math
import functools
import itertools
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


@functools.lru_cache(maxsize=None)
def _scale(n: int) -> float:
    return 1.0 / math.sqrt(n)


class ModelNew(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(dim, dim))
        setattr(self, "extra", nn.Identity())
        self.register_buffer("table", torch.from_numpy(np.arange(dim, dtype=np.float32)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.gelu(x @ self.weight) * _scale(x.shape[-1])
        for a, b in itertools.pairwise(range(3)):
            y = y + a * b
        return getattr(self, "extra")(y).contiguous()
'''


def rules(code: str) -> set[str]:
    return {v.rule for v in check_candidate(code)}


def test_normal_kernel_code_passes() -> None:
    assert check_candidate(NORMAL) == []


@pytest.mark.parametrize("name", ["good_fused", "swish_triton", "swish_cpp", "swish_compile",
                                  "swish_renamed", "fast_precision"])
def test_sample_candidates_pass(name: str) -> None:
    assert check_candidate((CANDIDATES / f"{name}.py").read_text()) == []


@pytest.mark.parametrize(
    ("snippet", "rule"),
    [
        ("import threading", "threads"),
        ("from concurrent.futures import ThreadPoolExecutor", "threads"),
        ("import torch.multiprocessing as mp", "threads"),
        ("import torch\ntorch.set_num_threads(8)", "threads"),
        ("import subprocess", "subprocess"),
        ("import os", "file-access"),
        ("from pathlib import Path", "file-access"),
        ("import shutil", "file-access"),
        ("x = open('/etc/passwd').read()", "file-access"),
        ("import torch\ntorch.save({}, 'w.pt')", "file-access"),
        ("import numpy as np\nnp.save('a.npy', np.zeros(3))", "file-access"),
        ("def f(t):\n    t.numpy().tofile('/tmp/x')", "file-access"),
        ("from torch.utils.cpp_extension import load\nload('x', ['x.cpp'])", "file-access"),
        ("import socket", "network"),
        ("import urllib.request", "network"),
        ("import torch.distributed as dist", "network"),
        ("import ctypes", "ctypes"),
        ("import gc", "introspection"),
        ("import inspect", "introspection"),
        ("import sys\nf = sys._getframe(1)", "introspection"),
        ("def f():\n    return globals()", "introspection"),
        ("exec('1')", "dynamic-code"),
        ("eval('1')", "dynamic-code"),
        ("compile('1', 'x', 'eval')", "dynamic-code"),
        ("__import__('os')", "dynamic-code"),
        ("import importlib", "dynamic-code"),
        ("X = type('X', (object,), {})", "dynamic-code"),
        ("import signal", "process-control"),
        ("x = ().__class__.__bases__[0].__subclasses__()", "dunder-escape"),
        ("def f(g):\n    return g.__globals__", "dunder-escape"),
        ("b = __builtins__", "dunder-escape"),
        ("def f(fn):\n    return getattr(fn, '__globals__')", "dunder-escape"),
        ("def f(fr):\n    return fr.f_back.f_locals", "dunder-escape"),
        ("import torch\ntorch.allclose = lambda *a, **k: True", "monkeypatch"),
        ("import torch\ntorch.Tensor.add = None", "monkeypatch"),
        ("import torch.nn.functional as F\nF.relu = F.gelu", "monkeypatch"),
        ("import torch\nsetattr(torch, 'allclose', None)", "monkeypatch"),
        ("import torch\nnn = torch.nn\nnn.Module.__call__ = None", "monkeypatch"),
        ("import torch\ndel torch.isclose", "monkeypatch"),
        ("import torch.library", "monkeypatch"),
        ("import torch\nlib = torch.library.Library('aten', 'IMPL')", "monkeypatch"),
        ("import time\ntime.perf_counter = lambda: 0.0", "monkeypatch"),
        ("import time", "import"),
        ("import requests_html", "import"),
        ("from . import helper", "import"),
        ("from torch import *", "import"),
        ("import torch\nclass T(torch.Tensor):\n    pass", "tensor-subclass"),
        ("from torch import Tensor\nclass T(Tensor):\n    pass", "tensor-subclass"),
        ("class M:\n    def __torch_function__(self, *a):\n        pass", "tensor-subclass"),
        ("from torch.utils._python_dispatch import TorchDispatchMode", "tensor-subclass"),
        ("import torch\nm = torch.overrides.TorchFunctionMode", "tensor-subclass"),
        ("import torch\ny = torch.Tensor._make_subclass(torch.Tensor, torch.ones(1))", "tensor-subclass"),
        ("x = (", "syntax"),
    ],
)
def test_each_rule_is_named(snippet: str, rule: str) -> None:
    violations = check_candidate(snippet)
    assert rule in {v.rule for v in violations}, violations
    assert all(v.message and v.line >= 0 for v in violations)


def test_violation_names_rule_line_and_fix() -> None:
    (violation,) = check_candidate("import torch\n\nimport socket\n")
    assert violation.rule == "network" and violation.line == 3
    text = str(violation)
    assert "line 3" in text and "[network]" in text and "socket" in text and "remove" in text


def test_cpp_sources_are_scanned_when_load_inline_is_used() -> None:
    base = (CANDIDATES / "swish_cpp.py").read_text()
    for bad in ('system("rm -rf /");', "#include <fstream>", "std::thread t;",
                "FILE* f = fopen(\"/x\", \"w\");", "PyRun_SimpleString(\"1\");",
                '#include "/etc/passwd"'):
        code = base.replace("#include <cmath>", "#include <cmath>\n" + bad)
        assert "cpp-unsafe" in rules(code), bad
    openmp = base.replace("for (int64_t i", "#pragma omp parallel for\n    for (int64_t i")
    assert check_candidate(openmp) == []


def test_load_inline_build_directory_is_refused() -> None:
    code = ("from torch.utils.cpp_extension import load_inline\n"
            "m = load_inline(name='x', cpp_sources='', build_directory='/tmp/x')\n")
    assert "file-access" in rules(code)


def test_self_attributes_and_local_names_are_not_monkeypatching() -> None:
    code = ("import torch\n\nclass ModelNew(torch.nn.Module):\n"
            "    def forward(self, x):\n        torch_out = x\n        self.cache = torch_out\n"
            "        out = {}\n        out['a'] = x\n        return out['a']\n")
    assert check_candidate(code) == []


def test_needs_build_and_uses_module() -> None:
    assert needs_build((CANDIDATES / "swish_cpp.py").read_text())
    assert needs_build((CANDIDATES / "swish_compile.py").read_text())
    assert needs_build((CANDIDATES / "swish_triton.py").read_text())
    assert not needs_build((CANDIDATES / "good_fused.py").read_text())
    assert uses_module("import triton.language as tl", "triton")
    assert uses_module("from triton import jit", "triton")
    assert not uses_module("import tritonish", "triton")


ORIGINAL = '''
import torch
import torch.nn as nn


class ModelNew(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.w = nn.Parameter(torch.randn(dim))

    def forward(self, x):
        y = torch.relu(x) * self.w
        return y.sum(dim=-1)
'''

COSMETIC = '''
"""A docstring that changes nothing."""
import torch
from torch import nn  # an alias spelled differently


class ModelNew(nn.Module):
    """Docstring."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.randn(size))

    def forward(self, inp: torch.Tensor) -> torch.Tensor:
        # a comment
        hidden = torch.relu(inp) * self.w
        return hidden.sum(
            dim=-1,
        )
'''


def test_normalized_hash_ignores_presentation() -> None:
    assert normalized_hash(ORIGINAL) == normalized_hash(COSMETIC)
    assert len(normalized_hash(ORIGINAL)) == 64


@pytest.mark.parametrize(
    "change",
    [
        ("torch.relu", "torch.sigmoid"),  # a different op
        ("dim=-1", "dim=0"),  # a different constant
        ("self.w", "self.v"),  # a different attribute (state dict key)
        ("class ModelNew", "class ModelOther"),  # the interface name matters
    ],
)
def test_normalized_hash_sees_real_changes(change: tuple[str, str]) -> None:
    assert normalized_hash(ORIGINAL) != normalized_hash(ORIGINAL.replace(*change))


def test_normalized_hash_of_unparsable_code_is_stable() -> None:
    broken = "def f(:\n    return 1  # oops\n"
    assert normalized_hash(broken) == normalized_hash("\n" + broken + "\n\n")
    assert normalized_hash(broken) != normalized_hash("def f(:\n    return 2\n")
