"""pkubectl port-forward's framing and cp's tar handling, without a server; and how a refused
stream upgrade (the apiserver's Status body) becomes kubectl's line."""

import io
import tarfile

import pytest

from pkube.client.errors import ApiError
from pkube.kubectl.cp import CopySpec, pack, parse_copy_spec, unpack
from pkube.kubectl.errors import CliError
from pkube.kubectl.portforward import ChannelDecoder, PortMapping, data_frame, parse_port_specs, service_target_ports
from pkube.kubectl.streams import refusal_status


# ---------------------------------------------------------------- port-forward

def test_port_specs():
    assert parse_port_specs(["8080:80", "9090", ":53"]) == [PortMapping(8080, 80), PortMapping(9090, 9090),
                                                            PortMapping(0, 53)]
    for bad in (["http"], ["8080:0"], ["70000"]):
        with pytest.raises(CliError, match="error parsing port spec"):
            parse_port_specs(bad)
    with pytest.raises(CliError, match="list of ports are required"):
        parse_port_specs([])


def test_the_first_message_of_each_channel_carries_the_port_little_endian():
    decoder = ChannelDecoder()
    assert decoder.decode(bytes([0, 0x90, 0x1f])) == (0, b"")       # 8080 = 0x1f90
    assert decoder.decode(bytes([1, 0x90, 0x1f])) == (1, b"")
    assert decoder.ports == {0: 8080, 1: 8080}
    assert decoder.decode(b"\x00HTTP/1.1 200 OK") == (0, b"HTTP/1.1 200 OK")
    assert decoder.decode(b"\x00\x90\x1f") == (0, b"\x90\x1f")       # later messages are data, even these bytes
    assert ChannelDecoder().decode(bytes([0, 80, 0]) + b"early data") == (0, b"early data")
    with pytest.raises(ValueError, match="2-byte port"):
        ChannelDecoder().decode(bytes([1, 80]))
    with pytest.raises(ValueError, match="no channel"):
        ChannelDecoder().decode(b"")
    assert data_frame(b"GET /") == b"\x00GET /"


def test_a_service_port_becomes_the_pods_target_port():
    service = {"metadata": {"name": "web"}, "spec": {"ports": [{"port": 80, "targetPort": "http"},
                                                               {"port": 443, "targetPort": 8443}, {"port": 53}]}}
    pod = {"metadata": {"name": "web-1"}, "spec": {"containers": [{"ports": [{"name": "http", "containerPort": 8080}]}]}}
    assert service_target_ports(service, pod, [PortMapping(0, 80), PortMapping(1, 443), PortMapping(2, 53)]) == \
        [PortMapping(0, 8080), PortMapping(1, 8443), PortMapping(2, 53)]
    with pytest.raises(CliError, match="does not have a service port 81"):
        service_target_ports(service, pod, [PortMapping(0, 81)])


# ---------------------------------------------------------------- cp

def test_copy_specs():
    assert parse_copy_spec("web:/tmp/x") == CopySpec("/tmp/x", "web", None)
    assert parse_copy_spec("team/web:/tmp/x") == CopySpec("/tmp/x", "web", "team")
    assert parse_copy_spec("/tmp/a:b") == CopySpec("/tmp/a:b")
    assert parse_copy_spec("./a:b") == CopySpec("./a:b")
    assert parse_copy_spec("local.txt") == CopySpec("local.txt")


def test_pack_names_the_top_entry_and_unpack_maps_the_remote_prefix(tmp_path):
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "a.txt").write_text("alpha")
    (tree / "sub" / "b.txt").write_text("beta")
    data = pack(tree, "renamed")
    names = sorted(tarfile.open(fileobj=io.BytesIO(data)).getnames())
    assert names == ["renamed", "renamed/a.txt", "renamed/sub", "renamed/sub/b.txt"]
    assert unpack(data, "renamed", tmp_path / "copy", warn=print) == 4
    assert (tmp_path / "copy" / "sub" / "b.txt").read_text() == "beta"
    single = pack(tree / "a.txt", "one.txt")
    unpack(single, "/one.txt", tmp_path / "single.txt", warn=print)
    assert (tmp_path / "single.txt").read_text() == "alpha"
    with pytest.raises(CliError, match="doesn't exist in local filesystem"):
        pack(tmp_path / "missing", "x")


def _tar(*members: tarfile.TarInfo) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for member in members:
            archive.addfile(member, io.BytesIO(b"x" * member.size) if member.isfile() else None)
    return buffer.getvalue()


def _member(name: str, kind=tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.size = kind, link, 1 if kind == tarfile.REGTYPE else 0
    return info


def test_unpack_never_writes_outside_the_destination(tmp_path):
    warnings = []
    data = _tar(_member("data/ok"), _member("data/link", tarfile.SYMTYPE, "/etc/passwd"))
    assert unpack(data, "data", tmp_path / "dest", warnings.append) == 1
    assert (tmp_path / "dest" / "ok").read_bytes() == b"x" and not (tmp_path / "dest" / "link").exists()
    assert warnings == [f'warning: skipping symlink: "{tmp_path / "dest" / "link"}" -> "/etc/passwd"']
    with pytest.raises(CliError, match="tar contents corrupted"):
        unpack(_tar(_member("data/../../escape")), "data", tmp_path / "dest", warnings.append)
    with pytest.raises(CliError, match="tar contents corrupted"):
        unpack(_tar(_member("elsewhere/file")), "data", tmp_path / "dest", warnings.append)
    assert not (tmp_path / "escape").exists()


# ---------------------------------------------------------------- a refused upgrade

def test_a_refused_upgrade_with_a_status_is_that_status():
    body = (b'{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"ServiceUnavailable",'
            b'"message":"node \\"n1\\" has no address"}')
    assert refusal_status(503, body) == {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 503,
                                         "reason": "ServiceUnavailable", "message": 'node "n1" has no address'}
    assert refusal_status(403, b"") is None
    assert refusal_status(500, "Internal Server Error") is None


def test_connect_turns_the_status_into_kubectls_line(monkeypatch):
    import websocket

    from pkube.kubectl.cli import api_error_line
    from pkube.kubectl.streams import connect

    def refuse(*args, **kwargs):
        raise websocket.WebSocketBadStatusException(
            "Handshake status %d %s", 503, "Service Unavailable", {},
            b'{"kind":"Status","status":"Failure","reason":"ServiceUnavailable","message":"kubelet gone"}')
    monkeypatch.setattr(websocket, "create_connection", refuse)
    session = type("S", (), {"config": type("C", (), {"server": "http://127.0.0.1:1", "token": None})()})()
    with pytest.raises(ApiError) as raised:
        connect(session, "/api/v1/namespaces/default/pods/web/exec", "command=ls", ("v5.channel.k8s.io",))
    assert api_error_line(raised.value) == "Error from server (ServiceUnavailable): kubelet gone"
