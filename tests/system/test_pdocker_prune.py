"""pdocker's prune verbs and `network ls` as a user sees them: what goes, what stays, Docker's
report, and a refusal instead of a hang when nobody can confirm.

Every test has its own root, cgroup parent and (for the bridge) its own bridge, subnet and nft
table; the image tests get their own copy of the session's images, so that pruning them
leaves the other tests' busybox alone.
"""

from __future__ import annotations

import os
import pty
import shutil
import subprocess

import pytest

from pkube.runtime import netlink
from pkube.runtime.network import veth_name
from tests.system.conftest import make_bridge, teardown_root
from tests.system.test_pdocker_cli import _read_until

pytestmark = pytest.mark.root


def nft_tables() -> str:
    return subprocess.run(["nft", "list", "tables"], capture_output=True, text=True, check=True).stdout


@pytest.fixture
def bridge(pdocker):
    """The test's own bridge network: (BridgeNetwork, the global options naming it). Torn down
    afterwards, and checked: no bridge, veth or nft table of it is left."""
    net = make_bridge(pdocker.root)
    options = ("--bridge", net.bridge, "--subnet", str(net.subnet), "--nft-table", net.nft_table)
    try:
        yield net, options
    finally:
        teardown_root(pdocker.root, pdocker.parent)
        net.teardown()
        assert not netlink.link_exists(net.bridge)
        assert not any(netlink.link_exists(veth_name(ip)) for ip in list(net.subnet.hosts())[:8])
        assert f"table ip {net.nft_table}\n" not in nft_tables()


@pytest.fixture
def own_images(pdocker, runtime_assets):
    """The test's root gets a copy of the session's images instead of the shared link."""
    images = pdocker.root / "images"
    images.unlink()
    shutil.copytree(runtime_assets / "images", images, symlinks=True)


def ids(pdocker) -> list[str]:
    return pdocker("ps", "-a", "-q", "--no-trunc").stdout.split()


def test_container_prune_removes_stopped_containers_and_keeps_running_ones(pdocker):
    running = pdocker("run", "-d", "--network", "none", "busybox", "sleep", "300").stdout.strip()
    pdocker("run", "--network", "none", "busybox", "sh", "-c", "head -c 300000 /dev/zero > /big")
    created = pdocker("create", "--network", "none", "busybox", "true").stdout.strip()
    exited = next(i for i in ids(pdocker) if i not in (running, created))
    out = pdocker("container", "prune", "-f").stdout.splitlines()
    assert out[0] == "Deleted Containers:" and sorted(out[1:3]) == sorted([exited, created])
    assert out[3] == "" and out[4].startswith("Total reclaimed space: ") and out[4] != "Total reclaimed space: 0B"
    assert ids(pdocker) == [running]
    containers = pdocker.root / "containers"
    assert (containers / running).is_dir()
    assert not (containers / exited).exists() and not (containers / created).exists()
    assert pdocker("container", "prune", "-f").stdout == "Total reclaimed space: 0B\n"
    pdocker("rm", "-f", running)


def test_image_prune_removes_dangling_images_and_with_a_every_unused_one(pdocker, own_images):
    pdocker("run", "--name", "base", "--network", "none", "busybox", "sh", "-c", "echo x > /f")
    dangling = pdocker("commit", "base").stdout.strip()
    pdocker("commit", "base", "used:1")
    unused = pdocker("commit", "base", "unused:1").stdout.strip()
    pdocker("create", "--name", "user", "--network", "none", "used:1", "true")
    out = pdocker("image", "prune", "-f").stdout
    assert out.startswith("Deleted Images:\n") and f"deleted: {dangling}\n" in out
    assert dangling[7:19] not in pdocker("images", "-q").stdout
    out = pdocker("image", "prune", "-a", "-f").stdout
    assert "untagged: unused:1\n" in out and f"deleted: {unused}\n" in out
    assert out.endswith("\n\n" + out.splitlines()[-1] + "\n") and "Total reclaimed space: " in out
    left = {line.split()[0] for line in pdocker("images").stdout.splitlines()[1:]}
    assert left == {"busybox", "used"}   # used by `base` and by the never started `user`
    pdocker("rm", "base", "user")
    pdocker("image", "prune", "-a", "-f")
    assert pdocker("images", "-q").stdout == ""


