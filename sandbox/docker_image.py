"""Sandbox images: built locally, without a registry, or from the recipes in `sandbox/images/`.

Three ways to get an image, from cheapest to most portable:

* ``local`` (the default, and what the tests use): a root filesystem of a few kilobytes
  (`/etc/passwd` with `nobody`, mount points, the merged-/usr symlinks) imported with
  ``docker import``; at run time the host's `/usr`, its Python and the project's venv and
  sources are bind-mounted read-only at the same paths (see ``docker_host.host_layout``).
* ``rootfs``: a self-contained image, ``docker import`` of a tarball holding this host's
  Python, the venv, the package and the shared libraries they load (found with `ldd`),
  optionally the C/C++ tool chain. It runs on any engine of the same architecture.
* ``recipe``: ``docker build`` of `sandbox/images/<kind>/Dockerfile`. Their base images come
  from a registry, so this needs one.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from daedalus.sandbox.docker_host import (
    LABEL,
    LABEL_IMAGE_KIND,
    LABEL_IMAGE_USER,
    LOCAL_IMAGE,
    HostLayout,
    host_layout,
)

if TYPE_CHECKING:
    from docker import DockerClient

ROOTFS_IMAGE = "daedalus-sandbox:rootfs"
RECIPES = Path(__file__).resolve().parent / "images"  # resolved: editable installs link files
KINDS = ("cpu", "cuda", "ascend")
SANDBOX_USER = "65534:65534"
_PASSWD = (
    "root:x:0:0:root:/root:/usr/sbin/nologin\n"
    "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
)
_GROUP = "root:x:0:\nnogroup:x:65534:\n"
# Mount points and scratch directories every sandbox image carries.
_DIRS = ("etc", "tmp", "work", "proc", "sys", "dev", "usr", "root", "home", "run", "var/tmp")
_MERGED_USR = {"bin": "usr/bin", "lib": "usr/lib", "lib64": "usr/lib64", "sbin": "usr/sbin"}
# Compiler pieces a self-contained image needs for load_inline C++ candidates.
_TOOLCHAIN = (
    "/usr/lib/gcc",
    "/usr/libexec/gcc",
    "/usr/include",
    "/usr/lib/x86_64-linux-gnu",
    "/usr/lib/aarch64-linux-gnu",
    "/usr/bin/gcc",
    "/usr/bin/g++",
    "/usr/bin/cc",
    "/usr/bin/c++",
    "/usr/bin/cpp",
    "/usr/bin/as",
    "/usr/bin/ld",
    "/usr/bin/ld.bfd",
    "/usr/bin/x86_64-linux-gnu-gcc-12",
    "/usr/bin/x86_64-linux-gnu-g++-12",
    "/usr/bin/x86_64-linux-gnu-cpp-12",
    "/usr/bin/x86_64-linux-gnu-as",
    "/usr/bin/x86_64-linux-gnu-ld",
    "/usr/bin/x86_64-linux-gnu-ld.bfd",
    "/usr/bin/ninja",  # torch.utils.cpp_extension builds with it
    "/usr/bin/sh",  # ninja runs every build step through /bin/sh
    "/usr/bin/dash",
)
_SKIP_PARTS = frozenset({"__pycache__", "test", "tests", "idle_test", "triton"})


class ImageError(RuntimeError):
    """An image could not be built or found; the message says what to run instead."""


def _add_dir(tar: tarfile.TarFile, name: str, mode: int = 0o755) -> None:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = mode
    info.mtime = int(time.time())
    tar.addfile(info)


def _add_text(tar: tarfile.TarFile, name: str, text: str, mode: int = 0o644) -> None:
    data = text.encode()
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = mode
    info.mtime = int(time.time())
    tar.addfile(info, io.BytesIO(data))


def _add_skeleton(tar: tarfile.TarFile) -> None:
    for name in _DIRS:
        _add_dir(tar, name, 0o1777 if name in ("tmp", "work", "var/tmp") else 0o755)
    for name, target in _MERGED_USR.items():
        info = tarfile.TarInfo(name)
        info.type = tarfile.SYMTYPE
        info.linkname = target
        tar.addfile(info)
    _add_text(tar, "etc/passwd", _PASSWD)
    _add_text(tar, "etc/group", _GROUP)


def tiny_rootfs() -> bytes:
    """The bind-mount image's whole root file system: a few directories and two files."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        _add_skeleton(tar)
    return buffer.getvalue()


