"""`daedalus sandbox`: the Docker engine, sandbox images and leftover containers."""

from __future__ import annotations

import json
from pathlib import Path

import typer

app = typer.Typer(
    help="Docker sandbox: engine status, sandbox images, leftover containers.",
    no_args_is_help=True,
)


def _fail(message: str, code: int = 1) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


@app.command("status")
def status_command(
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Is a Docker engine reachable, which sandbox images exist, are containers left over?"""
    from daedalus.sandbox.docker_host import (
        LABEL,
        LABEL_IMAGE_KIND,
        DockerUnavailable,
        connect,
        list_sandbox_containers,
    )

    report: dict[str, object] = {"engine": False}
    try:
        client = connect(timeout=30)
    except DockerUnavailable as exc:
        report["error"] = str(exc)
    else:
        version = client.version()
        images = [
            {
                "tags": ", ".join(image.tags) or image.short_id,
                "kind": (image.labels or {}).get(LABEL_IMAGE_KIND, "?"),
                "size_mb": f"{image.attrs.get('Size', 0) / 1e6:.0f}",
            }
            for image in client.images.list(filters={"label": f"{LABEL}.image=1"})
        ]
        report.update(
            engine=True,
            version=str(version.get("Version", "?")),
            api=str(version.get("ApiVersion", "?")),
            images=images,
            containers=list_sandbox_containers(client),
        )
        client.close()
    if as_json:
        typer.echo(json.dumps(report))
        return
    if not report["engine"]:
        typer.echo(f"Docker engine: not reachable\n  {report['error']}")
        typer.echo("The process sandbox still works: --sandbox process (or auto).")
        return
    typer.echo(f"Docker engine: {report['version']} (API {report['api']})")
    images_found = report["images"]
    assert isinstance(images_found, list)
    if images_found:
        typer.echo("Sandbox images:")
        for row in images_found:
            typer.echo(f"  {row['tags']}  kind={row['kind']}  {row['size_mb']} MB")
    else:
        typer.echo("Sandbox images: none (build one: daedalus sandbox build-image cpu --local)")
    containers = report["containers"]
    assert isinstance(containers, list)
    stale = [c for c in containers if c["stale"] == "yes"]
    typer.echo(f"Sandbox containers: {len(containers)} ({len(stale)} stale)")
    for row in containers:
        typer.echo(f"  {row['id']} {row['status']} owner pid {row['owner_pid']} "
                   f"on {row['owner_host']} stale={row['stale']}")  # fmt: skip
    if stale:
        typer.echo("Remove stale ones with: daedalus sandbox clean")


@app.command("clean")
def clean_command() -> None:
    """Remove containers left behind by Daedalus processes that no longer run."""
    from daedalus.sandbox.docker_host import DockerUnavailable, connect, remove_stale_containers

    try:
        client = connect(timeout=300)
    except DockerUnavailable as exc:
        raise _fail(str(exc)) from None
    removed = remove_stale_containers(client)
    typer.echo(f"Removed {len(removed)} stale container(s){': ' if removed else ''}"
               f"{' '.join(removed)}")  # fmt: skip


@app.command("build-image")
def build_image_command(
    kind: str = typer.Argument("cpu", help="cpu, cuda or ascend"),
    local: bool = typer.Option(
        False, "--local", help="Tiny image run with read-only bind mounts of this host's "
        "Python, venv and sources (no registry; seconds)."),
    rootfs: bool = typer.Option(
        False, "--rootfs", help="Self-contained image: docker import of a root file system "
        "copied from this host (no registry; minutes)."),
    toolchain: bool = typer.Option(
        False, "--toolchain", help="With --rootfs: include gcc/g++ so C++ candidates build."),
    tar: Path | None = typer.Option(
        None, "--tar", help="With --rootfs: also keep the root file system tarball here."),
    pull: bool = typer.Option(
        False, "--pull", help="Let the engine fetch the recipe's base image from a registry."),
    tag: str | None = typer.Option(None, "--tag", help="Image tag (default per kind)."),
) -> None:
    """Build a sandbox image from a recipe in sandbox/images/, or locally without a registry."""
    from daedalus.sandbox.docker_host import LOCAL_IMAGE, DockerUnavailable, connect
    from daedalus.sandbox.docker_image import (
        KINDS,
        ROOTFS_IMAGE,
        ImageError,
        build_local_image,
        build_recipe_image,
        build_rootfs_image,
    )

    if kind not in KINDS:
        raise _fail(f"unknown image kind {kind!r}; choose one of {', '.join(KINDS)}", 2)
    if local and rootfs:
        raise _fail("choose one of --local and --rootfs", 2)
    if (toolchain or tar) and not rootfs:
        raise _fail("--toolchain and --tar only apply to --rootfs", 2)
    try:
        client = connect(timeout=300)
    except DockerUnavailable as exc:
        raise _fail(str(exc)) from None
    try:
        if local:
            image_id = build_local_image(client, tag or LOCAL_IMAGE)
            built = tag or LOCAL_IMAGE
            note = ("GPUs and NPUs work with it when the host has their drivers and toolkits "
                    "(they are bind-mounted with the rest of /usr)." if kind != "cpu" else "")
        elif rootfs:
            typer.echo("Copying this host's Python, venv and libraries (minutes)...")
            image_id = build_rootfs_image(client, tag or ROOTFS_IMAGE, toolchain=toolchain,
                                          keep_tar=tar)  # fmt: skip
            built, note = tag or ROOTFS_IMAGE, ""
        else:
            image_id = build_recipe_image(client, kind, tag, pull=pull)
            built, note = tag or f"daedalus-sandbox:{kind}", ""
    except ImageError as exc:
        raise _fail(str(exc)) from None
    typer.echo(f"Built {built} ({image_id.removeprefix('sha256:')[:12]}). {note}".rstrip())
    typer.echo(f"Use it with: daedalus eval TASK CANDIDATE.py --sandbox docker "
               f"(image {built}; set DAEDALUS_DOCKER_IMAGE={built} for another tag)")  # fmt: skip


@app.command("check-cuda")
def check_cuda_command(
    candidate: Path = typer.Argument(..., exists=True, dir_okay=False, readable=True,
                                     help="A candidate .py that builds CUDA with load_inline."),
    arch: str = typer.Option("sm_80", "--arch", help="GPU architecture to compile for."),
) -> None:
    """Compile-check a candidate's CUDA sources with nvcc, without a GPU (cached by source)."""
    from daedalus.sandbox.backends.nvcc import (
        NvccUnavailable,
        check_candidate,
        extract_extensions,
    )

    code = candidate.read_text()
    extensions, notes = extract_extensions(code)
    if not extensions:
        detail = "; ".join(notes) or "no load_inline(cuda_sources=...) call"
        typer.echo(f"{candidate}: nothing to compile ({detail}).")
        return
    try:
        ok, report = check_candidate(code, arch=arch)
    except NvccUnavailable as exc:
        raise _fail(str(exc), 2) from None
    typer.echo(report)
    if not ok:
        raise typer.Exit(1)
