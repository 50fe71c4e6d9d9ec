"""The Docker sandbox's parts against a real engine: locked-down containers, stale-container
clean-up, images built without a registry, device passing, and `daedalus sandbox`."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from daedalus.agent.cli import app
from daedalus.sandbox.docker import DockerSandbox, auto_sandbox
from daedalus.sandbox.docker_devices import (
    DeviceError,
    gpu_config,
    npu_config,
    parse_selection,
)
from daedalus.sandbox.docker_host import (
    LABEL,
    LABEL_HOST,
    LABEL_PID,
    LOCAL_IMAGE,
    HostLayout,
    engine_available,
    host_layout,
)
from daedalus.sandbox.docker_image import (
    build_context,
    ensure_local_image,
    recipe_path,
    shared_libraries,
    write_rootfs_tar,
)
from daedalus.sandbox.docker_pool import ContainerError, ContainerPool
from daedalus.sandbox.process import ProcessSandbox
from daedalus.sandbox.result import Limits

runner = CliRunner()


def require_docker() -> None:
    ok, why = engine_available()
    if ok:
        return
    if os.environ.get("DAEDALUS_REQUIRE_DOCKER") == "1":
        pytest.fail(f"DAEDALUS_REQUIRE_DOCKER=1 but no Docker engine answers: {why}")
    pytest.skip(f"no Docker engine: {why}")


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    require_docker()
    import docker

    c = docker.from_env(timeout=300)  # a busy engine (an image import) answers slowly
    ensure_local_image(c)
    yield c
    c.close()


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# --- containers ------------------------------------------------------------------------


@pytest.mark.docker
def test_containers_are_locked_down(client: Any) -> None:
    box = DockerSandbox(pool_size=0, client=client)
    box._prepare()
    spec = box._spec(Limits(memory_mb=1024, processes=50, threads=1), build_mounts=())
    container = client.containers.create(spec.image, **spec.create_kwargs())
    try:
        host = container.attrs["HostConfig"]
        assert host["NetworkMode"] == "none"
        assert host["ReadonlyRootfs"] is True
        assert host["CapDrop"] == ["ALL"]
        assert "no-new-privileges" in host["SecurityOpt"]
        assert host["PidsLimit"] == 50 + 64
        assert host["NanoCpus"] == 1_000_000_000
        assert host["Memory"] == host["MemorySwap"] == (1024 + 1536) * 1024 * 1024
        assert host["LogConfig"]["Config"]["max-size"] == str(1 << 20)
        assert set(host["Tmpfs"]) == {"/tmp", "/cache"}
        assert container.attrs["Config"]["User"] == "65534:65534"
        labels = container.labels
        assert labels[LABEL] == "1" and labels[LABEL_PID] == str(os.getpid())
        mounts = {m["Destination"]: m for m in container.attrs["Mounts"]}
        assert sys.prefix in mounts and all(not m["RW"] for m in mounts.values())
    finally:
        container.remove(force=True)


@pytest.mark.docker
def test_stale_containers_are_removed_at_start(client: Any) -> None:
    common = {"image": LOCAL_IMAGE, "command": ["/nothing"], "network_mode": "none"}
    dead = client.containers.create(**common, labels={
        LABEL: "1", LABEL_PID: str(_dead_pid()), LABEL_HOST: socket.gethostname()})
    alive = client.containers.create(**common, labels={
        LABEL: "1", LABEL_PID: str(os.getpid()), LABEL_HOST: socket.gethostname()})
    other_host = client.containers.create(**common, labels={
        LABEL: "1", LABEL_PID: str(_dead_pid()), LABEL_HOST: "some-other-host"})  # fmt: skip
    try:
        box = DockerSandbox(pool_size=0, client=client)
        box._prepare()  # (another Daedalus on this host may have reaped it first: also fine)
        remaining = {c.id for c in client.containers.list(all=True)}
        assert dead.id not in remaining
        assert alive.id in remaining and other_host.id in remaining
        result = runner.invoke(app, ["sandbox", "status"])
        assert result.exit_code == 0 and alive.short_id in result.output
    finally:
        for c in (alive, other_host):
            c.remove(force=True)


@pytest.mark.docker
def test_gpu_request_without_the_nvidia_toolkit_fails_clearly(client: Any) -> None:
    box = DockerSandbox(pool_size=0, gpus="all", client=client)
    box._prepare()
    pool = ContainerPool(client, box._spec(Limits(), build_mounts=()), 0, box._ready, 60)
    with pytest.raises(ContainerError, match="NVIDIA Container Toolkit"):
        pool.start_one()
    leftovers = client.containers.list(all=True, filters={"label": f"{LABEL_PID}={os.getpid()}"})
    assert leftovers == [], "a container that failed to start was left behind"


@pytest.mark.docker
def test_pool_hands_out_ready_containers_once(client: Any) -> None:
    box = DockerSandbox(pool_size=1, client=client)
    pool = box._prepare()
    first = pool.acquire()  # waits for nothing in flight, starts one
    assert any(m.get("event") == "ready" for m in first.messages())
    assert box.fingerprint("cpu")["torch"]
    pool.refill()
    second = pool.acquire()  # waits for the refill in flight
    assert second.short_id != first.short_id
    for warm in (first, second):
        pool.discard(warm)
    box.close()
    assert client.containers.list(all=True, filters={"label": f"{LABEL_PID}={os.getpid()}"}) == []


# --- engine selection ------------------------------------------------------------------


def test_no_engine_is_reported_with_the_fix(monkeypatch: pytest.MonkeyPatch,
                                             tmp_path: Path) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/missing.sock")
    ok, why = engine_available()
    assert not ok and "dockerd" in why and "DOCKER_HOST" in why
    assert isinstance(auto_sandbox(), ProcessSandbox)
    result = runner.invoke(app, ["sandbox", "status", "--json"])
    assert result.exit_code == 0 and json.loads(result.output)["engine"] is False


# --- images ----------------------------------------------------------------------------


@pytest.mark.docker
def test_local_image_is_tiny_and_declares_nobody(client: Any) -> None:
    image = client.images.get(LOCAL_IMAGE)
    assert image.attrs["Size"] < 100_000
    assert image.labels["daedalus.image.kind"] == "local"
    assert image.labels["daedalus.image.user"] == "65534:65534"


def test_host_layout_shares_only_what_the_sandbox_needs() -> None:
    layout = host_layout()
    assert layout.python == sys.executable
    mounts = [Path(m) for m in layout.mounts]
    assert Path("/usr") in mounts and Path(sys.prefix) in mounts
    sandbox_src = Path(__import__("daedalus.sandbox").sandbox.__file__).resolve().parent
    assert any(sandbox_src == m or m in sandbox_src.parents for m in mounts)
    for m in mounts:  # no mount inside another, and never the project's .git or archive
        assert not any(o != m and o in m.parents for o in mounts)
        assert not (m / ".git").exists() or m == Path("/usr")


@pytest.mark.docker
def test_rootfs_image_path_in_miniature(client: Any, tmp_path: Path) -> None:
    """docker import of a root file system copied from this host runs without any mount:
    here one binary and the libraries ldd finds for it."""
    app_dir = tmp_path / "app"
    app_dir.mkdir()
    shutil.copy("/usr/bin/true", app_dir / "true")
    libs = shared_libraries([app_dir / "true"])
    assert any("libc.so" in p.name for p in libs)
    tar_path = write_rootfs_tar(tmp_path / "rootfs.tar", HostLayout("", (str(app_dir),)),
                                toolchain=False)  # fmt: skip
    with tarfile.open(tar_path) as tar:
        names = tar.getnames()
    assert "etc/passwd" in names and str(app_dir / "true").lstrip("/") in names
    client.api.import_image_from_file(str(tar_path), repository="daedalus-test-rootfs",
                                      tag="mini")  # fmt: skip
    try:
        out = client.containers.run("daedalus-test-rootfs:mini", [str(app_dir / "true")],
                                    network_mode="none", user="65534:65534", remove=True)
        assert out == b""
    finally:
        client.images.remove("daedalus-test-rootfs:mini", force=True)


def test_recipes_and_their_build_context() -> None:
    for kind in ("cpu", "cuda", "ascend"):
        text = recipe_path(kind).read_text()
        assert "USER 65534:65534" in text and "daedalus.image.python" in text
    with pytest.raises(Exception, match="choose one of"):
        recipe_path("tpu")
    import io

    with tarfile.open(fileobj=io.BytesIO(build_context(recipe_path("cpu")))) as tar:
        names = tar.getnames()
    assert "Dockerfile" in names and "pyproject.toml" in names
    assert "sandbox/docker.py" in names
    assert not any(n.startswith((".venv", ".git", ".daedalus")) for n in names)


@pytest.mark.docker
def test_build_image_never_pulls_unless_asked(client: Any) -> None:
    result = runner.invoke(app, ["sandbox", "build-image", "cpu"])
    assert result.exit_code == 1
    assert "--pull" in result.output and "--local" in result.output
    tag = f"daedalus-sandbox:test-{os.getpid()}"  # never replace the shared local image
    local = runner.invoke(app, ["sandbox", "build-image", "cpu", "--local", "--tag", tag])
    try:
        assert local.exit_code == 0 and tag in local.output
        assert client.images.get(tag).labels["daedalus.image.kind"] == "local"
    finally:
        client.images.remove(tag, force=True)
    bad = runner.invoke(app, ["sandbox", "build-image", "tpu"])
    assert bad.exit_code == 2


# --- devices ---------------------------------------------------------------------------


def test_device_selection_syntax() -> None:
    assert parse_selection(None) is None and parse_selection("none") is None
    assert parse_selection("all") == ("all", -1)
    assert parse_selection("2") == ("count", 2) == parse_selection("count=2")
    assert parse_selection("device=0,3") == ("ids", ["0", "3"]) == parse_selection("0,3")
    with pytest.raises(DeviceError, match="'all', a count"):
        parse_selection("lots")
    everything = gpu_config("all").device_requests[0]
    assert everything["Count"] == -1 and everything["Capabilities"] == [["gpu"]]
    assert gpu_config("device=1,2").device_requests[0]["DeviceIDs"] == ["1", "2"]
    assert gpu_config(None).device_requests == []


def _fake_ascend(tmp_path: Path, nodes: list[str]) -> tuple[Path, Path]:
    dev, root = tmp_path / "dev", tmp_path / "root"
    dev.mkdir()
    for name in nodes:
        (dev / name).touch()
    (root / "usr/local/Ascend/driver").mkdir(parents=True)
    (root / "usr/local/bin").mkdir(parents=True)
    (root / "usr/local/bin/npu-smi").touch()
    return dev, root


def test_npu_devices_and_driver_mounts(tmp_path: Path) -> None:
    dev, root = _fake_ascend(tmp_path, ["davinci0", "davinci1", "davinci3", "davinci_manager",
                                         "devmm_svm", "hisi_hdc"])  # fmt: skip
    config = npu_config("device=1,3", dev=dev, root=root)
    assert config.devices == [f"{dev}/{n}:{dev}/{n}:rwm" for n in
                              ("davinci1", "davinci3", "davinci_manager", "devmm_svm", "hisi_hdc")]
    assert (str(root / "usr/local/Ascend/driver"), "/usr/local/Ascend/driver") in config.mounts
    assert (str(root / "usr/local/bin/npu-smi"), "/usr/local/bin/npu-smi") in config.mounts
    assert config.group_add == [str((dev / "davinci_manager").stat().st_gid)]
    assert len(npu_config("all", dev=dev, root=root).devices) == 6
    assert len(npu_config("2", dev=dev, root=root).devices) == 5
    with pytest.raises(DeviceError, match="davinci"):
        npu_config("device=7", dev=dev, root=root)


def test_npu_errors_name_what_is_missing(tmp_path: Path) -> None:
    dev, root = _fake_ascend(tmp_path, [])
    with pytest.raises(DeviceError, match="No Ascend NPU device nodes"):
        npu_config("all", dev=dev, root=root)
    (dev / "davinci0").touch()
    with pytest.raises(DeviceError, match="davinci_manager"):
        npu_config("all", dev=dev, root=root)
    with pytest.raises(DeviceError, match="No Ascend"):
        npu_config("all")  # this machine has no NPU
