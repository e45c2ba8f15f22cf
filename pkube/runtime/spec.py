"""What a container or sandbox should be (the spec), kept apart from how it is made.

`ContainerSpec` and `SandboxSpec` are what callers (pdocker, the kubelet) fill in.
`ShimConfig` is the resolved, mechanical form handed to the C shim: the file of
NUL-separated key/value pairs that pkube/runtime/shim.c reads.
"""

from __future__ import annotations

from pkube.runtime.records import Record
from pkube.runtime.seccomp import PROFILES, denied_syscalls, refuses_namespaces

# Docker's default capability set (moby oci/caps/defaults.go), as capability numbers.
DEFAULT_CAPABILITIES = {
    "CHOWN": 0, "DAC_OVERRIDE": 1, "FOWNER": 3, "FSETID": 4, "KILL": 5, "SETGID": 6,
    "SETUID": 7, "SETPCAP": 8, "NET_BIND_SERVICE": 10, "NET_RAW": 13, "SYS_CHROOT": 18,
    "MKNOD": 27, "AUDIT_WRITE": 29, "SETFCAP": 31,
}
# Every capability the kernel knows (linux/capability.h), for --cap-add, --cap-drop and --privileged.
ALL_CAPABILITIES = {name: number for number, name in enumerate((
    "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID", "SETPCAP",
    "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW", "IPC_LOCK", "IPC_OWNER",
    "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT", "SYS_ADMIN", "SYS_BOOT", "SYS_NICE",
    "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD", "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP",
    "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG", "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF",
    "CHECKPOINT_RESTORE"))}
MASKED_PATHS = ("/proc/kcore", "/proc/keys", "/proc/timer_list", "/proc/sched_debug",
                "/proc/acpi", "/proc/scsi", "/proc/latency_stats", "/sys/firmware")
READONLY_PATHS = ("/proc/sys", "/proc/sysrq-trigger", "/proc/irq", "/proc/bus",
                  "/proc/asound", "/proc/fs")
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
NETWORK_MODES = ("bridge", "none", "host")
SHIM_MAX_ITEMS = 500          # pkube/runtime/shim.c: MAXV - 1 (and a NULL)
SHIM_MAX_BYTES = (1 << 17) - 1   # pkube/runtime/shim.c: load_config's buffer


class SpecError(ValueError):
    """The caller's spec is invalid; the message says which field and why."""


class Mount(Record):
    """A bind mount of a host path into the container (`-v HOST:DIR[:ro]`): source (host
    path), target (in the container), readonly."""

    FIELDS = ("source", "target", ("readonly", False))
    FROZEN = True

    def __post_init__(self):
        if not self.source.startswith("/") or not self.target.startswith("/"):
            raise SpecError(f"mount {self.source}:{self.target}: both paths must be absolute")
        if ".." in self.target.split("/"):
            raise SpecError(f"mount target {self.target}: must not contain '..'")


