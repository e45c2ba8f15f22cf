"""Starting a recorded container's process under its shim, and the resources a started
container holds: its cgroup and its place on the bridge network.

The Runtime owns one Launcher and hands it to the modules that start processes of their own
(runtime.exec for `exec`, runtime.sandbox for pod sandboxes), so that none of them reaches
into the Runtime: the Launcher is the whole of what they share.
"""

from __future__ import annotations

from pkube.runtime import process, rootfs
from pkube.runtime.records import Record
from pkube.runtime.spec import ShimConfig
from pkube.runtime.state import ContainerState, StateStore, Status, now_iso


class LaunchOptions(Record):
    """How Launcher.launch starts a process.

    resources: a runtime.cgroups.Resources for its cgroup, or None;
    cgroup_parent: the cgroup its own goes under (None: the Launcher's default);
    attach: None, or 'a' (output + stdin) / 'o' (output): launch then returns an Attachment
      connected before the process ran, so that no output is missed;
    bridge: give it a veth on the bridge network (its address then goes into the init layer);
    ports: runtime.network PortMappings published to its bridge address;
    hostname, ip: what the init layer's /etc/hostname and /etc/hosts say when not on the bridge
      (ip "": no address line).
    """

    FIELDS = (("resources", None), ("cgroup_parent", None), ("attach", None), ("bridge", False),
              ("ports", ()), ("hostname", ""), ("ip", ""))


class Launcher:
    """Starts processes for the records of one StateStore.

    `cgroups`, `network` and `binaries` are called when first needed and return the
    runtime.cgroups CgroupManager, the runtime.network BridgeNetwork (already ensured) and the
    process.Binaries (shim, pause): the Runtime makes them lazily, so that a command that
    needs none of them imports none of their modules. `cgroup_parent` is where a container's
    cgroup goes when its options name no parent.
    """

    def __init__(self, store: StateStore, *, cgroups, network, binaries, cgroup_parent: str):
        self.store = store
        self.cgroups = cgroups
        self.network = network
        self.binaries = binaries
        self.cgroup_parent = cgroup_parent

    def cgroup_of(self, state: ContainerState):
        """The container's cgroup (runtime.cgroups), or None when it has none recorded or it
        cannot be opened (gone already)."""
        if not state.cgroup:
            return None
        try:
            return self.cgroups().open(state.cgroup)
        except Exception:
            return None

    def launch(self, state: ContainerState, config: ShimConfig, options: LaunchOptions):
        """Called under the record's lock: start `config` under a shim, in a new cgroup, and
        persist `state` as running (pid, shim pid, start times, endpoint). Returns the
        Attachment when `options.attach`, else None. On failure the start is undone (cgroup,
        network), the record persisted as exited with the error (code 126 or 127) and the
        exception re-raised (process.StartError: the shim's message)."""
        cdir = self.store.dir(state.id)
        state.cgroup = f"{options.cgroup_parent or self.cgroup_parent}/{state.id}"
        cgroup = self.cgroups().create(state.cgroup, options.resources)
        place_in_cgroup(cgroup, config)
        encoded = config.encode()
        holder: dict = {}

        def init_layer() -> None:   # while the shim starts, unless it waits for an address
            if config.rootfs and not options.bridge:
                rootfs.write_init_layer(cdir, options.hostname, options.ip)

        def on_pid(pid: int) -> None:
            if options.bridge:
                holder["endpoint"] = self._attach_network(state.id, pid, options.ports)
                if config.rootfs:
                    rootfs.write_init_layer(cdir, options.hostname, holder["endpoint"]["ip"])
            if options.attach:
                holder["attachment"] = process.Attachment(config.sock, options.attach)

        try:
            launched = process.launch(self.binaries().shim, encoded, on_pid, init_layer)
        except BaseException as exc:
            self._failed_start(state, cgroup, holder, exc, options.bridge)
            raise
        state.endpoint = holder.get("endpoint")
        self._mark_running(state, launched)
        return holder.get("attachment")

    def release_network(self, state: ContainerState) -> None:
        """Give back the container's bridge address and published ports (its `endpoint`,
        then None); nothing when it has none."""
        if state.endpoint is None:
            return
        net = self.network()
        if state.spec.get("port_mappings"):
            net.unpublish(state.id)
        net.detach(state.id)
        state.endpoint = None

    def _attach_network(self, key: str, pid: int, ports) -> dict:
        net = self.network()
        endpoint = net.attach(key, f"/proc/{pid}/ns/net")
        if ports:
            net.publish(key, endpoint.ip, list(ports))
        return {"ip": str(endpoint.ip), "prefixlen": endpoint.prefixlen,
                "gateway": str(endpoint.gateway), "mac": endpoint.mac}

    def _failed_start(self, state, cgroup, holder, exc, bridge: bool) -> None:
        """Undo a start that failed midway; the container ends exited with the error."""
        if "attachment" in holder:
            holder["attachment"].close()
        safe(cgroup.destroy)
        if bridge:
            state.endpoint = holder.get("endpoint", {})
            safe(lambda: self.release_network(state))
        state.endpoint = None
        state.error, state.finished_at = str(exc), now_iso()
        state.exit_code = 126 if "permission denied" in str(exc).lower() else 127
        if state.status == Status.CREATED:
            state.transition(Status.EXITED)
        self.store.save(state)

    def _mark_running(self, state: ContainerState, launched: process.Launched) -> None:
        state.transition(Status.RUNNING)
        state.pid, state.shim_pid = launched.pid, launched.shim_pid
        state.pid_start = process.proc_start_time(launched.pid) or 0
        state.shim_start = process.proc_start_time(launched.shim_pid) or 0
        state.started_at, state.finished_at = now_iso(), "0001-01-01T00:00:00Z"
        state.exit_code, state.oom_killed, state.error = 0, False, ""
        self.store.save(state)


def place_in_cgroup(cgroup, config: ShimConfig) -> None:
    """Have the shim start its process in `cgroup`: on v2 created inside it (config.cgroup,
    clone3 CLONE_INTO_CGROUP), on v1 moved there by a helper the moment it exists
    (config.cgroup_procs)."""
    if cgroup.version == 2:
        config.cgroup = cgroup.dir
    else:
        config.cgroup_procs = cgroup.procs_files()


def safe(fn, default=None):
    """Run a best-effort cleanup step: its failure never hides the main outcome (`default`
    is returned instead)."""
    try:
        return fn()
    except Exception:
        return default
