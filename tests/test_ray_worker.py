"""The Ray worker and executor without a cluster: what the worker may import, the resources
it asks for, the `ray start` line `daedalus worker start` builds, and the errors that name
the fix. The real two-node cluster is in tests/test_ray_cluster.py."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from daedalus.agent.cli_worker import app
from daedalus.agent.config import RunConfig
from daedalus.agent.executors import (
    ExecutorError,
    RayExecutor,
    _check_feasible,
    _lost_result,
    connect_ray,
)
from daedalus.sandbox.ray_worker import (
    DOCKER_RESOURCE,
    DOCKER_RESOURCE_SLIVER,
    NPU_RESOURCE,
    actor_resources,
    start_command,
)
from daedalus.sandbox.result import Limits, Status

WORKER = Path(__file__).resolve().parents[1] / "sandbox" / "ray_worker.py"
ALLOWED = ("daedalus.sandbox", "daedalus.tasks")
# The active agent's modules and the LLM stack: a passive worker imports none of them.
FORBIDDEN = ("daedalus.agent", "daedalus.tools", "daedalus.archive", "daedalus.prompts", "litellm",
             "langgraph", "openai")  # fmt: skip


def test_worker_source_imports_only_sandbox_and_tasks() -> None:
    tree = ast.parse(WORKER.read_text())
    ours = [
        node.module
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("daedalus")
    ]
    ours += [
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
        if alias.name.startswith("daedalus")
    ]
    assert ours and all(m.startswith(ALLOWED) for m in ours), ours


def test_loading_the_worker_pulls_in_no_planning_memory_or_llm() -> None:
    """What a Ray node imports to unpickle the actor class, checked in a fresh interpreter."""
    probe = (
        "import sys, daedalus.sandbox.ray_worker as w\n"
        "w.EvaluationWorker.evaluate; w.EvaluationWorker.ready\n"
        "print('\\n'.join(sorted(sys.modules)))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    loaded = done.stdout.split()
    assert "daedalus.sandbox.evaluator" in loaded
    assert not [m for m in loaded if m.startswith(FORBIDDEN)]


def test_actor_resources_follow_backend_and_sandbox() -> None:
    cpu = actor_resources(backend="cpu", sandbox="process", threads=2, gpus_in_cluster=True)
    assert cpu == {"num_cpus": 2, "num_gpus": 0, "resources": {}}
    assert actor_resources(backend="cuda", sandbox="process", threads=1, gpus_in_cluster=False)["num_gpus"] == 1
    # Triton takes a GPU where the cluster has one and runs in the interpreter on CPU otherwise.
    assert actor_resources(backend="triton", sandbox="process", threads=1, gpus_in_cluster=True)["num_gpus"] == 1
    assert actor_resources(backend="triton", sandbox="process", threads=1, gpus_in_cluster=False)["num_gpus"] == 0
    npu = actor_resources(backend="npu", sandbox="docker", threads=1, gpus_in_cluster=False)
    assert npu["resources"] == {NPU_RESOURCE: 1, DOCKER_RESOURCE: DOCKER_RESOURCE_SLIVER}


def test_start_command_for_a_head_and_a_joining_node() -> None:
    head = start_command(ray="ray", address=None, head=True, port=6400, node_ip="127.0.0.1", num_cpus=4,
                         num_gpus=None, num_npus=None, sandbox="process", block=False)  # fmt: skip
    assert head[:3] == ["ray", "start", "--disable-usage-stats"]
    assert {"--head", "--port=6400", "--include-dashboard=false", "--node-ip-address=127.0.0.1", "--num-cpus=4"} <= set(head)
    assert not [a for a in head if a.startswith(("--resources", "--num-gpus", "--block"))]
    node = start_command(ray="ray", address="10.0.0.5:6379", head=False, port=6379, node_ip=None, num_cpus=None,
                         num_gpus=2, num_npus=8, sandbox="docker", block=True)  # fmt: skip
    assert {"--address=10.0.0.5:6379", "--num-gpus=2", "--block"} <= set(node)
    resources = json.loads(next(a for a in node if a.startswith("--resources=")).split("=", 1)[1])
    assert resources == {NPU_RESOURCE: 8, DOCKER_RESOURCE: 10_000}
    with pytest.raises(ValueError, match="either --head"):
        start_command(ray="ray", address="h:1", head=True, port=1, node_ip=None, num_cpus=None,
                      num_gpus=None, num_npus=None, sandbox="process", block=False)  # fmt: skip


def test_worker_cli_dry_run_and_usage_errors() -> None:
    runner = CliRunner()
    done = runner.invoke(app, ["start", "--address", "10.0.0.5:6379", "--num-gpus", "1", "--dry-run"])
    assert done.exit_code == 0, done.output
    assert "start --disable-usage-stats --address=10.0.0.5:6379" in done.stdout and "--num-gpus=1" in done.stdout
    neither = runner.invoke(app, ["start"])
    assert neither.exit_code == 2 and "--head" in neither.stderr and "--address HOST:PORT" in neither.stderr
    bad = runner.invoke(app, ["start", "--head", "--sandbox", "vm", "--dry-run"])
    assert bad.exit_code == 2 and "choose process or docker" in bad.stderr


def test_run_config_executor_fields() -> None:
    config = RunConfig(task="swish_scale", executor="ray", ray_address="10.0.0.5:6379")
    assert (config.executor, config.ray_address) == ("ray", "10.0.0.5:6379")
    assert RunConfig(task="t").executor == "local"
    assert RunConfig(task="t", ray_address="auto").ray_address == "auto"
    with pytest.raises(ValidationError, match="not auto or HOST:PORT"):
        RunConfig(task="t", ray_address="10.0.0.5")
    with pytest.raises(ValidationError):
        RunConfig(task="t", executor="kubernetes")  # type: ignore[arg-type]


def test_unreachable_cluster_and_infeasible_resources_name_the_fix() -> None:
    # Nothing listens on port 1 of loopback: a refusal within seconds, not Ray's long retries.
    with pytest.raises(ExecutorError, match=r"no Ray cluster answers at 127\.0\.0\.1:1.*daedalus worker start --head"):
        connect_ray("127.0.0.1:1")
    with pytest.raises(ExecutorError, match="--backend auto"):
        RayExecutor(address="127.0.0.1:1", sandbox="process", backend="auto", limits=Limits(), workers=1)
    gpu = actor_resources(backend="cuda", sandbox="docker", threads=1, gpus_in_cluster=False)
    with pytest.raises(ExecutorError, match=r"lacks GPU, daedalus_docker.*--num-gpus N.*--sandbox docker"):
        _check_feasible(gpu, {"CPU": 8.0, "memory": 1e9})
    _check_feasible(actor_resources(backend="cpu", sandbox="process", threads=1, gpus_in_cluster=False), {"CPU": 1.0})


def test_a_candidate_that_keeps_losing_its_worker_is_a_result_not_a_crash() -> None:
    result = _lost_result(["ActorDiedError", "ActorDiedError", "ActorUnavailableError"])
    assert result.status is Status.RUNTIME_ERROR and result.flags == ["worker_lost"]
    assert "lost 3 times" in (result.error or "") and result.artifacts["worker"]["attempts"] == 3
