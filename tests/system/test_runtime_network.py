"""Containers on the bridge: talking to each other by IP, published ports reachable from the
host (127.0.0.1 included), sandboxes with an address, and nothing left after removal."""

from __future__ import annotations

import time
import urllib.request

import pytest

from pkube.cluster.etcd import free_port
from pkube.runtime.network import PortMapping
from pkube.runtime.spec import ContainerSpec, SandboxSpec

pytestmark = pytest.mark.root


def run(rt, script: str, **kw):
    state = rt.create(ContainerSpec(image="busybox", command=["sh", "-c", script], **kw))
    rt.start(state.id)
    return rt.get(state.id)


def stdout(rt, cid: str) -> str:
    return b"".join(e.data for e in rt.logs(cid) if e.stream == "stdout").decode()


def test_two_containers_talk_over_the_bridge(bridge_rt):
    rt = bridge_rt
    server = run(rt, "echo pong | nc -l -p 8080")
    ip = server.endpoint["ip"]
    assert ip.startswith(rt.network().subnet.network_address.exploded.rsplit(".", 1)[0])
    client = run(rt, f"for i in $(seq 100); do nc {ip} 8080 && break; sleep 0.1; done; ip -4 addr show eth0")
    assert rt.wait(client.id, timeout=60) == 0
    out = stdout(rt, client.id)
    assert out.startswith("pong\n") and client.endpoint["ip"] in out
    assert rt.wait(server.id, timeout=30) == 0
    rt.remove(server.id)
    rt.remove(client.id)
    assert rt.network().endpoints() == {}


def get_body(port: int) -> bytes | None:
    """The body of GET http://127.0.0.1:port/, tried up to 100 times 0.1 s apart while it fails; None if it never answers."""
    for _ in range(100):
        try:
            return urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5).read()
        except OSError:
            time.sleep(0.1)
    return None


def test_published_port_is_reachable_from_the_host(bridge_rt):
    rt = bridge_rt
    port = free_port()
    state = run(rt, "mkdir /www && echo served > /www/index.html && exec httpd -f -p 80 -h /www",
                port_mappings=[PortMapping(port, 80)])
    assert get_body(port) == b"served\n"
    rt.remove(state.id, force=True)
    assert rt.network().endpoints() == {}
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2)


def test_sandbox_on_the_bridge_gives_its_containers_one_address(bridge_rt):
    rt = bridge_rt
    sandbox = rt.create_sandbox(SandboxSpec(name="pod-net", network="bridge"))
    ip = sandbox.endpoint["ip"]
    member = rt.create(ContainerSpec(image="busybox", sandbox_id=sandbox.id, command=["sleep", "1000"]))
    rt.start(member.id)
    result = rt.exec(member.id, ["sh", "-c", "ip -4 addr show eth0; cat /etc/hosts"])
    assert ip in result.stdout.decode() and "pod-net" in result.stdout.decode()
    rt.remove_sandbox(sandbox.id)
    assert rt.network().endpoints() == {}


def test_sandbox_host_port_reaches_a_member_container(bridge_rt):
    rt = bridge_rt
    port = free_port()
    sandbox = rt.create_sandbox(SandboxSpec(name="pod-web", port_mappings=[PortMapping(port, 8080)]))
    web = rt.create(ContainerSpec(image="busybox", sandbox_id=sandbox.id, command=[
        "sh", "-c", "mkdir /www && echo pod > /www/index.html && exec httpd -f -p 8080 -h /www"]))
    rt.start(web.id)
    assert get_body(port) == b"pod\n"
    rt.remove_sandbox(sandbox.id)
    assert rt.network().endpoints() == {}


def test_network_container_mode_shares_the_peers_stack(bridge_rt):
    rt = bridge_rt
    peer = run(rt, "exec sleep 1000")
    joined = run(rt, "ip -4 addr show eth0", network=f"container:{peer.name}")
    rt.wait(joined.id, timeout=30)
    assert peer.endpoint["ip"] in stdout(rt, joined.id)
    rt.remove(joined.id)
    rt.remove(peer.id, force=True)


def test_pdocker_run_p_and_inspect_ip(pdocker):
    from tests.system.conftest import make_bridge
    net = make_bridge(pdocker.root)
    extra = ("--bridge", net.bridge, "--subnet", str(net.subnet), "--nft-table", net.firewall.table)
    port = free_port()
    try:
        pdocker("run", "-d", "--name", "site", "-p", f"{port}:80", "busybox", "sh", "-c",
                "mkdir /www && echo hello > /www/index.html && exec httpd -f -p 80 -h /www", extra=extra)
        assert get_body(port) == b"hello\n"
        ps = pdocker("ps", extra=extra).stdout
        assert f"0.0.0.0:{port}->80/tcp" in ps
        fmt = "{{.NetworkSettings.IPAddress}}"
        assert pdocker("inspect", "-f", fmt, "site", extra=extra).stdout.strip().startswith("10.201.")
        pdocker("rm", "-f", "site", extra=extra)
    finally:
        from tests.system.conftest import teardown_root
        teardown_root(pdocker.root, pdocker.parent)
        net.teardown()
