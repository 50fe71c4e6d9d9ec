"""CUDA candidates checked with the real nvcc on a machine without a GPU."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from daedalus.agent.cli import app
from daedalus.sandbox.backends import nvcc

needs_nvcc = pytest.mark.skipif(nvcc.find_nvcc() is None, reason="nvcc is not installed")

KERNEL = r"""
__global__ void scale_kernel(float* x, int n, float s) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) x[i] *= s;
}
extern "C" void scale(float* x, int n, float s) {
    scale_kernel<<<(n + 255) / 256, 256>>>(x, n, s);
}
"""

CANDIDATE = '''
import textwrap
import torch
from torch.utils.cpp_extension import load_inline

HEADER = "// scale kernel\\n"
BODY = """KERNEL"""
SOURCE = HEADER + BODY
CPP = "void scale(float* x, int n, float s);"

ext = load_inline(name="scale_ext", cpp_sources=[CPP], cuda_sources=[SOURCE],
                  functions=["scale"], extra_cuda_cflags=["-O3", "--use_fast_math",
                  "-Xcompiler", "-fplugin=/tmp/evil.so"], no_implicit_headers=True)
second = load_inline("second", CPP, textwrap.dedent(f"""
    {BODY}
"""), no_implicit_headers=True)
dynamic = load_inline("dyn", CPP, cuda_sources=open("kernel.cu").read())
cpu_only = load_inline("cpu", CPP)


class ModelNew(torch.nn.Module):
    def forward(self, x):
        return x
'''.replace("KERNEL", KERNEL)


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DAEDALUS_CACHE_DIR", str(tmp_path / "cache"))


def test_sources_are_extracted_statically() -> None:
    extensions, notes = nvcc.extract_extensions(CANDIDATE)
    assert [e.name for e in extensions] == ["scale_ext", "second"]
    first, second = extensions
    assert first.cuda_sources == ["// scale kernel\n" + KERNEL]
    assert first.cpp_sources == ["void scale(float* x, int n, float s);"]
    assert first.extra_cuda_cflags[:2] == ["-O3", "--use_fast_math"]
    assert not first.implicit_headers
    assert "scale_kernel" in second.cuda_sources[0]
    assert len(notes) == 1 and "computed at run time" in notes[0]  # open(...).read()


def test_unsafe_includes_and_flags_are_refused() -> None:
    assert nvcc.unsafe_includes('#include "/etc/passwd"\n#include <cuda.h>\n') == ["/etc/passwd"]
    assert nvcc.unsafe_includes('#  include "../../secret.h"') == ["../../secret.h"]
    assert nvcc.unsafe_includes('#include "helper.cuh"\n#include <torch/extension.h>') == []
    kept, dropped = nvcc.split_flags(["-O3", "--use_fast_math", "-DBLOCK=256", "-arch=sm_90",
                                      "-Xcompiler", "-fplugin=/tmp/evil.so", "-o/etc/x"])
    assert kept == ["-O3", "--use_fast_math", "-DBLOCK=256", "-arch=sm_90"]
    assert dropped == ["-Xcompiler", "-fplugin=/tmp/evil.so", "-o/etc/x"]
    leak = nvcc.CudaExtension("x", ['#include "/etc/hostname"\n' + KERNEL])
    result = nvcc.compile_check(leak)
    assert not result.ok and "rejected #include of /etc/hostname" in result.log


@needs_nvcc
def test_nvcc_compiles_a_good_kernel_and_caches_it() -> None:
    ext = nvcc.CudaExtension("good", [KERNEL], implicit_headers=False)
    first = nvcc.compile_check(ext)
    assert first.ok, first.log
    assert "-arch=sm_80" in first.command and "-std=c++20" in first.command
    assert "--expt-relaxed-constexpr" in first.command
    again = nvcc.compile_check(ext)
    assert again.ok and again.cached and again.seconds == 0.0


@needs_nvcc
def test_nvcc_errors_come_back_as_the_compile_log() -> None:
    broken = nvcc.CudaExtension("bad", [KERNEL.replace("x[i] *= s", "x[i] *= undefined_s")],
                                implicit_headers=False)  # fmt: skip
    result = nvcc.compile_check(broken)
    assert not result.ok
    assert 'identifier "undefined_s" is undefined' in result.log
    assert "/tmp/daedalus-nvcc" not in result.log  # no host temp paths in the feedback


@needs_nvcc
def test_precheck_and_the_cli(tmp_path: Path) -> None:
    assert nvcc.precheck("import torch\nclass ModelNew: pass\n") is None
    good = CANDIDATE.replace('cuda_sources=open("kernel.cu").read()', 'cuda_sources=None')
    assert nvcc.precheck(good) is None
    bad = good.replace("x[i] *= s", "x[i] *= nope")
    report = nvcc.precheck(bad)
    assert report is not None and "before any GPU ran them" in report and "nope" in report
    path = tmp_path / "cand.py"
    path.write_text(bad)
    result = CliRunner().invoke(app, ["sandbox", "check-cuda", str(path)])
    assert result.exit_code == 1 and "FAILED" in result.output
    path.write_text(good)
    result = CliRunner().invoke(app, ["sandbox", "check-cuda", str(path)])
    assert result.exit_code == 0 and "scale_ext (line" in result.output, result.output
    assert "dropped unsupported nvcc flags: -Xcompiler -fplugin=/tmp/evil.so" in result.output


@needs_nvcc
@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("DAEDALUS_SLOW_TESTS") != "1",
                    reason="compiling torch's headers with nvcc takes 1-2 minutes; "
                    "set DAEDALUS_SLOW_TESTS=1")  # fmt: skip
def test_kernelbench_style_candidate_compiles_with_torch_headers() -> None:
    source = (
        "#include <torch/extension.h>\n" + KERNEL +
        "torch::Tensor twice(torch::Tensor x) { auto y = x.clone();"
        " scale(y.data_ptr<float>(), y.numel(), 2.0f); return y; }\n"
    )  # fmt: skip
    result = nvcc.compile_check(nvcc.CudaExtension("kb", [source]), timeout_s=600)
    assert result.ok, result.log
