"""cgroups v1 and v2: create a cgroup, put processes in it, limit it, read it back, destroy it.

The filesystem root is a parameter (default /sys/fs/cgroup), so the logic runs against a
temporary directory laid out like either version in unit tests. `CgroupManager.detect(root)`
chooses the version from the layout: a root holding `cgroup.controllers` is a cgroup2 mount
(v2-only host); otherwise the v1 controllers live in `root/<controller>` (v1 or a v1/v2
hybrid host, where the cgroup2 mount at root/unified carries no controllers).

Cgroup paths are relative to the hierarchy, e.g. "pkube/<id>" or "pkube/pod-<uid>/<ctr>";
directories and files are absolute str paths (the root may be given as any PathLike).
Errors are `CgroupError`, naming the operation and the file.
"""

from __future__ import annotations

import errno
import os
import time

from pkube.runtime.records import Record
from pkube.runtime.signals import SIGKILL

DEFAULT_ROOT = "/sys/fs/cgroup"
V1_CONTROLLERS = ("cpu", "cpuacct", "memory", "pids", "freezer")
V2_CONTROLLERS = ("cpu", "memory", "pids")
DEFAULT_CPU_PERIOD_US = 100000
V1_DEFAULT_SHARES = 1024
V2_DEFAULT_WEIGHT = 100
MIN_SHARES = 2
MAX_SHARES = 262144
DESTROY_TIMEOUT_S = 5.0


class CgroupError(Exception):
    """A cgroup operation failed; the message names the operation and the path."""


class Resources(Record):
    """Limits of one cgroup: memory_bytes, cpu_quota_us, cpu_period_us, cpu_shares,
    pids_limit. A None field means unlimited (or the kernel default for shares)."""

    FIELDS = (("memory_bytes", None), ("cpu_quota_us", None), ("cpu_period_us", DEFAULT_CPU_PERIOD_US),
              ("cpu_shares", None), ("pids_limit", None))
    FROZEN = True

    def __post_init__(self):
        for name in ("memory_bytes", "cpu_quota_us", "cpu_shares", "pids_limit"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value <= 0):
                raise ValueError(f"Resources.{name} must be a positive integer, got {value!r}")
        if not isinstance(self.cpu_period_us, int) or not 1000 <= self.cpu_period_us <= 1000000:
            raise ValueError(f"Resources.cpu_period_us must be 1000..1000000, got {self.cpu_period_us!r}")
        if self.cpu_quota_us is not None and self.cpu_quota_us < 1000:
            raise ValueError(f"Resources.cpu_quota_us must be at least 1000, got {self.cpu_quota_us}")

    @classmethod
    def from_cpus(cls, cpus: float, **kwargs) -> "Resources":
        """Resources for `--cpus N` (docker): quota = N * period."""
        period = kwargs.pop("cpu_period_us", DEFAULT_CPU_PERIOD_US)
        return cls(cpu_quota_us=int(cpus * period), cpu_period_us=period, **kwargs)


class CgroupStats(Record):
    """Usage read back from a cgroup (ints); None where the controller is absent.
    memory_working_set_bytes is the usage less the inactive file cache (kubectl top, docker
    stats)."""

    FIELDS = ("memory_usage_bytes", "memory_limit_bytes", "cpu_usage_ns", "pids_current",
              ("memory_working_set_bytes", None))
    FROZEN = True


def working_set(usage: int | None, inactive_file: int | None) -> int | None:
    """Memory usage less the inactive file cache the kernel can drop, never below 0."""
    if usage is None:
        return None
    return max(usage - (inactive_file or 0), 0)


def shares_to_weight(shares: int) -> int:
    """cpu.shares (v1, 2..262144) to cpu.weight (v2, 1..10000), the way Kubernetes converts."""
    shares = min(max(shares, MIN_SHARES), MAX_SHARES)
    return 1 + ((shares - MIN_SHARES) * 9999) // (MAX_SHARES - MIN_SHARES)


def validate_path(path: str) -> str:
    """Return `path` normalised, or raise ValueError for an empty, absolute or escaping path."""
    parts = [p for p in str(path).split("/") if p]
    if not parts or str(path).startswith("/") or any(p in (".", "..") for p in parts):
        raise ValueError(f"cgroup path must be relative and non-empty, without . or ..: {path!r}")
    return "/".join(parts)


