"""The accelerator backends on a machine without a GPU or NPU: detection, clear refusals,
fingerprints, Triton through the interpreter, and AscendC project generation."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from daedalus.sandbox import Evaluator, Limits, Status
from daedalus.sandbox.backends import (
    BackendUnavailable,
    CandidateFailure,
    backend_names,
    check_backend_name,
    detect,
    fingerprints,
)
from daedalus.sandbox.backends import ascendc as A
from daedalus.tasks import Task, load_task

HERE = Path(__file__).parent / "candidates"
NO_GPU = detect.cuda_problem() is not None
NO_NPU = detect.npu_problem() is not None
LIMITS = Limits(timeout_s=60, memory_mb=4096, timing_budget_s=0.2, trials=2)


@pytest.fixture(scope="module")
def task() -> Task:
    return load_task(str(HERE / "task_swish.py"), {"batch_size": 8, "dim": 1024})


@pytest.fixture(scope="module")
def triton_evaluator() -> Iterator[Evaluator]:
    with Evaluator(sandbox="process", backend="triton", limits=LIMITS) as ev:
        yield ev


def test_torch_build_is_read_without_importing_it() -> None:
    build = detect.torch_build()
    assert build["version"] == torch.__version__
    assert build["cuda"] == torch.version.cuda


@pytest.mark.skipif(not NO_GPU, reason="this machine has a usable GPU")
def test_cuda_refuses_clearly_without_a_gpu() -> None:
    problem = detect.cuda_problem()
    assert problem is not None and "no NVIDIA GPU" in problem and "check-cuda" in problem
    with pytest.raises(BackendUnavailable, match="backend 'cuda' cannot run here: no NVIDIA"):
        check_backend_name("cuda")
    with pytest.raises(BackendUnavailable, match="no NVIDIA GPU"):
        Evaluator(backend="cuda")
    assert "cuda" not in fingerprints()


@pytest.mark.skipif(not NO_NPU, reason="this machine has an Ascend NPU")
def test_npu_refuses_clearly_without_an_npu() -> None:
    problem = detect.npu_problem()
    assert problem is not None and "/dev/davinci0" in problem and "npu-smi" in problem
    with pytest.raises(BackendUnavailable, match="backend 'npu' cannot run here"):
        Evaluator(backend="npu")
    assert "npu" not in fingerprints()


def test_backend_names_and_auto() -> None:
    assert backend_names() == ["cpu", "cuda", "npu", "triton"]
    expected = "cuda" if not NO_GPU else ("npu" if not NO_NPU else "cpu")
    assert check_backend_name("auto") == expected == detect.best_backend()
    with pytest.raises(BackendUnavailable, match="unknown backend 'tpu'; choose one of"):
        check_backend_name("tpu")


def test_fingerprints_name_hardware_and_toolchain() -> None:
    found = fingerprints()
    cpu = found["cpu"]
    for key in ("cpu_model", "cores", "torch", "python", "compiler", "os"):
        assert cpu[key], key
    triton = found["triton"]
    assert triton["triton"] != "not installed"
    if NO_GPU:
        assert "timing unavailable" in triton["triton_mode"]
    gpu = detect.cuda_fingerprint()
    assert set(gpu) >= {"gpu", "driver", "cuda_torch", "nvcc", "triton"}
    assert gpu["nvcc"][0].isdigit() or gpu["nvcc"] == "not found"
    npu = detect.ascend_fingerprint()
    assert set(npu) >= {"npu", "driver", "cann", "torch_npu"}


@pytest.mark.skipif(not NO_GPU, reason="on a GPU Triton candidates are timed for real")
def test_triton_without_gpu_checks_correctness_and_says_timing_is_unavailable(
    task: Task, triton_evaluator: Evaluator,
) -> None:
    result = triton_evaluator.evaluate(task, (HERE / "swish_triton.py").read_text())
    assert result.status is Status.OK, (result.stage, result.error)
    assert result.correct and result.speedup is None and result.score == 0.0
    assert "timing_not_meaningful_on_cpu" in result.flags
    assert result.metrics["timing_meaningful"] == 0.0
    assert "interpreter" in result.fingerprint["triton_mode"]
    wrong = (HERE / "swish_triton.py").read_text().replace("* scale + b", "* scale - b")
    bad = triton_evaluator.evaluate(task, wrong)
    assert bad.status is Status.INCORRECT, (bad.stage, bad.error)


@pytest.mark.skipif(not NO_GPU, reason="on a GPU the triton backend times on the GPU")
def test_plain_torch_on_the_triton_backend_is_flagged_as_cpu_timed(
    task: Task, triton_evaluator: Evaluator,
) -> None:
    result = triton_evaluator.evaluate(task, (HERE / "good_fused.py").read_text())
    assert result.status is Status.OK and result.speedup is not None, result.error
    assert "timed_on_cpu_not_gpu" in result.flags


# --- AscendC ---------------------------------------------------------------------------

ASCENDC = {
    "project_json_src": json.dumps([{"op": "SwishScaleCustom", "language": "cpp",
                                     "input_desc": [], "output_desc": []}]),
    "host_tiling_src": "// tiling\n",
    "host_operator_src": "// host\n",
    "kernel_src": "// kernel\n",
    "python_bind_src": '#include "pytorch_npu_helper.hpp"\n',
    "model_src": "import custom_ops_lib\nclass ModelNew: pass\n",
}
CANDIDATE = "\n".join(f"{k} = {v!r}" for k, v in ASCENDC.items())


def test_ascendc_sources_are_read_without_running_the_candidate() -> None:
    assert A.extract(CANDIDATE) == ASCENDC
    assert A.extract("import torch\nkernel_src = 'x'\n") is None
    assert A.snake("SwishScaleCustom") == "swish_scale_custom"


def test_ascendc_build_plan_matches_msopgen_layout(tmp_path: Path) -> None:
    plan = A.plan(ASCENDC, tmp_path, "Ascend910B2")
    assert plan.op == "SwishScaleCustom"
    project = tmp_path / "SwishScaleCustom"
    assert plan.files[project / "op_host" / "swish_scale_custom_tiling.h"] == "// tiling\n"
    assert plan.files[project / "op_host" / "swish_scale_custom.cpp"] == "// host\n"
    assert plan.files[project / "op_kernel" / "swish_scale_custom.cpp"] == "// kernel\n"
    assert plan.files[tmp_path / "pybind" / "op.cpp"].startswith("#include")
    (cwd0, gen), (cwd1, build), (cwd2, install) = plan.commands
    assert cwd0 == tmp_path and gen[:2] == ["msopgen", "gen"]
    assert gen[gen.index("-c") + 1] == "ai_core-Ascend910B2" and gen[-1] == "SwishScaleCustom"
    assert cwd1 == project and build == ["bash", "build.sh"]
    assert cwd2 == project / "build_out" and f"--install-path={tmp_path / 'opp'}" in install[-1]
    assert plan.vendor == tmp_path / "opp" / "vendors" / "customize"


def test_ascendc_candidate_errors_are_compile_errors(tmp_path: Path) -> None:
    with pytest.raises(CandidateFailure, match="JSON list") as err:
        A.plan({**ASCENDC, "project_json_src": "{not json"}, tmp_path, "Ascend910B2")
    assert err.value.status is Status.COMPILE_ERROR
    with pytest.raises(CandidateFailure, match="CamelCase"):
        A.plan({**ASCENDC, "project_json_src": '[{"op": "rm -rf /"}]'}, tmp_path, "X")


@pytest.mark.skipif(not NO_NPU, reason="this machine has CANN")
def test_ascendc_build_without_cann_names_what_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(BackendUnavailable, match="msopgen is not on PATH"):
        A.build(ASCENDC, tmp_path)
    monkeypatch.delenv("DAEDALUS_ASCEND_HELPER_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(BackendUnavailable, match="DAEDALUS_ASCEND_HELPER_DIR"):
        A.helper_dir()
    monkeypatch.setenv("DAEDALUS_ASCEND_SOC", "Ascend910B3")
    assert A.default_soc() == "Ascend910B3"
