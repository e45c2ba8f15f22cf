"""The runtime facade used by pdocker and the kubelet: containers and pod sandboxes.

Every operation follows the same shape: lock the container, refresh its record from the
kernel (is the process still the one we started? did the shim record an exit?), guard the
transition, act, persist. Containers are supervised by their C shim, so they outlive the
Python process that started them; a new Runtime on the same root re-adopts them from
ROOT/containers/<id>/state.json.
"""

from __future__ import annotations

import os
from io import BufferedIOBase as BinaryIO   # typing's name for it; io is loaded at start-up anyway

from pkube.runtime import process, rootfs
from pkube.runtime.errors import Conflict, ContainerError, NoSuchContainer  # noqa: F401 (the facade's errors)
from pkube.runtime.launch import Launcher, LaunchOptions, safe
from pkube.runtime.names import claim_name, valid_name
from pkube.runtime.namespaces import plan_for
from pkube.runtime.signals import SIGKILL, SIGTERM
from pkube.runtime.spec import (DEFAULT_PATH, ContainerSpec, ShimConfig, SpecError, capability_mask,
                          merge_image_config, spec_from_dict)
from pkube.runtime.state import ContainerState, IllegalTransition, StateStore, Status, new_id, now_iso

DEFAULT_ROOT = "/var/lib/pkube/runtime"
DEFAULT_CGROUP_PARENT = "pkube"
HEX_DIGITS = frozenset("0123456789abcdef")
BUSYBOX_REFS = ("busybox", "busybox:latest", "docker.io/library/busybox:latest")

# What get/list/create/create_sandbox return: the refreshed, persisted record.
Container = ContainerState
Sandbox = ContainerState