def _write(path: str, value: str) -> None:
    try:
        with open(path, "w") as f:
            f.write(value)
    except OSError as e:
        raise CgroupError(f"write {value!r} to {path}: {e.strerror or e}") from e


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError as e:
        raise CgroupError(f"read {path}: {e.strerror or e}") from e


def _read_int(path: str) -> int | None:
    """The integer in `path`; None if the file is missing or holds "max"."""
    if not os.path.exists(path):
        return None
    words = _read(path).split()
    return None if not words or words[0] == "max" else int(words[0])


def _read_keyed(path: str) -> dict[str, int]:
    """A flat-keyed file ("key value" per line) as a dict; {} if missing."""
    if not os.path.exists(path):
        return {}
    result = {}
    for line in _read(path).splitlines():
        key, _, value = line.partition(" ")
        if value.strip().lstrip("-").isdigit():
            result[key] = int(value)
    return result


def _read_pids(procs_file: str) -> list[int]:
    if not os.path.exists(procs_file):
        return []
    return [int(line) for line in _read(procs_file).split()]


def _mkdirs(path: str) -> None:
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        raise CgroupError(f"mkdir {path}: {e.strerror or e}") from e


def _rmdir_tree(path: str) -> None:
    """Remove a cgroup directory and its child cgroups, depth first. Missing is fine.

    Tries the directory alone first: a container's cgroup has no children, and listing a
    cgroup directory (dozens of control files) is what a removal would cost. Raises
    OSError (EBUSY) while a task is still in it or leaving it; the caller retries.
    """
    try:
        os.rmdir(path)
        return
    except (FileNotFoundError, NotADirectoryError):
        return
    except OSError as e:
        if e.errno not in (errno.EBUSY, errno.ENOTEMPTY):
            raise
    for child in _child_dirs(path):
        _rmdir_tree(child)
    try:
        os.rmdir(path)
    except FileNotFoundError:
        pass
    except OSError as e:
        if e.errno != errno.ENOTEMPTY:
            raise
        _unlink_files(path)   # a fake (unit-test) hierarchy holds regular files the kernel would not
        os.rmdir(path)


def _child_dirs(path: str) -> list[str]:
    """The subdirectories (not symlinks) of `path`; none when it is gone."""
    try:
        with os.scandir(path) as entries:
            return [e.path for e in entries if e.is_dir(follow_symlinks=False)]
    except FileNotFoundError:
        return []


def _unlink_files(path: str) -> None:
    with os.scandir(path) as entries:
        for entry in entries:
            if entry.is_file(follow_symlinks=False):
                os.unlink(entry.path)


def _procs_files(directory: str) -> Iterator[str]:
    """The cgroup.procs files of `directory` and every directory below it (none when it is
    missing). By os.scandir: Path.rglob costs a removal a few milliseconds."""
    try:
        entries = list(os.scandir(directory))
    except (FileNotFoundError, NotADirectoryError):
        return
    for entry in entries:
        if entry.name == "cgroup.procs" and not entry.is_dir(follow_symlinks=False):
            yield entry.path
        elif entry.is_dir(follow_symlinks=False):
            yield from _procs_files(entry.path)