class ContainerSpec(Record):
    """A container to create. None/empty fields take the image's config (Docker's rules:
    `entrypoint` replaces the image's Entrypoint and clears its Cmd; `command` replaces Cmd).

    `network`: "bridge" | "none" | "host" | "container:<id or name>"; ignored when
    `sandbox_id` is set (the container joins the sandbox's net, ipc, uts and maybe pid).
    `resources` is a runtime.cgroups.Resources; `port_mappings` are runtime.network
    PortMapping objects (host_port, container_port, protocol, host_ip).
    """

    FIELDS = (
        "image",                      # str
        ("command", None),            # list[str] | None
        ("entrypoint", None),         # list[str] | None
        ("env", {}),                  # dict[str, str]
        ("workdir", None),            # str | None
        ("user", None),               # str | None
        ("hostname", None),           # str | None
        ("name", None),               # str | None
        ("labels", {}),               # dict[str, str]
        ("tty", False),
        ("stdin_open", False),
        ("mounts", []),               # list[Mount]
        ("port_mappings", []),        # list[PortMapping]
        ("network", "bridge"),
        ("sandbox_id", None),         # str | None
        ("resources", None),          # runtime.cgroups.Resources | None
        ("cgroup_parent", None),      # str | None
        ("auto_remove", False),
        ("cap_add", []),              # list[str]: capability names, "ALL" for every one
        ("cap_drop", []),             # list[str]
        ("privileged", False),        # every capability, nothing masked or read-only in /proc
        ("read_only", False),         # the root file system mounted read-only (volumes stay as they are)
        ("no_new_privileges", True),  # no_new_privs: setuid binaries cannot raise privileges
        ("seccomp", "default"),       # "default" (runtime.seccomp's profile) or "unconfined"
    )

    def seccomp_profile(self) -> str:
        """The profile in force: none for a privileged container, as Docker does."""
        return "unconfined" if self.privileged else self.seccomp

    def seccomp_options(self) -> dict:
        """The ShimConfig fields of its seccomp filter (seccomp_deny, seccomp_namespaces)."""
        profile, caps = self.seccomp_profile(), self.capabilities()
        return {"seccomp_deny": denied_syscalls(profile, caps),
                "seccomp_namespaces": refuses_namespaces(profile, caps)}

    def capabilities(self) -> dict[str, int]:
        """The capability set the process gets: Docker's default set, plus cap_add, minus
        cap_drop ("ALL" stands for every capability; names may carry a CAP_ prefix)."""
        if self.privileged:
            return dict(ALL_CAPABILITIES)
        caps = dict(DEFAULT_CAPABILITIES)
        for name in self.cap_drop:
            key = _cap_name(name)
            caps = {} if key == "ALL" else {k: v for k, v in caps.items() if k != key}
        for name in self.cap_add:
            key = _cap_name(name)
            caps.update(ALL_CAPABILITIES if key == "ALL" else {key: ALL_CAPABILITIES[key]})
        return caps

    def validate(self) -> None:
        """Raise SpecError on bad input; called by Runtime.create before anything is made."""
        if not self.image:
            raise SpecError("image: must not be empty")
        if self.network not in NETWORK_MODES and not self.network.startswith("container:"):
            raise SpecError(f"network {self.network!r}: must be bridge, none, host or container:<name>")
        if self.workdir and not self.workdir.startswith("/"):
            raise SpecError(f"workdir {self.workdir!r}: must be an absolute path")
        if self.port_mappings and (self.network != "bridge" or self.sandbox_id):
            raise SpecError("port mappings need the bridge network")
        for key in self.env:
            if not key or "=" in key:
                raise SpecError(f"env: invalid variable name {key!r}")
        for name in list(self.cap_add) + list(self.cap_drop):
            if _cap_name(name) != "ALL" and _cap_name(name) not in ALL_CAPABILITIES:
                raise SpecError(f"unknown capability: {name!r}")
        if self.seccomp not in PROFILES:
            raise SpecError(f"seccomp profile {self.seccomp!r}: must be one of {', '.join(PROFILES)}")


def spec_from_dict(data: dict) -> ContainerSpec:
    """The ContainerSpec a container's record holds (ContainerSpec.to_dict's dict)."""
    data = dict(data)
    data["mounts"] = [Mount(**m) for m in data.get("mounts") or []]
    if data.get("resources"):
        from pkube.runtime.cgroups import Resources
        data["resources"] = Resources(**data["resources"])
    if data.get("port_mappings"):
        from pkube.runtime.network import PortMapping
        data["port_mappings"] = [PortMapping(**p) for p in data["port_mappings"]]
    return ContainerSpec(**data)


def _cap_name(name: str) -> str:
    """NET_ADMIN from net_admin, CAP_NET_ADMIN or NET_ADMIN."""
    upper = name.upper()
    return upper[4:] if upper.startswith("CAP_") else upper


class SandboxSpec(Record):
    """A pod sandbox: the pause process and the namespaces it holds.

    `network`: "bridge" (a veth on the runtime's bridge), "none" (loopback only) or "host".
    """

    FIELDS = ("name", ("hostname", None), ("labels", {}), ("network", "bridge"), ("share_pid", False),
              ("port_mappings", []), ("cgroup_parent", None), ("resources", None))


def merge_image_config(spec: ContainerSpec, image_config: dict) -> dict:
    """The process a container runs: argv, env (list of K=V), workdir, user, from the spec
    over the image's OCI config. Raises SpecError when no command results."""
    entrypoint = spec.entrypoint if spec.entrypoint is not None else (image_config.get("Entrypoint") or [])
    if spec.command is not None:
        cmd = spec.command
    elif spec.entrypoint is not None:
        cmd = []
    else:
        cmd = image_config.get("Cmd") or []
    argv = list(entrypoint) + list(cmd)
    if not argv:
        raise SpecError("no command specified")
    env = {"PATH": DEFAULT_PATH}
    for item in image_config.get("Env") or []:
        key, _, value = item.partition("=")
        env[key] = value
    env.update(spec.env)
    return {
        "argv": argv, "env": [f"{k}={v}" for k, v in env.items()],
        "workdir": spec.workdir or image_config.get("WorkingDir") or "/",
        "user": spec.user if spec.user is not None else (image_config.get("User") or ""),
    }