def _changes(kind: str, python: str) -> list[str]:
    return [
        f"LABEL {LABEL}.image=1 {LABEL_IMAGE_KIND}={kind} {LABEL_IMAGE_USER}={SANDBOX_USER}",
        f"LABEL daedalus.image.python={python}",
        "ENV HOME=/tmp PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1",
        "WORKDIR /work",
    ]


def build_local_image(client: DockerClient, tag: str = LOCAL_IMAGE) -> str:
    """Import the tiny bind-mount image (milliseconds); returns its id. The image it
    replaces is left in place (126 bytes): a sandbox that resolved it may still use it."""
    repository, _, version = tag.partition(":")
    client.api.import_image_from_data(
        tiny_rootfs(),
        repository=repository,
        tag=version or "latest",
        changes=_changes("local", sys.executable),
    )
    return str(client.images.get(tag).id)


def ensure_local_image(client: DockerClient, tag: str = LOCAL_IMAGE) -> str:
    """The bind-mount image's id, importing it first when missing."""
    from docker.errors import ImageNotFound

    try:
        return str(client.images.get(tag).id)
    except ImageNotFound:
        return build_local_image(client, tag)


def _elf_files(roots: Iterable[Path]) -> Iterator[Path]:
    for root in roots:
        for path in [root] if root.is_file() else root.rglob("*"):
            if not path.is_file() or path.is_symlink():
                continue
            if path.suffix == ".so" or ".so." in path.name or os.access(path, os.X_OK):
                with path.open("rb") as handle:
                    if handle.read(4) == b"\x7fELF":
                        yield path


def shared_libraries(files: Iterable[Path]) -> set[Path]:
    """System libraries the given ELF files load, resolved by `ldd` (plus the loader)."""
    found: set[Path] = set()
    for path in files:
        run = subprocess.run(["ldd", str(path)], capture_output=True, text=True, check=False)
        for line in run.stdout.splitlines():
            parts = line.split()
            candidates = [p for p in parts if p.startswith("/")]
            found.update(Path(p) for p in candidates[:1])
    return {p for p in found if p.exists()}


def rootfs_paths(layout: HostLayout, *, toolchain: bool) -> list[Path]:
    """Every host path a self-contained image needs: Python, venv, package, libraries."""
    roots = [Path(p) for p in layout.mounts if p != "/usr"]
    if toolchain:
        roots += [Path(p) for p in _TOOLCHAIN if Path(p).exists()]
    libraries = shared_libraries(_elf_files(roots))
    return sorted({*roots, *libraries})


def _walk(path: Path) -> Iterator[Path]:
    yield path
    if path.is_dir() and not path.is_symlink():
        for child in sorted(path.iterdir()):
            if child.name in _SKIP_PARTS:
                continue
            yield from _walk(child)


def _canonical(path: Path) -> Path:
    """The path with its directories' symlinks resolved (/lib/x.so -> /usr/lib/x.so), so no
    entry lands under one of the image's merged-/usr symlinks."""
    return Path(os.path.realpath(path.parent)) / path.name


def write_rootfs_tar(target: Path, layout: HostLayout, *, toolchain: bool) -> Path:
    """Write the self-contained root file system tarball to ``target`` and return it."""
    with tarfile.open(target, mode="w") as tar:
        _add_skeleton(tar)
        seen = {*(d for d in _DIRS), *_MERGED_USR, "etc/passwd", "etc/group"}
        queue = [_canonical(p) for p in rootfs_paths(layout, toolchain=toolchain)]
        while queue:
            root = queue.pop(0)
            for path in _walk(root):
                name = str(path).lstrip("/")
                if name in seen:
                    continue
                for parent in reversed(Path(name).parents[:-1]):
                    if str(parent) not in seen:
                        seen.add(str(parent))
                        _add_dir(tar, str(parent))
                seen.add(name)
                tar.add(str(path), arcname=name, recursive=False)
                if path.is_symlink():  # bring what it points to, one link at a time
                    queue.append(_canonical(path.parent / os.readlink(path)))
    return target