def _signal_pids(pids: list[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


class Cgroup:
    """One cgroup (one directory per v1 controller, or one v2 directory).

    Made by `CgroupManager.create` or re-adopted with `CgroupManager.open`.
    """

    version: int

    def __init__(self, path: str, sleep=time.sleep, clock=time.monotonic):
        """`sleep(seconds)` and `clock()` (monotonic seconds) pace destroy's retries."""
        self.path = path
        self._sleep = sleep
        self._clock = clock

    @property
    def dirs(self) -> list[str]:
        """Every directory of this cgroup (one per v1 controller, one on v2)."""
        raise NotImplementedError

    def procs_files(self) -> list[str]:
        """The cgroup.procs files a process must be written to, to join this cgroup."""
        return [d + "/cgroup.procs" for d in self.dirs]

    def exists(self) -> bool:
        return any(os.path.isdir(d) for d in self.dirs)

    def add_process(self, pid: int) -> None:
        """Move process `pid`, all its threads, into this cgroup."""
        for procs in self.procs_files():
            _write(procs, str(pid))

    def pids(self) -> list[int]:
        """The processes in this cgroup and its descendants, sorted."""
        found: set[int] = set()
        for d in self.dirs:
            for procs in _procs_files(d):
                found.update(_read_pids(procs))
        return sorted(found)

    def set(self, resources: Resources | None) -> None:
        """Make the limits equal to `resources` (None: everything unlimited)."""
        raise NotImplementedError

    def stats(self) -> CgroupStats:
        raise NotImplementedError

    def oom_killed(self) -> bool:
        """True once the kernel's OOM killer has killed a process of this cgroup."""
        raise NotImplementedError

    def freeze(self) -> None:
        raise NotImplementedError

    def thaw(self) -> None:
        raise NotImplementedError

    def kill_all(self, sig: int = SIGKILL) -> None:
        """Send `sig` to every process in the cgroup (frozen meanwhile, so forks can't escape)."""
        frozen = self._try_freeze()
        try:
            _signal_pids(self.pids(), sig)
        finally:
            if frozen:
                self.thaw()

    def destroy(self) -> None:
        """Remove the directories, depth first, killing the processes left in them (SIGKILL)
        when they are busy. Idempotent.

        Raises CgroupError if processes remain or a directory stays busy after DESTROY_TIMEOUT_S.
        """
        deadline = self._clock() + DESTROY_TIMEOUT_S
        while True:
            try:
                for d in self.dirs:
                    _rmdir_tree(d)
                return
            except OSError as e:
                if self._clock() > deadline:
                    raise CgroupError(f"remove cgroup {self.path}: {e.strerror or e} "
                                      f"(processes left: {self.pids()})") from e
            if self.pids():
                self.kill_all(SIGKILL)
            self._sleep(0.01)

    def _try_freeze(self) -> bool:
        try:
            self.freeze()
            return True
        except (CgroupError, NotImplementedError):
            return False

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.path!r})"


class CgroupV1(Cgroup):
    """A cgroup on v1 hierarchies: one directory per controller under root/<controller>."""

    version = 1

    def __init__(self, root: str | os.PathLike, controllers: list[str], path: str, **kwargs):
        super().__init__(path, **kwargs)
        self.root = os.fspath(root)
        self.controllers = controllers

    def dir(self, controller: str) -> str | None:
        """This cgroup's directory for `controller`, or None if that controller is absent."""
        return f"{self.root}/{controller}/{self.path}" if controller in self.controllers else None

    @property
    def dirs(self) -> list[str]:
        return [f"{self.root}/{c}/{self.path}" for c in self.controllers]

    def set(self, resources: Resources | None) -> None:
        r = resources or Resources()
        self._require("memory", r.memory_bytes)
        self._require("cpu", r.cpu_quota_us or r.cpu_shares)
        self._require("pids", r.pids_limit)
        self._set_memory(r.memory_bytes)
        self._set_cpu(r)
        if d := self.dir("pids"):
            _write(d + "/pids.max", "max" if r.pids_limit is None else str(r.pids_limit))

    def _require(self, controller: str, limit: int | None) -> None:
        if limit is not None and self.dir(controller) is None:
            raise CgroupError(f"limit {controller} of {self.path}: controller not mounted under {self.root}")

    def _set_memory(self, limit: int | None) -> None:
        d = self.dir("memory")
        if d is None:
            return
        value = "-1" if limit is None else str(limit)
        files = [d + "/memory.limit_in_bytes"]
        if os.path.exists(self.root + "/memory/memory.memsw.limit_in_bytes"):  # swap accounting on
            files.append(d + "/memory.memsw.limit_in_bytes")  # memory+swap = memory: no swap
        try:
            for f in files:
                _write(f, value)
        except CgroupError:
            # memsw must stay >= limit: when raising the limit, memsw goes first.
            for f in reversed(files):
                _write(f, value)

    def _set_cpu(self, r: Resources) -> None:
        d = self.dir("cpu")
        if d is None:
            return
        _write(d + "/cpu.cfs_period_us", str(r.cpu_period_us))
        _write(d + "/cpu.cfs_quota_us", "-1" if r.cpu_quota_us is None else str(r.cpu_quota_us))
        shares = V1_DEFAULT_SHARES if r.cpu_shares is None else r.cpu_shares
        _write(d + "/cpu.shares", str(min(max(shares, MIN_SHARES), MAX_SHARES)))

    def stats(self) -> CgroupStats:
        mem, cpuacct, pids = self.dir("memory"), self.dir("cpuacct"), self.dir("pids")
        limit = _read_int(mem + "/memory.limit_in_bytes") if mem else None
        usage = _read_int(mem + "/memory.usage_in_bytes") if mem else None
        inactive = _read_keyed(mem + "/memory.stat").get("total_inactive_file") if mem else None
        return CgroupStats(
            memory_usage_bytes=usage,
            memory_limit_bytes=None if limit is None or limit >= 2**62 else limit,
            cpu_usage_ns=_read_int(cpuacct + "/cpuacct.usage") if cpuacct else None,
            pids_current=_read_int(pids + "/pids.current") if pids else None,
            memory_working_set_bytes=working_set(usage, inactive),
        )

    def oom_killed(self) -> bool:
        d = self.dir("memory")
        if d is None:
            return False
        control = _read_keyed(d + "/memory.oom_control")
        if "oom_kill" in control:
            return control["oom_kill"] > 0
        return (_read_int(d + "/memory.failcnt") or 0) > 0  # kernels before 4.13

    def freeze(self) -> None:
        if (d := self.dir("freezer")) is None:
            raise CgroupError(f"freeze {self.path}: no freezer controller")
        _write(d + "/freezer.state", "FROZEN")

    def thaw(self) -> None:
        if (d := self.dir("freezer")) is None:
            raise CgroupError(f"thaw {self.path}: no freezer controller")
        _write(d + "/freezer.state", "THAWED")


