"""etcd cluster membership, through the real etcdctl: list, add and remove members, as an
operator of a kubeadm control plane does with ``etcdctl member add/remove``.

Adding is two steps, and the order keeps the quorum right: ``add`` registers the new member
(the cluster's size grows by one at once, so a new member that never starts costs a vote),
then the new member starts with the ``initial_cluster`` ``add`` returns and
``existing=True`` (cluster.etcd.EtcdProcess). Removing a member shrinks the quorum before its
process goes, so a three-member cluster that loses one member this way still tolerates
another failure afterwards. The last member cannot be removed.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Optional, Sequence

from pkube.cluster.etcdbackup import etcdctl
from pkube.cluster.etcdpki import EtcdTLS
from pkube.cluster.up import ClusterError

SETTLE_TIMEOUT = 20.0


@dataclass(frozen=True)
class Member:
    """One member as etcd lists it (``id`` in hex, as etcdctl takes it)."""

    id: str
    name: str
    peer_urls: tuple[str, ...]
    client_urls: tuple[str, ...]


def _flags(endpoints: Sequence[str], tls: Optional[EtcdTLS]) -> list[str]:
    flags = ["--endpoints", ",".join(endpoints), "--command-timeout", "15s"]
    if tls is not None:
        flags += ["--cacert", str(tls.ca), "--cert", str(tls.cert), "--key", str(tls.key)]
    return flags


def members(endpoints: Sequence[str], tls: Optional[EtcdTLS] = None) -> list[Member]:
    """The cluster's members; a member added but not yet started has no name. Raises ClusterError."""
    listed = json.loads(etcdctl(*_flags(endpoints, tls), "member", "list", "-w", "json"))
    return [Member(format(m["ID"], "x"), m.get("name", ""), tuple(m.get("peerURLs") or ()),
                   tuple(m.get("clientURLs") or ())) for m in listed.get("members") or []]


def add(endpoints: Sequence[str], name: str, peer_url: str, tls: Optional[EtcdTLS] = None) -> str:
    """Register member ``name`` at ``peer_url``; the ``--initial-cluster`` it must start with.
    ClusterError when the name or the URL is taken, or etcd refuses."""
    current = members(endpoints, tls)
    if any(m.name == name for m in current):
        raise ClusterError(f"etcd already has a member named {name}")
    if any(peer_url in m.peer_urls for m in current):
        raise ClusterError(f"etcd already has a member at {peer_url}")
    added = []
    _retry_while_settling(lambda: added.append(
        etcdctl(*_flags(endpoints, tls), "member", "add", name, f"--peer-urls={peer_url}", "-w", "json")))
    return initial_cluster(json.loads(added[-1]), name)


def initial_cluster(response: dict, name: str) -> str:
    """The ``--initial-cluster`` of member ``name`` from etcd's answer to its MemberAdd (whose
    member list shows the new member without a name). Read from that answer, not listed again:
    since etcd 3.5 a member list is linearizable, and a cluster of one that has just added a
    second member has no quorum until the second starts."""
    listed = response.get("members") or []
    return ",".join(f"{m.get('name') or name}={m['peerURLs'][0]}" for m in listed if m.get("peerURLs"))


def remove(endpoints: Sequence[str], name: str, tls: Optional[EtcdTLS] = None) -> Member:
    """Remove member ``name``; the member removed. ClusterError when there is no such member or it
    is the last one."""
    current = members(endpoints, tls)
    found = [m for m in current if m.name == name]
    if not found:
        raise ClusterError(f"etcd has no member named {name} (members: {', '.join(m.name for m in current)})")
    if len(current) == 1:
        raise ClusterError(f"{name} is etcd's last member: removing it would lose every object")
    _retry_while_settling(lambda: etcdctl(*_flags(endpoints, tls), "member", "remove", found[0].id))
    return found[0]


def _retry_while_settling(change, timeout: float = SETTLE_TIMEOUT) -> None:
    """Run ``change``, again while etcd answers "unhealthy cluster": with strict reconfiguration
    checks, etcd refuses a change until its members have been connected for a few seconds
    (a cluster just started, a member just added or restarted)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            change()
            return
        except ClusterError as exc:
            if "unhealthy cluster" not in str(exc) or time.monotonic() > deadline:
                raise
        time.sleep(0.5)