def test_network_prune_keeps_a_used_bridge_and_removes_an_unused_one(pdocker, bridge):
    net, options = bridge
    pdocker("run", "-d", "--name", "web", "busybox", "sleep", "300", extra=options)
    assert netlink.link_exists(net.bridge) and f"table ip {net.nft_table}\n" in nft_tables()
    listing = pdocker("network", "ls", extra=options).stdout.splitlines()
    assert listing[0].split() == ["NETWORK", "ID", "NAME", "DRIVER", "SCOPE"]
    assert [line.split()[1:] for line in listing[1:]] == [["bridge", "bridge", "local"], ["host", "host", "local"],
                                                          ["none", "null", "local"]]
    pdocker("stop", "-t", "0", "web", extra=options)
    kept = pdocker("network", "prune", "-f", extra=options)   # a stopped container still uses it
    assert kept.stdout == f"Kept network bridge ({net.bridge}): in use by web\n\n" and kept.returncode == 0
    assert netlink.link_exists(net.bridge) and f"table ip {net.nft_table}\n" in nft_tables()
    pdocker("rm", "web", extra=options)
    assert pdocker("network", "prune", "-f", extra=options).stdout == "Deleted Networks:\nbridge\n\n"
    assert not netlink.link_exists(net.bridge) and f"table ip {net.nft_table}\n" not in nft_tables()
    assert not (pdocker.root / "network" / "ipam.json").exists()
    assert pdocker("network", "ls", "-q", extra=options).stdout.count("\n") == 2   # host and none
    assert pdocker("network", "prune", "-f", extra=options).stdout == ""


def test_system_prune_removes_containers_then_the_network_then_images(pdocker, bridge, own_images):
    net, options = bridge
    pdocker("run", "--name", "done", "busybox", "sh", "-c", "echo x > /f", extra=options)
    dangling = pdocker("commit", "done", extra=options).stdout.strip()
    keep = pdocker("run", "-d", "--network", "none", "busybox", "sleep", "300", extra=options).stdout.strip()
    out = pdocker("system", "prune", "-f", "-a", extra=options).stdout
    sections = [out.index(title) for title in ("Deleted Containers:", "Deleted Networks:", "Deleted Images:",
                                               "Total reclaimed space: ")]
    assert sections == sorted(sections) and f"deleted: {dangling}\n" in out
    assert ids(pdocker) == [keep] and not netlink.link_exists(net.bridge)
    assert pdocker("images", "-q").stdout.split() != [] and "busybox" in pdocker("images").stdout
    pdocker("rm", "-f", keep, extra=options)   # each call names the test's network (without, the default one is set up)


def test_prune_without_f_refuses_when_stdin_is_not_a_terminal(pdocker):
    stopped = pdocker("create", "--network", "none", "busybox", "true").stdout.strip()
    for verb in ("container", "image", "network", "system"):
        result = pdocker(verb, "prune", input="y\n", check=False)
        assert result.returncode == 125 and result.stdout == "", verb
        assert result.stderr.startswith(f"pdocker: error: {verb} prune asks for confirmation")
        assert result.stderr.count("\n") == 1 and "-f" in result.stderr
    assert ids(pdocker) == [stopped]
    for args in (("container", "prune", "--bogus"), ("network", "frob"), ("image",), ("system", "prune", "x")):
        result = pdocker(*args, check=False)
        assert result.returncode == 125 and "Traceback" not in result.stderr, args
        assert result.stderr.startswith("pdocker: error: ") and result.stderr.count("\n") == 1, args


def test_prune_asks_on_a_terminal_and_only_y_removes(pdocker):
    stopped = pdocker("create", "--network", "none", "busybox", "true").stdout.strip()
    for answer, code, left in ((b"n\r", 1, [stopped]), (b"y\r", 0, [])):
        master, slave = pty.openpty()
        proc = subprocess.Popen(pdocker.cmd + ["container", "prune"], stdin=slave, stdout=slave,
                                stderr=slave, start_new_session=True)
        os.close(slave)
        try:
            seen = _read_until(master, b"[y/N] ")
            assert b"WARNING! This will remove all stopped containers." in seen
            os.write(master, answer)
            assert proc.wait(timeout=20) == code
        finally:
            if proc.poll() is None:
                proc.kill()
            os.close(master)
        assert ids(pdocker) == left