class CgroupV2(Cgroup):
    """A cgroup on the unified (v2) hierarchy: one directory, root/<path>."""

    version = 2

    def __init__(self, root: str | os.PathLike, path: str, **kwargs):
        super().__init__(path, **kwargs)
        self.root = os.fspath(root)

    @property
    def dirs(self) -> list[str]:
        return [self.dir]

    @property
    def dir(self) -> str:
        return f"{self.root}/{self.path}"

    def set(self, resources: Resources | None) -> None:
        r = resources or Resources()
        self._write_limit("memory.max", r.memory_bytes)
        if r.memory_bytes is not None and os.path.exists(self.dir + "/memory.swap.max"):
            _write(self.dir + "/memory.swap.max", "0")
        quota = "max" if r.cpu_quota_us is None else str(r.cpu_quota_us)
        self._write_limit("cpu.max", r.cpu_quota_us, f"{quota} {r.cpu_period_us}")
        weight = V2_DEFAULT_WEIGHT if r.cpu_shares is None else shares_to_weight(r.cpu_shares)
        self._write_limit("cpu.weight", r.cpu_shares, str(weight))
        self._write_limit("pids.max", r.pids_limit)

    def _write_limit(self, name: str, limit: int | None, text: str | None = None) -> None:
        """Write a controller file. A missing file means the controller is not enabled here:
        fine for an unlimited value, a CgroupError for a real limit."""
        if text is None:
            text = "max" if limit is None else str(limit)
        path = f"{self.dir}/{name}"
        if os.path.exists(path):
            _write(path, text)
        elif limit is not None:
            raise CgroupError(f"write {text!r} to {path}: controller not enabled")

    def stats(self) -> CgroupStats:
        cpu = _read_keyed(self.dir + "/cpu.stat")
        usage = _read_int(self.dir + "/memory.current")
        return CgroupStats(
            memory_usage_bytes=usage,
            memory_limit_bytes=_read_int(self.dir + "/memory.max"),
            cpu_usage_ns=cpu["usage_usec"] * 1000 if "usage_usec" in cpu else None,
            pids_current=_read_int(self.dir + "/pids.current"),
            memory_working_set_bytes=working_set(usage, _read_keyed(self.dir + "/memory.stat").get("inactive_file")),
        )

    def oom_killed(self) -> bool:
        return _read_keyed(self.dir + "/memory.events").get("oom_kill", 0) > 0

    def freeze(self) -> None:
        _write(self.dir + "/cgroup.freeze", "1")

    def thaw(self) -> None:
        _write(self.dir + "/cgroup.freeze", "0")

    def kill_all(self, sig: int = SIGKILL) -> None:
        if sig == SIGKILL and os.path.exists(self.dir + "/cgroup.kill"):
            _write(self.dir + "/cgroup.kill", "1")  # the kernel kills the whole subtree atomically
            return
        super().kill_all(sig)