def build_rootfs_image(
    client: DockerClient, tag: str = ROOTFS_IMAGE, *, toolchain: bool = False,
    keep_tar: Path | None = None,
) -> str:  # fmt: skip
    """Build and import the self-contained image (minutes: it copies the venv)."""
    layout = host_layout()
    with tempfile.TemporaryDirectory(prefix="daedalus-rootfs-") as tmp:
        tar_path = keep_tar or Path(tmp) / "rootfs.tar"
        write_rootfs_tar(tar_path, layout, toolchain=toolchain)
        repository, _, version = tag.partition(":")
        client.api.import_image_from_file(
            str(tar_path),
            repository=repository,
            tag=version or "latest",
            changes=_changes("rootfs", layout.python),
        )
    return str(client.images.get(tag).id)


def recipe_path(kind: str) -> Path:
    if kind not in KINDS:
        raise ImageError(f"Unknown image kind {kind!r}; choose one of {', '.join(KINDS)}.")
    return RECIPES / kind / "Dockerfile"


def base_images(dockerfile: Path) -> list[str]:
    """The images a recipe's FROM lines name (ARG defaults substituted)."""
    args: dict[str, str] = {}
    bases: list[str] = []
    for line in dockerfile.read_text().splitlines():
        words = line.split()
        if len(words) >= 2 and words[0].upper() == "ARG" and "=" in words[1]:
            name, _, value = words[1].partition("=")
            args[name] = value
        elif len(words) >= 2 and words[0].upper() == "FROM":
            image = words[1]
            for name, value in args.items():
                image = image.replace("${" + name + "}", value).replace("$" + name, value)
            if image != "scratch":
                bases.append(image)
    return bases


_CONTEXT_FILES = ("pyproject.toml", "constraints.txt", "README.md")
_CONTEXT_DIRS = ("agent", "tools", "sandbox", "archive", "tasks", "prompts", "daedalus_pkg")


def build_context(dockerfile: Path) -> bytes:
    """A build context of just the project's sources (never the venv, `.git` or archives)."""
    project = Path(__file__).resolve().parents[1]
    if not (project / "pyproject.toml").is_file():
        raise ImageError(
            f"The recipes build from a source checkout, but {project} has no pyproject.toml; "
            "run `daedalus sandbox build-image` from a git clone, or use --local."
        )
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tar.add(str(dockerfile), arcname="Dockerfile")
        for name in _CONTEXT_FILES:
            if (project / name).is_file():
                tar.add(str(project / name), arcname=name)
        for name in _CONTEXT_DIRS:
            for path in _walk(project / name):
                if path.is_file() and path.suffix not in (".pyc", ".so"):
                    tar.add(str(path), arcname=str(path.relative_to(project)), recursive=False)
    return buffer.getvalue()


def build_recipe_image(
    client: DockerClient, kind: str, tag: str | None = None, *, pull: bool = False
) -> str:
    """``docker build`` of a shipped recipe.

    Its base image must already be in the engine, or ``pull=True`` lets the engine fetch
    it: Daedalus never reaches for a registry unless asked to.
    """
    from docker.errors import APIError, BuildError, ImageNotFound

    dockerfile = recipe_path(kind)
    tag = tag or f"daedalus-sandbox:{kind}"
    local_hint = (
        f"Without a registry, build locally instead: `daedalus sandbox build-image {kind} "
        f"--local` (bind mounts of this host's Python, seconds) or `--rootfs` "
        f"(self-contained, minutes); docs/docker.md explains both."
    )
    if not pull:
        missing = []
        for base in base_images(dockerfile):
            try:
                client.images.get(base)
            except ImageNotFound:
                missing.append(base)
        if missing:
            raise ImageError(
                f"{dockerfile} starts from {', '.join(missing)}, which this engine does not "
                f"have. Pass --pull to let the engine fetch it from its registry. {local_hint}"
            )
    try:
        image, _ = client.images.build(
            fileobj=io.BytesIO(build_context(dockerfile)),
            custom_context=True,
            tag=tag,
            labels={f"{LABEL}.image": "1", LABEL_IMAGE_KIND: kind, LABEL_IMAGE_USER: SANDBOX_USER},
            rm=True,
            pull=pull,
        )
    except (BuildError, APIError) as exc:
        raise ImageError(f"Building {dockerfile} failed: {exc}. {local_hint}") from exc
    return str(image.id)


def image_user(client: DockerClient, image: str) -> str | None:
    """The non-root user the image declares it supports (our label), else None (image default)."""
    labels = client.images.get(image).labels or {}
    return labels.get(LABEL_IMAGE_USER)
