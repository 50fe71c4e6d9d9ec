"""`daedalus worker`: join this machine to a Ray cluster as evaluation capacity, and look at it.

`start` wraps `ray start` with the resources Daedalus workers ask for (CPUs, GPUs, NPUs,
a checked Docker sandbox) and with usage stats and the dashboard off; `status` lists the
cluster's nodes and what is free on them. See docs/scale-out.md.
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import typer

app = typer.Typer(
    help="Evaluation workers on a Ray cluster: start a head or join a node, show the cluster.",
    no_args_is_help=True,
)


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.secho(f"error: {message}", fg="red", err=True)
    return typer.Exit(code)


def _ray_executable() -> str:
    beside = Path(sys.executable).with_name("ray")
    found = str(beside) if beside.exists() else shutil.which("ray")
    if not found:
        raise _fail("Ray is not installed in this environment: pip install 'daedalus[ray]' "
                    "(the same Ray version on every node)")  # fmt: skip
    return found


def _check_docker() -> None:
    """A node that offers the Docker sandbox must have an engine and the sandbox image."""
    import os

    from docker.errors import DockerException

    from daedalus.sandbox.docker_host import DockerUnavailable, connect
    from daedalus.sandbox.docker_image import ImageError, ensure_local_image

    try:
        client = connect(timeout=10)
    except DockerUnavailable as exc:
        raise _fail(f"--sandbox docker: {exc}") from exc
    custom = os.environ.get("DAEDALUS_DOCKER_IMAGE")
    try:
        if custom:  # a prepared image (e.g. a CUDA recipe image) must already be on this node
            client.images.get(custom)
        tag = custom or ensure_local_image(client)
    except (ImageError, DockerException) as exc:
        raise _fail(f"--sandbox docker: the sandbox image is not usable ({exc}); "
                    "see `daedalus sandbox status`") from exc  # fmt: skip
    finally:
        client.close()
    typer.echo(f"docker sandbox ready (image {tag})")


@app.command("start")
def start_command(
    address: str = typer.Option(None, "--address", help="Join the cluster whose head is at HOST:PORT."),
    head: bool = typer.Option(False, "--head", help="Start a new cluster with this machine as its head."),
    port: int = typer.Option(6379, "--port", help="The head's port (with --head)."),
    node_ip: str = typer.Option(None, "--node-ip-address", help="This node's address as the others reach it."),
    num_cpus: int = typer.Option(None, "--num-cpus", help="CPUs to offer (default: all; one per evaluation)."),
    num_gpus: int = typer.Option(None, "--num-gpus", help="GPUs to offer (--backend cuda asks one per evaluation)."),
    num_npus: int = typer.Option(None, "--num-npus", help="Ascend NPUs to offer (custom resource NPU)."),
    sandbox: str = typer.Option("process", "--sandbox", help="process, or docker: also offer the Docker sandbox."),
    block: bool = typer.Option(False, "--block", help="Stay in the foreground until interrupted."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the `ray start` command instead of running it."),
) -> None:
    """Start a Ray head (--head) or join this machine to one (--address HOST:PORT)."""
    from daedalus.sandbox.ray_worker import start_command, worker_environment

    if sandbox not in ("process", "docker"):
        raise _fail(f"--sandbox {sandbox!r}: choose process or docker")
    if head == bool(address):
        raise _fail("give --head to start a new cluster, or --address HOST:PORT to join one (not both)")
    cmd = start_command(
        ray=_ray_executable(), address=address, head=head, port=port, node_ip=node_ip,
        num_cpus=num_cpus, num_gpus=num_gpus, num_npus=num_npus, sandbox=sandbox, block=block,
    )  # fmt: skip
    env = worker_environment()
    if dry_run:
        typer.echo(shlex.join(cmd))
        return
    if env.get("RAY_AUTH_MODE") != "token":
        typer.secho(
            "warning: RAY_AUTH_MODE is not 'token': anyone who can reach this node's ports can run "
            "code on it. Set RAY_AUTH_MODE=token and the same RAY_AUTH_TOKEN on every node.",
            fg="yellow", err=True,
        )  # fmt: skip
    if sandbox == "docker":
        _check_docker()
    done = subprocess.run(cmd, env=env, check=False)
    if done.returncode != 0:
        raise _fail(f"`ray start` failed with exit code {done.returncode}; its messages are above", done.returncode)
    if head and not block:
        where = node_ip or "THIS_HOST"
        typer.echo(f"\njoin more nodes with: daedalus worker start --address {where}:{port}")
        typer.echo("run on this cluster with: daedalus run TASK --executor ray --ray-address auto")


@app.command("status")
def status_command(
    address: str = typer.Option("auto", "--address", help="The cluster: auto (this machine's) or HOST:PORT."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """The cluster's nodes: alive or not, and the CPUs, GPUs, NPUs and sandboxes they offer."""
    from daedalus.agent.executors import ExecutorError, connect_ray
    from daedalus.sandbox.ray_worker import DOCKER_RESOURCE, NPU_RESOURCE

    try:
        ray = connect_ray(address)
    except ExecutorError as exc:
        raise _fail(str(exc), 1) from exc
    try:
        nodes: list[dict[str, Any]] = []
        for node in ray.nodes():
            res = node.get("Resources", {})
            nodes.append({
                "node_id": node["NodeID"], "address": node.get("NodeManagerAddress", "?"),
                "alive": bool(node.get("Alive")), "head": "node:__internal_head__" in res,
                "cpus": res.get("CPU", 0), "gpus": res.get("GPU", 0), "npus": res.get(NPU_RESOURCE, 0),
                "sandboxes": ["process", "docker"] if res.get(DOCKER_RESOURCE) else ["process"],
            })  # fmt: skip
        free = {k: v for k, v in ray.available_resources().items() if k in ("CPU", "GPU", NPU_RESOURCE)}
    finally:
        ray.shutdown()
    if as_json:
        typer.echo(json.dumps({"address": address, "nodes": nodes, "free": free}))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("node", "address", "state", "CPU", "GPU", "NPU", "sandboxes")
    for n in nodes:
        state = ("alive" if n["alive"] else "dead") + (" (head)" if n["head"] else "")
        table.add_row(n["node_id"][:12], n["address"], state, f"{n['cpus']:g}", f"{n['gpus']:g}",
                      f"{n['npus']:g}", ", ".join(n["sandboxes"]))  # fmt: skip
    console = Console()
    console.print(table)
    console.print("free: " + (", ".join(f"{k}={v:g}" for k, v in sorted(free.items())) or "nothing"))