def capability_mask(names=DEFAULT_CAPABILITIES) -> int:
    """Bit mask of the given capability table (name -> number)."""
    mask = 0
    for number in names.values():
        mask |= 1 << number
    return mask


class ShimConfig(Record):
    """Everything the C shim needs, already resolved. `rootfs` None means the process runs
    on the host's root (the pause process). `sock`/`log`/`exit_file` are where the shim
    serves attach clients, appends JSON log lines and records the exit code."""

    FIELDS = (
        "argv", "env",                # list[str]
        "plan",                       # runtime.namespaces.NamespacePlan
        "exit_file", "sock",          # str
        ("log", None), ("rootfs", None), ("overlay", None), ("hostname", None), ("cwd", None),
        ("user", None),               # str | None
        ("mounts", []),               # list[Mount]
        ("tty", False), ("stdin_open", False),
        ("tty_size", None),           # (rows, cols) of the pty, when tty
        ("ptmx", None),               # the pty multiplexer to use (default: the host's /dev/ptmx)
        ("cgroup", None),             # a cgroup v2 directory the child is created in (clone3)
        ("cgroup_procs", []),         # or the cgroup.procs files (v1) a helper writes its pid to
        ("caps", Record.factory(capability_mask)),
        ("rootfs_ro", False),
        ("allow_escalation", False),
        ("masked", MASKED_PATHS), ("readonly", READONLY_PATHS),
        ("seccomp_deny", []),         # system calls refused with EPERM (runtime.seccomp)
        ("seccomp_namespaces", False),  # refuse clone with namespace flags, clone3 with ENOSYS
    )

    def pairs(self) -> list[tuple[str, str]]:
        """The key/value pairs, in the order the shim reads them."""
        out = [("arg", a) for a in self.argv] + [("env", e) for e in self.env]
        out += [("unshare", ns) for ns in self.plan.create]
        out += [("join", f"{ns}={path}") for ns, path in self.plan.join.items()]
        for key, value in (("exit", self.exit_file), ("sock", self.sock), ("log", self.log),
                           ("rootfs", self.rootfs), ("overlay", self.overlay),
                           ("hostname", self.hostname), ("cwd", self.cwd), ("user", self.user),
                           ("ptmx", self.ptmx if self.tty else None), ("cgroup", self.cgroup)):
            if value is not None:
                out.append((key, value))
        out += [("cgroup_procs", procs) for procs in self.cgroup_procs]
        for m in self.mounts:
            out += [("bind_src", m.source), ("bind_dst", m.target), ("bind_ro", str(int(m.readonly)))]
        if self.rootfs:
            out += [("mask", p) for p in self.masked] + [("readonly", p) for p in self.readonly]
        if self.tty and self.tty_size:
            out += [("rows", str(self.tty_size[0])), ("cols", str(self.tty_size[1]))]
        if self.rootfs_ro:
            out.append(("rootfs_ro", "1"))
        if self.allow_escalation:
            out.append(("allow_escalation", "1"))
        out += [("seccomp", name) for name in self.seccomp_deny]
        if self.seccomp_namespaces:
            out.append(("seccomp_namespaces", "1"))
        out += [("tty", str(int(self.tty))), ("stdin", str(int(self.stdin_open))),
                ("caps", hex(self.caps))]
        return out

    def encode(self) -> bytes:
        """The NUL-separated file content; refuses what the shim could not hold (NUL bytes,
        more than SHIM_MAX_ITEMS arguments or variables, more than SHIM_MAX_BYTES)."""
        if len(self.argv) > SHIM_MAX_ITEMS or len(self.env) > SHIM_MAX_ITEMS:
            raise SpecError(f"at most {SHIM_MAX_ITEMS} arguments and {SHIM_MAX_ITEMS} environment variables")
        chunks = []
        for key, value in self.pairs():
            if "\0" in value:
                raise SpecError(f"{key}: value contains a NUL byte")
            chunks.append(f"{key}\0{value}\0")
        data = "".join(chunks).encode()
        if len(data) > SHIM_MAX_BYTES:
            raise SpecError(f"command, environment and mounts take {len(data)} bytes, more than {SHIM_MAX_BYTES}")
        return data
