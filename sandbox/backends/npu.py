"""The NPU backend: Huawei Ascend NPUs through ``torch_npu`` (device ``npu``).

Candidates are either plain PyTorch running on the NPU or AscendC custom operators in
MultiKernelBench's format (see ``ascendc``), built per candidate in its work directory.
Correctness is the CPU backend's protocol and timing the accelerator one (NPU events,
device-wide synchronisation, an L2 flush larger than the 910B's 192 MB, warm-up).
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

from daedalus.sandbox.backends import ascendc, detect
from daedalus.sandbox.backends.base import BackendUnavailable
from daedalus.sandbox.backends.device import AcceleratorBackend

ASCEND_L2_BYTES = 192 * 1024 * 1024  # Ascend 910B; torch_npu does not report it


def _torch_npu() -> Any:
    try:
        import torch_npu
    except ImportError as exc:
        raise BackendUnavailable(detect.npu_problem() or f"torch_npu failed to import: {exc}"
                                 ) from None  # fmt: skip
    return torch_npu


class NpuBackend(AcceleratorBackend):
    name = "npu"
    device_type = "npu"

    def available(self) -> bool:
        if detect.npu_problem() is not None:
            return False
        return bool(_torch_npu().npu.is_available())

    def synchronize(self) -> None:
        _torch_npu().npu.synchronize()

    def event(self) -> Any:
        return _torch_npu().npu.Event(enable_timing=True)

    def l2_bytes(self) -> int:
        return ASCEND_L2_BYTES

    def compile(self, code: str, workdir: Path) -> ModuleType:
        sources = ascendc.extract(code)
        if sources is None:
            return super().compile(code, workdir)
        ascendc.build(sources, workdir)
        return super().compile(sources["model_src"], workdir)

    def fingerprint(self) -> dict[str, str]:
        found = {**super().fingerprint(), **detect.ascend_fingerprint()}
        found.update(backend=self.name, device=found.get("npu", "none"))
        return found
