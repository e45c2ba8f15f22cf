"""Pod sandboxes: a pause process in new net, ipc and uts namespaces (and pid when the pod
shares its process namespace), supervised by a shim like any container, in the pod's
cgroup, with a veth on the runtime's bridge. Containers join it through
ContainerSpec(sandbox_id=...)."""

from __future__ import annotations

import os

from pkube.runtime import process
from pkube.runtime.launch import LaunchOptions
from pkube.runtime.names import claim_name
from pkube.runtime.namespaces import plan_for_sandbox
from pkube.runtime.spec import SandboxSpec, ShimConfig, SpecError
from pkube.runtime.state import ContainerState, new_id

SANDBOX_NETWORKS = ("bridge", "none", "host")


def create_sandbox(launcher, spec: SandboxSpec) -> str:
    """Create and start a sandbox through `launcher` (a runtime.launch.Launcher); returns its
    id (its record: kind "sandbox", `endpoint` holding its IP on the bridge). Raises
    SpecError, Conflict (name in use), StartError (the record then says exited)."""
    if spec.network not in SANDBOX_NETWORKS:
        raise SpecError(f"sandbox network {spec.network!r}: must be one of {', '.join(SANDBOX_NETWORKS)}")
    pause = launcher.binaries().pause
    state = _record(launcher.store, spec, pause)
    if spec.cgroup_parent and spec.resources is not None:
        launcher.cgroups().create(spec.cgroup_parent, spec.resources)
    cdir = launcher.store.dir(state.id)
    config = ShimConfig(
        argv=[pause], env=[], plan=plan_for_sandbox(spec.share_pid, spec.network == "host"),
        exit_file=os.path.join(cdir, "exit"), sock=process.socket_name(cdir),
        hostname=state.spec["hostname"], cwd="/")
    options = LaunchOptions(cgroup_parent=spec.cgroup_parent, bridge=spec.network == "bridge",
                            ports=spec.port_mappings, hostname=state.spec["hostname"])
    with launcher.store.locked(state.id):
        launcher.launch(state, config, options)
    return state.id


def _record(store, spec: SandboxSpec, pause: str) -> ContainerState:
    """The new sandbox's record, persisted with its name claimed (nothing runs yet)."""
    with store.locked():
        sid = new_id()
        claim_name(store, spec.name, sid, what="name")
        data = spec.to_dict()
        data["hostname"] = spec.hostname or spec.name
        state = ContainerState(id=sid, name=spec.name, image="pause", image_id="", kind="sandbox",
                               process={"argv": [pause], "env": [], "workdir": "/", "user": ""},
                               spec=data, labels=dict(spec.labels))
        try:
            os.makedirs(store.dir(sid))
            store.save(state)
        except BaseException:
            store.drop_name(spec.name, sid)
            raise
    return state
