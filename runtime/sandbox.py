"""Pod sandboxes: a pause process in new net, ipc and uts namespaces (and pid when the pod
shares its process namespace), supervised by a shim like any container, in the pod's
cgroup, with a veth on the runtime's bridge. Containers join it through
ContainerSpec(sandbox_id=...)."""

from __future__ import annotations

import os

from runtime import process
from runtime.namespaces import plan_for_sandbox
from runtime.spec import SandboxSpec, ShimConfig, SpecError
from runtime.state import ContainerState

SANDBOX_NETWORKS = ("bridge", "none", "host")


def create_sandbox(runtime, spec: SandboxSpec) -> ContainerState:
    """Create and start a sandbox; returns its record (kind "sandbox", `endpoint` holding
    its IP on the bridge). Raises SpecError, Conflict (name in use), StartError."""
    from runtime.runtime import new_id
    if spec.network not in SANDBOX_NETWORKS:
        raise SpecError(f"sandbox network {spec.network!r}: must be one of {', '.join(SANDBOX_NETWORKS)}")
    pause = runtime.binaries().pause
    with runtime.store.locked():
        sid = new_id()
        runtime._reserve_name(spec.name, sid, what="name")
        cdir = runtime.store.dir(sid)
        data = spec.to_dict()
        data["hostname"] = spec.hostname or spec.name
        state = ContainerState(id=sid, name=spec.name, image="pause", image_id="", kind="sandbox",
                               process={"argv": [pause], "env": [], "workdir": "/", "user": ""},
                               spec=data, labels=dict(spec.labels))
        try:
            os.makedirs(cdir)
            runtime.store.save(state)
        except BaseException:
            runtime.store.drop_name(spec.name, sid)
            raise
    if spec.cgroup_parent and spec.resources is not None:
        runtime.cgroups.create(spec.cgroup_parent, spec.resources)
    config = ShimConfig(
        argv=[pause], env=[], plan=plan_for_sandbox(spec.share_pid, spec.network == "host"),
        exit_file=os.path.join(cdir, "exit"), sock=process.socket_name(cdir),
        hostname=data["hostname"], cwd="/")
    with runtime.store.locked(sid):
        runtime._launch(state, config, None, spec.cgroup_parent, None,
                        bridge=spec.network == "bridge", ports=spec.port_mappings, init=(data["hostname"], ""))
    return runtime.get(sid)
