"""Push and pull against a real registry (Debian's docker-registry) on loopback, and skopeo."""

from __future__ import annotations

import io
import json
import os
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from pkube.cluster.etcd import free_port
from pkube.runtime import archive as archives
from pkube.runtime.imagestore import ImageStore
from pkube.runtime.registry import Progress, RegistryError, pull, push

pytestmark = pytest.mark.root


@pytest.fixture
def registry(tmp_path):
    """A docker-registry on a free 127.0.0.1 port with temp storage; yields "127.0.0.1:PORT"."""
    port = free_port()
    config = tmp_path / "registry.yml"
    config.write_text(
        "version: 0.1\nlog:\n  level: error\n"
        f"storage:\n  filesystem:\n    rootdirectory: {tmp_path / 'storage'}\n"
        f"http:\n  addr: 127.0.0.1:{port}\n")
    log = open(tmp_path / "registry.log", "wb")
    proc = subprocess.Popen(["/usr/bin/docker-registry", "serve", str(config)],
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_ready(f"http://127.0.0.1:{port}/v2/", proc)
        yield f"127.0.0.1:{port}"
    finally:
        proc.kill()
        proc.wait()
        log.close()


def _wait_ready(url: str, proc: subprocess.Popen) -> None:
    for _ in range(200):
        if proc.poll() is not None:
            raise RuntimeError("docker-registry exited at start")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise RuntimeError("docker-registry did not answer")


def skopeo(*args: str) -> str:
    proc = subprocess.run(["skopeo", "--insecure-policy", *args], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_push_then_pull_into_a_fresh_store_keeps_the_image_id(registry, tmp_path):
    store = ImageStore(tmp_path / "a")
    image = store.ensure_busybox()
    ref = f"{registry}/pkube/busybox:1"
    store.tag("busybox", ref)
    events: list[Progress] = []
    digest = push(store, ref, progress=events.append)
    assert digest.startswith("sha256:")
    assert any(e.status == "Pushed" for e in events)
    again: list[Progress] = []
    push(store, ref, progress=again.append)
    assert {e.status for e in again} == {"Layer already exists"}

    fresh = ImageStore(tmp_path / "b")
    pulled_events: list[Progress] = []
    pulled = pull(fresh, ref, progress=pulled_events.append)
    assert pulled.id == image.id and pulled.repo_tags == [ref]
    assert os.path.isfile(os.path.join(pulled.layer_dirs[0], "bin/busybox"))
    downloads = [e for e in pulled_events if e.status == "Downloading"]
    assert downloads and downloads[-1].current == downloads[-1].total > 0
    by_digest = f"{registry}/pkube/busybox@{digest}"
    assert pulled.repo_digests == [by_digest]

    third = ImageStore(tmp_path / "c")
    assert pull(third, by_digest).id == image.id
    assert third.get(by_digest).id == image.id and third.get(image.short_id).repo_tags == []


def test_skopeo_reads_our_push_and_we_pull_what_skopeo_pushed(registry, tmp_path):
    store = ImageStore(tmp_path / "a")
    image = store.ensure_busybox()
    ours = f"{registry}/ours/busybox:latest"
    store.tag("busybox", ours)
    push(store, ours)
    inspect = json.loads(skopeo("inspect", "--tls-verify=false", f"docker://{ours}"))
    assert inspect["Os"] == "linux" and len(inspect["Layers"]) == 1
    assert inspect["Env"] == image.config["Env"]
    skopeo("copy", "--src-tls-verify=false", f"docker://{ours}", f"oci:{tmp_path}/layout:bb")

    archive = tmp_path / "bb.tar"
    with open(archive, "wb") as f:
        archives.save(store, ["busybox"], f)
    theirs = f"{registry}/theirs/busybox:v1"
    skopeo("copy", "--dest-tls-verify=false", f"docker-archive:{archive}", f"docker://{theirs}")
    fresh = ImageStore(tmp_path / "b")
    pulled = pull(fresh, theirs)
    assert pulled.id == image.id
    assert Path(pulled.layer_dirs[0], "etc/passwd").read_text().startswith("root:")


def test_pull_of_an_oci_manifest_pushed_by_skopeo(registry, tmp_path):
    store = ImageStore(tmp_path / "a")
    image = store.ensure_busybox()
    archive = tmp_path / "bb.tar"
    with open(archive, "wb") as f:
        archives.save(store, ["busybox"], f)
    ref = f"{registry}/oci/busybox:v1"
    skopeo("copy", "--format", "oci", "--dest-tls-verify=false", f"docker-archive:{archive}",
           f"docker://{ref}")
    raw = json.loads(skopeo("inspect", "--raw", "--tls-verify=false", f"docker://{ref}"))
    assert raw["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    pulled = pull(ImageStore(tmp_path / "b"), ref)
    assert pulled.diff_ids == image.diff_ids and pulled.config == image.config


def test_multi_layer_image_round_trip(registry, tmp_path):
    from tests.unit.test_layers import make_tar
    store = ImageStore(tmp_path / "a")
    image = store.ensure_busybox()
    for n in range(4):
        layer = store.layers.import_stream(io.BytesIO(make_tar([(f"data{n}", "file", "x" * n * 999)])))
        image = store.new_image(image, image.config, layer, f"layer {n}")
    ref = f"{registry}/multi/app:1"
    store.tag(image.id, ref)
    push(store, ref)
    fresh = ImageStore(tmp_path / "b")
    fresh.ensure_busybox()  # the base layer is shared, so only the 4 new layers are fetched
    events: list[Progress] = []
    pulled = pull(fresh, ref, progress=events.append)
    assert pulled.id == image.id and len(pulled.layer_dirs) == 5
    assert sum(e.status == "Already exists" for e in events) == 1
    assert sum(e.status == "Pull complete" for e in events) == 4
    assert Path(pulled.layer_dirs[3], "data2").read_text() == "x" * 1998


def test_pull_of_a_missing_image_is_a_clear_error(registry, tmp_path):
    with pytest.raises(RegistryError, match="not found"):
        pull(ImageStore(tmp_path / "a"), f"{registry}/nothing/here:1")
