"""The control plane's static pod manifests (manifests/ filled in by cluster.manifests) and
the host image their containers run from (runtime.hostimage)."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest
import yaml

from pkube.apiserver.__main__ import parse_args
from pkube.cluster import up
from pkube.cluster.etcd import SNAPSHOT_COUNT
from pkube.cluster.manifests import (CONTROL_PLANE, ManifestError, ManifestValues, manifest_path, remove_manifests,
                               render, write_manifest)
from pkube.kubelet.static import parse_manifest
from pkube.runtime.hostimage import (HostImageError, ensure_host_image, image_ref, mount_points, write_rootfs_tar)
from pkube.runtime.imagestore import ImageStore
from pkube.runtime.layertree import lookup

MOUNTS = ["/usr", "/opt/python"]


def values(data_dir: str = "/var/lib/pkube") -> ManifestValues:
    return ManifestValues(image="pkube/host:0123456789ab", python="/opt/venv/bin/python", etcd="/usr/bin/etcd",
                          data_dir=data_dir, pki_dir=f"{data_dir}/pki",
                          scheduler_kubeconfig=f"{data_dir}/scheduler.kubeconfig",
                          controller_manager_kubeconfig=f"{data_dir}/controller-manager.kubeconfig", apiserver_port=6443,
                          etcd_client_port=2379, etcd_peer_port=2380)


def probes(container: dict) -> list[dict]:
    return [container[k] for k in ("livenessProbe", "readinessProbe", "startupProbe") if k in container]


@pytest.mark.parametrize("name", CONTROL_PLANE)
def test_each_template_is_a_host_network_pod_in_kube_system_on_the_host_image(name):
    pod = render(name, values(), MOUNTS)
    assert pod["metadata"]["name"] == name
    assert pod["metadata"]["namespace"] == "kube-system"
    assert pod["spec"]["hostNetwork"] is True
    [container] = pod["spec"]["containers"]
    assert container["image"] == "pkube/host:0123456789ab"
    assert all(isinstance(arg, str) for arg in container["command"])
    assert container["imagePullPolicy"] == "IfNotPresent"
    for probe in probes(container):        # a string port would be a named port
        assert probe["httpGet"]["port"] in (6443, 2379)
    assert parse_manifest(f"{name}.yaml", yaml.safe_dump(pod)) == [pod]     # the kubelet takes it


@pytest.mark.parametrize("name", CONTROL_PLANE)
def test_every_container_gets_the_installation_read_only_at_the_same_path(name):
    pod = render(name, values(), MOUNTS)
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    [container] = pod["spec"]["containers"]
    mounted = {m["mountPath"]: m for m in container["volumeMounts"]}
    for path in MOUNTS:
        assert mounted[path]["readOnly"] is True
        assert volumes[mounted[path]["name"]]["hostPath"]["path"] == path
    assert all(len(name) <= 63 for name in volumes)
    assert {"name": "PYTHONUNBUFFERED", "value": "1"} in container["env"]


def test_the_commands_run_the_given_interpreter_etcd_and_ports():
    apiserver = render("kube-apiserver", values(), MOUNTS)["spec"]["containers"][0]["command"]
    assert apiserver[:3] == ["/opt/venv/bin/python", "-m", "pkube.apiserver"]
    assert "--etcd-servers http://127.0.0.1:2379" in " ".join(apiserver) and "--port 6443" in " ".join(apiserver)
    etcd = render("etcd", values(), MOUNTS)["spec"]["containers"][0]["command"]
    assert etcd[0] == "/usr/bin/etcd"
    assert "--listen-client-urls http://127.0.0.1:2379" in " ".join(etcd)
    assert "--initial-cluster pkube=http://127.0.0.1:2380" in " ".join(etcd)
    assert f"--snapshot-count {SNAPSHOT_COUNT}" in " ".join(etcd)     # as EtcdProcess runs it
    for name, own in (("kube-scheduler", "scheduler"), ("kube-controller-manager", "controller-manager")):
        command = render(name, values(), MOUNTS)["spec"]["containers"][0]["command"]
        assert f"--kubeconfig /var/lib/pkube/{own}.kubeconfig" in " ".join(command)   # never the admin's


def test_the_apiserver_serves_https_with_the_cluster_ca_and_verifies_kubelets():
    pod = render("kube-apiserver", values(), MOUNTS)
    [container] = pod["spec"]["containers"]
    command = " ".join(container["command"])
    for flag in ("--tls-cert-file /var/lib/pkube/pki/apiserver.crt", "--client-ca-file /var/lib/pkube/pki/ca.crt",
                 "--kubelet-certificate-authority /var/lib/pkube/pki/ca.crt",
                 "--kubelet-client-certificate /var/lib/pkube/pki/apiserver-kubelet-client.crt"):
        assert flag in command
    assert "--kubelet-insecure-skip-tls-verify" not in command
    assert all(probe["httpGet"]["scheme"] == "HTTPS" for probe in probes(container))


def test_the_apiserver_is_the_front_proxy_to_extensions_with_kubeadms_flags():
    """The same flags in the static pod and in the apiserver pkube up runs as a process (HA)."""
    [container] = render("kube-apiserver", values(), MOUNTS)["spec"]["containers"]
    from_template = parse_args(container["command"][3:])
    from_process = parse_args(up.apiserver_security_flags(Path("/var/lib/pkube/pki")))
    for args in (from_template, from_process):
        assert args.proxy_client_cert_file == "/var/lib/pkube/pki/front-proxy-client.crt"
        assert args.proxy_client_key_file == "/var/lib/pkube/pki/front-proxy-client.key"
        assert args.requestheader_client_ca_file == "/var/lib/pkube/pki/front-proxy-ca.crt"
        assert args.requestheader_allowed_names == ["front-proxy-client"]
        assert args.requestheader_username_headers == ["X-Remote-User"]
        assert args.requestheader_group_headers == ["X-Remote-Group"]
        assert args.requestheader_extra_headers_prefix == ["X-Remote-Extra-"]
    mounted = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert mounted["/var/lib/pkube/pki"]["readOnly"] is True


def test_a_data_dir_with_quotes_spaces_and_hashes_survives_the_template():
    odd = '/tmp/a "b" #c: d\\e'
    pod = render("etcd", values(odd), MOUNTS)
    command = pod["spec"]["containers"][0]["command"]
    assert command[command.index("--data-dir") + 1] == f"{odd}/etcd"
    assert {"name": "etcd-data", "hostPath": {"path": f"{odd}/etcd", "type": "DirectoryOrCreate"}} in pod["spec"]["volumes"]


def test_an_unknown_placeholder_or_a_missing_template_is_a_clear_error(tmp_path):
    (tmp_path / "etcd.yaml").write_text('kind: Pod\nspec: {containers: [{name: x, image: "${nope}"}]}\n')
    with pytest.raises(ManifestError, match="etcd.yaml: unknown placeholder 'nope'"):
        render("etcd", values(), MOUNTS, templates=tmp_path)
    with pytest.raises(ManifestError, match="kube-apiserver.yaml"):
        render("kube-apiserver", values(), MOUNTS, templates=tmp_path)
    (tmp_path / "etcd.yaml").write_text("kind: ConfigMap\n")
    with pytest.raises(ManifestError, match="not a Pod"):
        render("etcd", values(), MOUNTS, templates=tmp_path)


def test_manifests_are_written_whole_and_only_ours_are_removed(tmp_path):
    other = tmp_path / "mine.yaml"
    other.write_text("kept")
    for name in CONTROL_PLANE:
        write_manifest(tmp_path, name, render(name, values(), MOUNTS))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*(f"{n}.yaml" for n in CONTROL_PLANE), "mine.yaml"])
    assert parse_manifest("x", manifest_path(tmp_path, "etcd").read_text())[0]["metadata"]["name"] == "etcd"
    remove_manifests(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["mine.yaml"]


# ----- the host image -----

def test_mount_points_drop_nested_paths_and_know_files(tmp_path):
    (tmp_path / "venv").mkdir()
    (tmp_path / "cache").write_text("")
    points = mount_points([str(tmp_path), str(tmp_path / "venv"), str(tmp_path / "cache"), "/usr"])
    assert points == {str(tmp_path).lstrip("/"): True, "usr": True}
    assert mount_points([str(tmp_path / "cache")]) == {str(tmp_path / "cache").lstrip("/"): False}


@pytest.mark.parametrize("path", ["relative/path", "/no/such/path/anywhere"])
def test_a_bad_installation_path_is_refused(path):
    with pytest.raises(HostImageError, match=path):
        mount_points([path])


def tar_members(points: dict, links: dict) -> dict[str, tarfile.TarInfo]:
    out = io.BytesIO()
    write_rootfs_tar(out, points, links)
    out.seek(0)
    with tarfile.open(fileobj=out) as tf:
        return {m.name: m for m in tf.getmembers()}


def test_the_image_root_holds_mount_points_links_and_a_minimal_etc():
    members = tar_members({"usr": True, "opt/py/3.11": True, "etc/ld.so.cache": False}, {"lib64": "usr/lib64"})
    assert members["opt/py/3.11"].isdir() and members["opt/py"].isdir()
    assert members["etc/ld.so.cache"].isfile() and members["etc/ld.so.cache"].size == 0
    assert members["lib64"].issym() and members["lib64"].linkname == "usr/lib64"
    assert members["tmp"].mode == 0o1777
    assert {"etc/passwd", "etc/group", "etc/hosts"} <= members.keys()
    assert not any(m.isfile() and m.size and not m.name.startswith("etc/") for m in members.values())


def test_the_image_is_deterministic_and_named_after_its_paths():
    one, two = io.BytesIO(), io.BytesIO()
    write_rootfs_tar(one, {"usr": True}, {"lib": "usr/lib"})
    write_rootfs_tar(two, {"usr": True}, {"lib": "usr/lib"})
    assert one.getvalue() == two.getvalue()
    assert image_ref({"usr": True}, {}) == image_ref({"usr": True}, {})
    assert image_ref({"usr": True}, {}) != image_ref({"usr": True, "opt": True}, {})


def test_a_mount_point_under_a_host_symlink_is_refused():
    with pytest.raises(HostImageError, match="/lib/python3"):
        write_rootfs_tar(io.BytesIO(), {"lib/python3": True}, {"lib": "usr/lib"})


def test_ensure_host_image_makes_it_once(tmp_path):
    store = ImageStore(tmp_path / "images")
    (tmp_path / "install").mkdir()
    ref = ensure_host_image(store, [str(tmp_path / "install"), "/usr"])
    image = store.get(ref)
    assert Path(lookup(image.layer_dirs, str(tmp_path / "install"))).is_dir()
    assert os.listdir(lookup(image.layer_dirs, str(tmp_path / "install"))) == []
    assert ensure_host_image(store, [str(tmp_path / "install"), "/usr"]) == ref
    assert len(store.list()) == 1


def test_extra_flags_end_the_static_pods_command_and_parse_as_the_components_own():
    from pkube.controllers.__main__ import parse_args as controllers_args
    command = render("kube-controller-manager", values(), MOUNTS,
                     up.extra_flags(["node-monitor-grace-period=25", "--resync-period=60"]))["spec"]["containers"][0]["command"]
    assert command[-2:] == ["--node-monitor-grace-period=25", "--resync-period=60"]
    parsed = controllers_args(command[command.index("pkube.controllers") + 1:])
    assert (parsed.node_monitor_grace_period, parsed.resync_period) == (25.0, 60.0)


def test_extra_flags_reach_the_components_run_as_processes(tmp_path):
    config = up.ClusterConfig(data_dir=tmp_path, kubelet=False,
                              extra_args={"kube-apiserver": ["max-requests-inflight=800"],
                                          "kube-controller-manager": ["node-monitor-grace-period=25"]})
    argv = {c.name: c.argv for c in up.control_plane(config, "http://127.0.0.1:2379")}
    assert argv["apiserver"][-1] == "--max-requests-inflight=800"
    assert parse_args(argv["apiserver"][argv["apiserver"].index("pkube.apiserver") + 1:]).max_requests_inflight == 800
    assert argv["controllers"][-1] == "--node-monitor-grace-period=25"
    assert not any(a.startswith("--node-monitor") or a.startswith("--max-req") for a in argv["scheduler"])
