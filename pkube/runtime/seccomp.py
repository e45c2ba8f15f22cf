"""The runtime's default seccomp profile: the system calls a container may not make.

Docker's default profile allows a long list of system calls and refuses the rest; the ones it
refuses are documented ("Significant syscalls blocked by the default profile") and those that
a capability would make useful are allowed again when the container has that capability.
pkube keeps the same effect with the list turned round: every call is allowed except the
ones below, each refused with EPERM unless the container holds the capability named next to
it. The shim (pkube/runtime/shim.c) compiles the list into a BPF filter with libseccomp and loads
it just before the container's command runs; `clone` with a namespace flag is refused the
same way (unless CAP_SYS_ADMIN), and `clone3` answers ENOSYS so that the C library falls back
to `clone`, whose flags the filter can see. A privileged container, or the profile
"unconfined", gets no filter.

A denylist lets through system calls newer than the list, which an allowlist would refuse:
the price of not shipping a 350-entry allowlist that must follow every kernel. The calls that
matter for containment (mounts, modules, the clock, namespaces, keyrings, kexec, BPF, perf,
ptrace across processes) are all here, and the tests in tests/system/test_seccomp.py show
each refused.
"""

from __future__ import annotations

PROFILES = ("default", "unconfined")

# (system calls, the capability that allows them again — None: never)
DENIED: tuple[tuple[tuple[str, ...], str | None], ...] = (
    (("mount", "umount", "umount2", "pivot_root", "unshare", "setns", "fsopen", "fsconfig", "fsmount",
      "fspick", "move_mount", "open_tree", "mount_setattr", "name_to_handle_at", "quotactl",
      "quotactl_fd", "lookup_dcookie", "fanotify_init", "vm86", "vm86old", "swapon", "swapoff",
      "sethostname", "setdomainname"), "SYS_ADMIN"),
    (("init_module", "finit_module", "delete_module", "create_module", "query_module",
      "get_kernel_syms"), "SYS_MODULE"),
    (("settimeofday", "stime", "clock_settime", "clock_settime64", "adjtimex", "clock_adjtime",
      "clock_adjtime64"), "SYS_TIME"),
    (("reboot", "kexec_load", "kexec_file_load"), "SYS_BOOT"),
    (("ptrace", "process_vm_readv", "process_vm_writev", "kcmp"), "SYS_PTRACE"),
    (("acct",), "SYS_PACCT"),
    (("ioperm", "iopl"), "SYS_RAWIO"),
    (("syslog",), "SYSLOG"),
    (("bpf",), "BPF"),
    (("perf_event_open",), "PERFMON"),
    (("open_by_handle_at",), "DAC_READ_SEARCH"),
    (("mbind", "set_mempolicy", "move_pages"), "SYS_NICE"),
    (("add_key", "request_key", "keyctl", "uselib", "userfaultfd", "nfsservctl", "ustat", "sysfs",
      "_sysctl"), None),
)


class SeccompError(ValueError):
    """An unknown profile name."""


def denied_syscalls(profile: str, capabilities: dict[str, int]) -> list[str]:
    """The system calls refused under ``profile`` to a container holding ``capabilities``
    (names as in runtime.spec.ALL_CAPABILITIES); [] for "unconfined"."""
    if profile not in PROFILES:
        raise SeccompError(f"seccomp profile {profile!r}: must be one of {', '.join(PROFILES)}")
    if profile == "unconfined":
        return []
    return [name for names, capability in DENIED if capability not in capabilities for name in names]


def refuses_namespaces(profile: str, capabilities: dict[str, int]) -> bool:
    """True when ``clone`` with a namespace flag (and ``clone3``) is refused."""
    return profile == "default" and "SYS_ADMIN" not in capabilities