class CgroupManager:
    """Creates and re-opens cgroups on one host. Use `CgroupManager.detect(root)`."""

    version: int

    def __init__(self, root: str | os.PathLike, sleep=time.sleep, clock=time.monotonic):
        """`sleep(seconds)` and `clock()` (monotonic seconds) are handed to the cgroups."""
        self.root = os.path.normpath(os.fspath(root))
        self._timing = {"sleep": sleep, "clock": clock}
        self._controllers: list[str] | None = None

    @staticmethod
    def detect(root: str | os.PathLike = DEFAULT_ROOT, **timing) -> "CgroupManager":
        """The manager for the hierarchy at `root`: v2 if root is a cgroup2 mount, else v1.

        Raises CgroupError if root holds neither layout.
        """
        root = os.fspath(root)
        if os.path.exists(root + "/cgroup.controllers"):
            return CgroupV2Manager(root, **timing)
        if any(os.path.exists(f"{root}/{c}/cgroup.procs") for c in V1_CONTROLLERS):
            return CgroupV1Manager(root, **timing)
        raise CgroupError(f"detect cgroups at {root}: neither a cgroup2 mount nor v1 controllers")

    def create(self, path: str, resources: Resources | None = None) -> Cgroup:
        """Make the cgroup (and its parents) and apply `resources`. Existing is fine.

        On failure to apply the limits, the new cgroup is destroyed before raising.
        """
        cgroup = self.open(path)
        self._make_dirs(cgroup)
        try:
            if resources is not None:
                cgroup.set(resources)
        except CgroupError:
            cgroup.destroy()
            raise
        return cgroup

    def open(self, path: str) -> Cgroup:
        """The cgroup at `path`, without creating anything (to re-adopt after a restart)."""
        raise NotImplementedError

    def _make_dirs(self, cgroup: Cgroup) -> None:
        for d in cgroup.dirs:
            _mkdirs(d)


class CgroupV1Manager(CgroupManager):
    """v1 (and hybrid) hosts: the controllers of V1_CONTROLLERS that are mounted under root."""

    version = 1

    @property
    def controllers(self) -> list[str]:
        """The mounted ones, looked up once per manager (a start and a removal each open
        several cgroups)."""
        if self._controllers is None:
            self._controllers = [c for c in V1_CONTROLLERS
                                 if os.path.exists(f"{self.root}/{c}/cgroup.procs")]
        return list(self._controllers)

    def open(self, path: str) -> CgroupV1:
        return CgroupV1(self.root, self.controllers, validate_path(path), **self._timing)


class CgroupV2Manager(CgroupManager):
    """v2-only hosts: one tree; controllers are enabled down the path via subtree_control."""

    version = 2

    def open(self, path: str) -> CgroupV2:
        return CgroupV2(self.root, validate_path(path), **self._timing)

    def _make_dirs(self, cgroup: Cgroup) -> None:
        parent = self.root
        for part in cgroup.path.split("/"):
            self._enable_controllers(parent)
            parent = f"{parent}/{part}"
            _mkdirs(parent)

    def _enable_controllers(self, directory: str) -> None:
        """Let the children of `directory` use cpu, memory and pids, where available."""
        available = set(_read(directory + "/cgroup.controllers").split())
        enabled = set(_read(directory + "/cgroup.subtree_control").split()) \
            if os.path.exists(directory + "/cgroup.subtree_control") else set()
        wanted = [c for c in V2_CONTROLLERS if c in available and c not in enabled]
        if wanted:
            _write(directory + "/cgroup.subtree_control", " ".join(f"+{c}" for c in wanted))
