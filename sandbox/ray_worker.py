"""The passive evaluation worker on a Ray node, and how a node joins the cluster.

In LLM-Agent-UMF terms the worker is a *passive* core-agent: it runs the sandbox and the
backend on whatever it is handed and decides nothing, so it imports only ``sandbox`` and
``tasks`` (never planning, memory or the LLM gateway; a test checks it by import
inspection). Ray itself is imported lazily, so this module loads without it.

One ``EvaluationWorker`` is one Ray actor holding one warm ``Evaluator`` (a fork server,
or a warm container pool with ``--sandbox docker``) for the actor's lifetime, so a
candidate costs a fork on an already-imported torch, not an interpreter start.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterable
from typing import Any

from daedalus.sandbox.evaluator import Evaluator
from daedalus.sandbox.result import EvaluationResult, Limits
from daedalus.tasks.model import Task

# Ray's own name for Ascend NPUs (it detects them itself where torch_npu is installed).
NPU_RESOURCE = "NPU"
# Advertised by `daedalus worker start --sandbox docker` on nodes whose Docker engine and
# sandbox image were checked; a run with --sandbox docker asks for a sliver of it, so its
# workers land only there. The count is large so that it never limits concurrency.
DOCKER_RESOURCE = "daedalus_docker"
DOCKER_RESOURCE_UNITS = 10_000
DOCKER_RESOURCE_SLIVER = 0.001
# Backends that need a GPU (triton also runs on CPU nodes, in the interpreter).
GPU_BACKENDS = frozenset({"cuda"})


def actor_resources(*, backend: str, sandbox: str, threads: int, gpus_in_cluster: bool) -> dict[str, Any]:
    """Ray actor options that place a worker where ``backend`` and ``sandbox`` can run."""
    options: dict[str, Any] = {"num_cpus": threads, "num_gpus": 0, "resources": {}}
    if backend in GPU_BACKENDS or (backend == "triton" and gpus_in_cluster):
        options["num_gpus"] = 1
    if backend == "npu":
        options["resources"][NPU_RESOURCE] = 1
    if sandbox == "docker":
        options["resources"][DOCKER_RESOURCE] = DOCKER_RESOURCE_SLIVER
    return options


def node_identity() -> dict[str, str]:
    """Which node and process this worker is: recorded with every result it returns."""
    import ray

    ctx = ray.get_runtime_context()
    return {
        "executor": "ray",
        "node_id": ctx.get_node_id(),
        "node_ip": ray.util.get_node_ip_address(),
        "host": socket.gethostname(),
        "pid": str(os.getpid()),
    }


def assigned_devices() -> dict[str, str]:
    """The GPUs/NPUs Ray gave this actor, as the Docker sandbox's device selection (the
    process sandbox needs nothing: Ray's CUDA_/ASCEND_ visibility variables reach it)."""
    import ray

    ids = ray.get_runtime_context().get_accelerator_ids()
    options: dict[str, str] = {}
    if ids.get("GPU"):
        options["gpus"] = "device=" + ",".join(ids["GPU"])
    if ids.get(NPU_RESOURCE):
        options["npus"] = "device=" + ",".join(ids[NPU_RESOURCE])
    return options


class EvaluationWorker:
    """One warm evaluator on one Ray node; Ray makes it an actor (``ray.remote(...)``)."""

    def __init__(self, sandbox: str, backend: str, limits: dict[str, Any]) -> None:
        options = assigned_devices() if sandbox == "docker" else {}
        self._evaluator = Evaluator(sandbox=sandbox, backend=backend, limits=Limits(**limits), **options)
        self._evaluator.__enter__()
        self.identity = node_identity()

    def ready(self) -> dict[str, str]:
        """Answers once the evaluator is warm; the driver waits on it before sending work."""
        return self.identity

    def evaluate(self, task: Task, code: str, known: Iterable[str]) -> EvaluationResult:
        result = self._evaluator.evaluate(task, code, known_functional=known)
        # Where it ran goes into the archive (artifacts are stored; isolation is not).
        result.artifacts["worker"] = dict(self.identity)
        result.isolation["ray_node_id"] = self.identity["node_id"]
        return result

    def close(self) -> bool:
        self._evaluator.close()
        return True


def start_command(
    *,
    ray: str,
    address: str | None,
    head: bool,
    port: int,
    node_ip: str | None,
    num_cpus: int | None,
    num_gpus: int | None,
    num_npus: int | None,
    sandbox: str,
    block: bool,
    temp_dir: str | None = None,
    system_config: dict[str, Any] | None = None,
) -> list[str]:
    """The ``ray start`` command line that joins (or, with ``head``, founds) a cluster with
    the resources Daedalus workers ask for. Usage stats and the dashboard stay off."""
    if head == (address is not None):
        raise ValueError("give either --head (start a new cluster) or --address HOST:PORT (join one)")
    cmd = [ray, "start", "--disable-usage-stats"]
    if head:
        cmd += ["--head", f"--port={port}", "--include-dashboard=false"]
        if system_config:
            cmd.append(f"--system-config={json.dumps(system_config, sort_keys=True)}")
    else:
        cmd.append(f"--address={address}")
    if node_ip:
        cmd.append(f"--node-ip-address={node_ip}")
    if num_cpus is not None:
        cmd.append(f"--num-cpus={num_cpus}")
    if num_gpus is not None:
        cmd.append(f"--num-gpus={num_gpus}")
    resources: dict[str, float] = {}
    if num_npus:
        resources[NPU_RESOURCE] = num_npus
    if sandbox == "docker":
        resources[DOCKER_RESOURCE] = DOCKER_RESOURCE_UNITS
    if resources:
        cmd.append(f"--resources={json.dumps(resources, sort_keys=True)}")
    if temp_dir:
        cmd.append(f"--temp-dir={temp_dir}")
    if block:
        cmd.append("--block")
    return cmd


def worker_environment(base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for ``ray start``: nothing phones home; Ray's auth settings pass on."""
    env = dict(os.environ if base is None else base)
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    return env
