"""Which namespaces a container creates and which it joins.

The decision (spec) is made here; the mechanism is `unshare_or_setns`, which exists twice:
in C in the shim for containers (pkube/runtime/shim.c), and here for in-process use. Both take the
same plan: a namespace with a path is joined, one without is created.
"""

from __future__ import annotations

from pkube.runtime import syscalls
from pkube.runtime.records import Record

FLAGS = {
    "mnt": syscalls.CLONE_NEWNS, "uts": syscalls.CLONE_NEWUTS, "ipc": syscalls.CLONE_NEWIPC,
    "net": syscalls.CLONE_NEWNET, "pid": syscalls.CLONE_NEWPID, "cgroup": syscalls.CLONE_NEWCGROUP,
}
ALL = ("mnt", "uts", "ipc", "net", "pid", "cgroup")


class NamespacePlan(Record):
    """`join` maps a namespace type to the path to setns into; every other type in `create`
    is unshared; a type in neither is shared with the host."""

    FIELDS = (("create", []), ("join", {}))


def plan_for(network: str, sandbox_pid: int | None = None, share_pid: bool = False,
             peer_pid: int | None = None) -> NamespacePlan:
    """The plan of a container.

    `network` is "bridge", "none", "host" or "container:<x>" (then `peer_pid` is the running
    peer's pid); `sandbox_pid` (the pause process) wins over `network`: net, ipc and uts are
    joined from it, and pid too when `share_pid`.
    """
    plan = NamespacePlan(create=["mnt", "pid", "cgroup"])
    if sandbox_pid is not None:
        shared = ["net", "ipc", "uts"] + (["pid"] if share_pid else [])
        plan.join = {ns: f"/proc/{sandbox_pid}/ns/{ns}" for ns in shared}
        plan.create = [ns for ns in plan.create if ns not in plan.join]
        return plan
    plan.create += ["uts", "ipc"]
    if network == "host":
        return plan
    if network.startswith("container:"):
        if peer_pid is None:
            raise ValueError(f"network {network}: the peer container is not running")
        plan.join["net"] = f"/proc/{peer_pid}/ns/net"
    else:
        plan.create.append("net")
    return plan


def plan_for_sandbox(share_pid: bool, host_network: bool = False) -> NamespacePlan:
    """The pause process creates the namespaces its pod's containers will join."""
    create = ["ipc", "uts"] + ([] if host_network else ["net"]) + (["pid"] if share_pid else [])
    return NamespacePlan(create=create)


def plan_for_exec(pid: int) -> NamespacePlan:
    """An exec joins every namespace of the container's process."""
    return NamespacePlan(join={ns: f"/proc/{pid}/ns/{ns}" for ns in ALL})


def unshare_or_setns(ns: str, path: str | None = None) -> None:
    """Join namespace `ns` at `path` when given, else create a new one (calling process)."""
    if ns not in FLAGS:
        raise ValueError(f"unknown namespace {ns!r}; known: {', '.join(ALL)}")
    if path:
        syscalls.setns(path, FLAGS[ns])
    else:
        syscalls.unshare(FLAGS[ns])