class Runtime:
    """Containers and sandboxes under `root` (str or PathLike; `self.root` is a str).
    `network` is a runtime.network.BridgeNetwork (made lazily at ROOT/network when None and
    a bridge is needed); `cgroup_root` is the cgroup filesystem root (default
    /sys/fs/cgroup); `images` an ImageStore (default ROOT/images). `launcher` (a
    runtime.launch.Launcher over the same store) is what starts every process, the
    containers' here, the exec'd commands' in runtime.exec, the pause processes' in
    runtime.sandbox."""

    def __init__(self, root: str | os.PathLike = DEFAULT_ROOT, *, network=None,
                 cgroup_root: str | os.PathLike | None = None, images=None,
                 cgroup_parent: str = DEFAULT_CGROUP_PARENT):
        self.root = os.fspath(root)
        self.store = StateStore(os.path.join(self.root, "containers"))
        self._network = network
        self._network_ready = False
        self._cgroup_root = cgroup_root
        self._cgroups = None
        self._images = images
        self._binaries = None
        # what exec and sandboxes start their processes through (runtime.launch)
        self.launcher = Launcher(self.store, cgroups=lambda: self.cgroups, network=self.network,
                                 binaries=self.binaries, cgroup_parent=cgroup_parent)

    # ----- collaborators, made on first use -----

    @property
    def cgroup_parent(self) -> str:
        """The cgroup containers go under when their spec names no parent."""
        return self.launcher.cgroup_parent

    @property
    def images(self):
        if self._images is None:
            from pkube.runtime.imagestore import ImageStore
            self._images = ImageStore(os.path.join(self.root, "images"))
        return self._images

    @property
    def cgroups(self):
        if self._cgroups is None:
            from pkube.runtime.cgroups import DEFAULT_ROOT as CG_ROOT, CgroupManager
            self._cgroups = CgroupManager.detect(self._cgroup_root or CG_ROOT)
        return self._cgroups

    @property
    def bridge_network(self):
        """The bridge network as configured, not set up (network() sets it up): for the
        commands that list it or tear it down. Made at ROOT/network when none was given."""
        if self._network is None:
            from pkube.runtime.network import BridgeNetwork
            self._network = BridgeNetwork(os.path.join(self.root, "network"))
        return self._network

    def network(self):
        """The bridge network, ensured once per Runtime."""
        net = self.bridge_network
        if not self._network_ready:
            net.ensure()
            self._network_ready = True
        return net

    def set_network(self, network) -> None:
        """Use `network` (a runtime.network.BridgeNetwork, already ensured) for the sandboxes and
        containers started from now on; those already attached keep their addresses."""
        self._network = network
        self._network_ready = True

    def binaries(self) -> process.Binaries:
        if self._binaries is None:
            self._binaries = process.binaries(os.path.join(self.root, "bin"))
        return self._binaries

    def image(self, ref: str):
        """The image for `ref`; busybox is made from the host on first use."""
        from pkube.runtime.errors import ImageNotFound
        try:
            return self.images.get(ref)
        except ImageNotFound:
            if ref in BUSYBOX_REFS:
                return self.images.ensure_busybox()
            raise

    # ----- lookup -----

    def _resolve(self, id_or_name: str) -> str:
        """Docker's order: a full id, a name, a unique id prefix. Raises NoSuchContainer."""
        if _is_full_id(id_or_name) and self.store.exists(id_or_name):
            return id_or_name   # no need to list the store
        cid = self.store.id_of_name(id_or_name.lstrip("/")) if id_or_name else None
        if cid is not None:
            return cid
        matches = [cid for cid in self.store.ids() if cid.startswith(id_or_name)] if id_or_name else []
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise NoSuchContainer(f"multiple containers match {id_or_name!r}: be more specific")
        raise NoSuchContainer(f"No such container: {id_or_name}")

    def get(self, id_or_name: str) -> ContainerState:
        """The refreshed record of a container or sandbox; raises NoSuchContainer."""
        cid = self._resolve(id_or_name)
        try:
            with self.store.locked(cid):
                state = self.store.load(cid)
                if state is None:
                    raise NoSuchContainer(f"No such container: {id_or_name}")
                return self._refresh(state)
        except FileNotFoundError:   # removed by another process meanwhile
            raise NoSuchContainer(f"No such container: {id_or_name}") from None

    def list(self, all: bool = False, labels: dict[str, str | None] | None = None,
             kind: str = "container") -> list[ContainerState]:
        """Containers (running ones unless `all`), newest first; `labels` maps key -> value
        (None: the key only) and all must match."""
        out = []
        for cid in self.store.ids():
            try:
                state = self.get(cid)
            except NoSuchContainer:
                continue
            if state.kind != kind:
                continue
            if state.status == Status.EXITED and state.spec.get("auto_remove"):
                self._auto_remove(state)
                continue
            if not all and not state.running:
                continue
            if labels and any(k not in state.labels or (v is not None and state.labels[k] != v)
                              for k, v in labels.items()):
                continue
            out.append(state)
        return sorted(out, key=lambda s: s.created, reverse=True)

    def _auto_remove(self, state: ContainerState) -> None:
        """`run --rm -d`: there is no daemon to remove the container when it exits, so the
        next listing does."""
        try:
            self.remove(state.id)
        except (NoSuchContainer, Conflict):
            pass

    # ----- refresh: what the kernel says -----

    def _refresh(self, state: ContainerState) -> ContainerState:
        """Called under the container's lock: notice an exit the shim recorded (or a
        supervisor that died), and release what the container held."""
        result = self._exit_of(state)
        if result is not None:
            self._finish(state, *result)
        return state

    def _exit_of(self, state: ContainerState) -> tuple[int, str] | None:
        """(exit code, finished_at) of a container recorded as running whose process is
        gone (255 and now when its supervisor vanished without a record); None when it
        is not recorded as running, or still runs."""
        if state.status != Status.RUNNING:
            return None
        exit_file = os.path.join(self.store.dir(state.id), "exit")
        result = process.read_exit_file(exit_file)
        if result is None:
            if process.alive(state.pid, state.pid_start) or process.alive(state.shim_pid, state.shim_start):
                return None
            # read again: the shim may have written the file and exited since the first read
            result = process.read_exit_file(exit_file) or (255, now_iso())
        return result

    def _finish(self, state: ContainerState, code: int, finished: str) -> None:
        cgroup = self.launcher.cgroup_of(state)
        if cgroup is not None:
            state.oom_killed = code == 128 + SIGKILL and safe(cgroup.oom_killed, False)
            safe(cgroup.destroy)
        safe(lambda: self.launcher.release_network(state))   # kept in `endpoint` for rm to retry
        state.transition(Status.EXITED)
        state.exit_code, state.finished_at, state.pid = code, finished, 0
        self.store.save(state)

    # ----- containers -----

    def create(self, spec: ContainerSpec) -> ContainerState:
        """Record a new container (nothing runs yet). Raises SpecError, Conflict (name in
        use), errors.ImageNotFound."""
        spec.validate()
        if spec.name is not None and not valid_name(spec.name):
            raise SpecError(f"Invalid container name ({spec.name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
        image = self.image(spec.image)
        proc = merge_image_config(spec, image.config)
        with self.store.locked():
            cid = new_id()
            name = claim_name(self.store, spec.name, cid)
            try:
                rootfs.make_dirs(self.store.dir(cid))
                state = ContainerState(
                    id=cid, name=name, image=spec.image, image_id=image.id, process=proc,
                    spec=spec.to_dict(), layer_dirs=[os.fspath(d) for d in image.layer_dirs],
                    labels=dict(spec.labels))
                self.store.save(state)
            except BaseException:
                self.store.drop_name(name, cid)
                raise
        return state

    def run(self, spec: ContainerSpec) -> ContainerState:
        """create + start (detached); the refreshed record."""
        state = self.create(spec)
        self.start(state.id)
        return self.get(state.id)

    def start(self, id_or_name: str, attach: str | None = None,
              tty_size: tuple[int, int] | None = None) -> process.Attachment | None:
        """Start a created or exited container; returns after its process exec'd. With
        `attach` ('a' output+stdin, 'o' output), returns an Attachment connected before the
        process ran, so no output is missed; `tty_size` (rows, cols) sizes its pty. Raises StartError (the container is then
        exited with code 127 and `error` set) or IllegalTransition."""
        cid = self._resolve(id_or_name)
        with self.store.locked(cid):
            state = self._refresh(self.store.load(cid))
            if state.running:
                if attach:
                    raise IllegalTransition(f"container {state.short_id} is already running")
                return None
            if state.kind != "container":
                raise IllegalTransition(f"{state.short_id} is a sandbox; it cannot be restarted")
            return self._start(state, spec_from_dict(state.spec), attach, tty_size)

    def _start(self, state: ContainerState, spec: ContainerSpec, attach: str | None,
               tty_size: tuple[int, int] | None = None):
        cdir = self.store.dir(state.id)
        exit_file = os.path.join(cdir, "exit")
        rootfs.remove_file(exit_file)
        plan, hostname, ip_from = self._placement(state, spec)
        config = ShimConfig(
            argv=state.process["argv"], env=state.process["env"], plan=plan,
            exit_file=exit_file, sock=process.socket_name(cdir), log=os.path.join(cdir, "container.log"),
            rootfs=os.path.join(cdir, "merged"), overlay=rootfs.overlay_options(cdir, state.layer_dirs),
            hostname=hostname if "uts" in plan.create else None, cwd=state.process["workdir"],
            user=state.process["user"] or None, mounts=spec.mounts, tty=spec.tty,
            stdin_open=spec.stdin_open, tty_size=tty_size, caps=capability_mask(spec.capabilities()),
            rootfs_ro=spec.read_only, allow_escalation=not spec.no_new_privileges or spec.privileged,
            **spec.seccomp_options(), **({"masked": (), "readonly": ()} if spec.privileged else {}))
        options = LaunchOptions(resources=spec.resources, cgroup_parent=spec.cgroup_parent, attach=attach,
                                bridge=ip_from is None and spec.network == "bridge",
                                ports=spec.port_mappings, hostname=hostname, ip=ip_from or "")
        return self.launcher.launch(state, config, options)

    def _placement(self, state: ContainerState, spec: ContainerSpec):
        """(namespace plan, hostname, ip of a joined sandbox or None)."""
        if spec.sandbox_id:
            sandbox = self.get(spec.sandbox_id)
            if not sandbox.running:
                raise IllegalTransition(f"sandbox {sandbox.short_id} is not running")
            plan = plan_for("none", sandbox_pid=sandbox.pid, share_pid=sandbox.spec.get("share_pid", False))
            ip = (sandbox.endpoint or {}).get("ip", "")
            return plan, sandbox.spec.get("hostname") or sandbox.name, ip
        peer = None
        if spec.network.startswith("container:"):
            other = self.get(spec.network.split(":", 1)[1])
            if not other.running:
                raise IllegalTransition(f"cannot join network of a non running container: {other.short_id}")
            peer = other.pid
        hostname = spec.hostname or (os.uname().nodename if spec.network == "host" else state.short_id)
        return plan_for(spec.network, peer_pid=peer), hostname, (None if spec.network == "bridge" else "")

    def wait(self, id_or_name: str, timeout: float | None = None) -> int:
        """Block until the container is not running; its exit code (255 when it and its shim
        vanished without a record, e.g. both killed). Raises TimeoutError."""
        state = self.get(id_or_name)
        if state.running:
            cdir = self.store.dir(state.id)
            process.wait_for_exit(process.socket_name(cdir), os.path.join(cdir, "exit"),
                                  [(state.pid, state.pid_start), (state.shim_pid, state.shim_start)], timeout)
            state = self.get(state.id)      # records an exit the shim could not (it was gone)
            if state.running and timeout is not None:
                raise TimeoutError(f"container {state.short_id} still running after {timeout}s")
        return state.exit_code

    def kill(self, id_or_name: str, signal: int = SIGKILL) -> None:
        """Send `signal` to the container's process; raises Conflict when not running."""
        state = self.get(id_or_name)
        if not state.running or not process.alive(state.pid, state.pid_start):
            raise Conflict(f"Container {state.short_id} is not running")
        os.kill(state.pid, signal)

    def stop(self, id_or_name: str, timeout: float = 10) -> ContainerState:
        """SIGTERM, then SIGKILL after `timeout` seconds; a stopped container is left as is."""
        state = self.get(id_or_name)
        if not state.running:
            return state
        safe(lambda: os.kill(state.pid, SIGTERM) if process.alive(state.pid, state.pid_start) else None)
        try:
            self.wait(state.id, timeout)
        except TimeoutError:
            safe(lambda: os.kill(state.pid, SIGKILL) if process.alive(state.pid, state.pid_start) else None)
            self.wait(state.id, 10)
        return self.get(state.id)

    def restart(self, id_or_name: str, timeout: float = 10) -> None:
        """stop (SIGTERM, SIGKILL after `timeout`) then start; logs are kept and appended."""
        state = self.stop(id_or_name, timeout)
        self.start(state.id)

    def remove(self, id_or_name: str, force: bool = False) -> None:
        """Remove a container and everything it holds (directories, cgroup, network);
        raises Conflict when it runs and not `force`."""
        cid = self._resolve(id_or_name)
        if not self._dismantle(cid, force=False):
            if not force:
                raise Conflict(f"You cannot remove a running container {cid}. "
                               "Stop the container before attempting removal or force remove")
            self.stop(cid, timeout=0)
            self._dismantle(cid, force=True)

    def _dismantle(self, cid: str, force: bool) -> bool:
        """Under the lock: release the container's cgroup and network and delete its
        directory; False (and nothing done) when it still runs, unless `force`. An exit
        not yet recorded is not persisted first: the record goes with the directory.
        Raises NoSuchContainer when it vanished meanwhile, RootfsError when something is
        still mounted in it."""
        try:
            with self.store.locked(cid):
                state = self.store.load(cid)
                if state is None:
                    return True
                if not force and state.running and self._exit_of(state) is None:
                    return False
                cgroup = self.launcher.cgroup_of(state)
                if cgroup is not None:
                    safe(cgroup.destroy)
                safe(lambda: self.launcher.release_network(state))
                rootfs.remove_dir(self.store.dir(cid))
                self.store.release_name(state.name, cid)
                return True
        except FileNotFoundError:   # removed by another process meanwhile
            raise NoSuchContainer(f"No such container: {cid}") from None

    # ----- I/O with a container -----

    def logs(self, id_or_name: str, follow: bool = False, tail: int | None = None,
             timestamps: bool = False, since: float | None = None):
        """Log entries (runtime.logs.LogEntry: stream, data, time); with `follow` an iterator
        that ends when the container stops."""
        state = self.get(id_or_name)
        path = os.path.join(self.store.dir(state.id), "container.log")
        from pkube.runtime import logs as logfile
        if not follow:
            return logfile.read(path, tail=tail, since=since)
        return logfile.follow(path, lambda: self.get(state.id).running, tail=tail, since=since)

    def rotate_log(self, id_or_name: str, max_bytes: int, max_files: int) -> bool:
        """Rotate the container's log when it is over `max_bytes` (runtime.logs.rotate);
        `logs` reads the rotated files too."""
        from pkube.runtime import logs as logfile
        state = self.get(id_or_name)
        return logfile.rotate(os.path.join(self.store.dir(state.id), "container.log"), max_bytes, max_files)

    def attach(self, id_or_name: str, mode: str = "a") -> process.Attachment:
        """Connect to a running container's shim (stdin + output for 'a')."""
        state = self.get(id_or_name)
        if not state.running:
            raise Conflict("You cannot attach to a stopped container, start it first")
        return process.Attachment(process.socket_name(self.store.dir(state.id)), mode)

    def exec(self, id_or_name: str, argv: list[str], tty: bool = False, env: dict | None = None,
             workdir: str | None = None, user: str | None = None, stdin: bytes | None = None,
             interactive: bool = False, detach: bool = False, tty_size: tuple[int, int] | None = None,
             timeout: float | None = None):
        """Run argv in the running container; a runtime.exec.ExecResult (see exec_in)."""
        from pkube.runtime.exec import exec_in
        return exec_in(self.launcher, self.get(id_or_name), argv, tty=tty, env=env, workdir=workdir,
                       user=user, stdin=stdin, interactive=interactive, detach=detach, tty_size=tty_size,
                       timeout=timeout)

    def _fs_root(self, state: ContainerState, writable: bool):
        """A context manager yielding the container's root as seen from the host (a str):
        its process's root while it runs, else its overlay mounted for the duration."""
        from contextlib import nullcontext   # cp and export only
        if state.running and process.alive(state.pid, state.pid_start):
            return nullcontext(f"/proc/{state.pid}/root")
        return rootfs.mounted(self.store.dir(state.id), state.layer_dirs, writable=writable)

    def cp_in(self, id_or_name: str, src: str | os.PathLike, dst: str) -> None:
        """Copy host path `src` to `dst` in the container (docker cp semantics: into `dst`
        when it is an existing directory). Container paths resolve inside the container,
        whatever symlinks it holds. Raises rootfs.RootfsError."""
        state = self.get(id_or_name)
        with self._fs_root(state, writable=True) as root:
            rootfs.copy_in(root, src, dst)

    def cp_out(self, id_or_name: str, src: str, dst: str | os.PathLike) -> None:
        """Copy `src` from the container to host path `dst` (into it when it is an
        existing directory). Raises rootfs.RootfsError."""
        state = self.get(id_or_name)
        with self._fs_root(state, writable=False) as root:
            rootfs.copy_out(root, src, dst)

    def export(self, id_or_name: str, fileobj: BinaryIO) -> None:
        """A tar of the container's merged filesystem: of its process's root while it runs
        (mountpoints such as /proc, /sys, /dev and volumes left empty), else of its overlay
        mounted read-only for the duration."""
        state = self.get(id_or_name)
        with self._fs_root(state, writable=False) as root:
            rootfs.tar_tree(root, fileobj)

    def commit(self, id_or_name: str, ref: str | None = None, comment: str = "",
               changes: dict | None = None):
        """A new image from the container's read-write layer over its image."""
        state = self.get(id_or_name)
        parent = self.images.get(state.image_id)
        config = dict(parent.config)
        spec = state.spec
        env = state.process["env"]
        config.update({"Env": env, "WorkingDir": state.process["workdir"] if state.process["workdir"] != "/" else config.get("WorkingDir", ""),
                       "User": state.process["user"]})
        if spec.get("entrypoint") is not None:
            config["Entrypoint"] = spec["entrypoint"]
        if spec.get("command") is not None:
            config["Cmd"] = spec["command"]
        config.update(changes or {})
        return self.images.commit(os.path.join(self.store.dir(state.id), "upper"), parent, config, ref, comment=comment)

    def diff(self, id_or_name: str) -> list[tuple[str, str]]:
        """("A"|"C"|"D", path) of the container's read-write layer against its image."""
        state = self.get(id_or_name)
        return self.images.diff(os.path.join(self.store.dir(state.id), "upper"), self.images.get(state.image_id))

    def stats(self, id_or_name: str):
        """runtime.cgroups.CgroupStats of a running container; raises Conflict otherwise."""
        state = self.get(id_or_name)
        cgroup = self.launcher.cgroup_of(state) if state.running else None
        if cgroup is None:
            raise Conflict(f"Container {state.short_id} is not running")
        return cgroup.stats()

    def top(self, id_or_name: str) -> tuple[list[str], list[list[str]]]:
        """(titles, rows) like `docker top`: the container's processes seen from the host."""
        state = self.get(id_or_name)
        cgroup = self.launcher.cgroup_of(state) if state.running else None
        if cgroup is None:
            raise Conflict(f"Container {state.short_id} is not running")
        from pkube.runtime.exec import process_table
        return process_table(sorted(cgroup.pids()))

    # ----- builds -----

    def build_runner(self, output: BinaryIO | None = None):
        """The RUN-step runner of runtime.build: runs argv over read-only `layer_dirs` in a
        hidden container (host network, so steps may download), copies its output to
        `output` (default our stdout), and returns its upper dir, moved out of the container
        (the caller turns it into a layer, then deletes it). Raises ContainerError when the
        command exits non-zero."""
        def run(layer_dirs: list, argv: list[str], env: dict, workdir: str, user: str) -> str:
            spec = ContainerSpec(image="<build>", command=list(argv), network="host")
            env = {"PATH": DEFAULT_PATH, **env}
            cid = new_id()
            rootfs.make_dirs(self.store.dir(cid))
            state = ContainerState(
                id=cid, name=f"build-{cid[:12]}", image="<build>", image_id="", kind="build",
                process={"argv": list(argv), "env": [f"{k}={v}" for k, v in env.items()],
                         "workdir": workdir or "/", "user": user or ""},
                spec=spec.to_dict(), layer_dirs=[os.fspath(d) for d in layer_dirs])
            self.store.save(state)
            try:
                return self._run_build_step(state, spec, output)
            finally:
                self.remove(cid, force=True)
        return run

    def _run_build_step(self, state: ContainerState, spec: ContainerSpec, output) -> str:
        import sys
        out = output or sys.stdout.buffer
        with self.store.locked(state.id):
            attachment = self._start(state, spec, "o")
        try:
            for _, data in attachment.frames():
                out.write(data)
                out.flush()
        finally:
            attachment.close()
        code = attachment.exit_code if attachment.exit_code is not None else self.wait(state.id)
        if code != 0:
            raise ContainerError(f"returned a non-zero code: {code}")
        build_dir = os.path.join(self.root, "build")
        os.makedirs(build_dir, exist_ok=True)
        target = os.path.join(build_dir, f"upper-{state.id}")
        os.replace(os.path.join(self.store.dir(state.id), "upper"), target)
        return target

    # ----- sandboxes -----

    def create_sandbox(self, spec) -> ContainerState:
        """Start a pod sandbox (runtime.spec.SandboxSpec); see runtime.sandbox."""
        from pkube.runtime.sandbox import create_sandbox
        return self.get(create_sandbox(self.launcher, spec))

    def stop_sandbox(self, sandbox_id: str, timeout: float = 10) -> None:
        """Stop the sandbox's containers and its pause process."""
        sandbox = self.get(sandbox_id)
        for state in self.list(all=True):
            if state.spec.get("sandbox_id") == sandbox.id and state.running:
                self.stop(state.id, timeout)
        self.stop(sandbox.id, timeout)

    def remove_sandbox(self, sandbox_id: str) -> None:
        """Remove the sandbox, its containers and its namespaces; idempotent."""
        try:
            sandbox = self.get(sandbox_id)
        except NoSuchContainer:
            return
        for state in self.list(all=True):
            if state.spec.get("sandbox_id") == sandbox.id:
                self.remove(state.id, force=True)
        self.remove(sandbox.id, force=True)
        if sandbox.spec.get("cgroup_parent"):
            safe(lambda: self.cgroups.open(sandbox.spec["cgroup_parent"]).destroy())

    def list_sandboxes(self, labels: dict | None = None, all: bool = True) -> list[ContainerState]:
        """Sandboxes (stopped ones too unless `all` is False) whose labels match."""
        return self.list(all=all, labels=labels, kind="sandbox")


def _is_full_id(text: str) -> bool:
    """64 lowercase hex digits: what new_id() makes (and never a path)."""
    return len(text) == 64 and all(c in HEX_DIGITS for c in text)
