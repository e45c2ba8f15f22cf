"""Running an extra process in a running container (`docker exec`), and reading its
process table (`docker top`).

An exec is supervised by its own shim in "join" mode: the child setns into every namespace
of the container's process (mnt last, so it lands in the container's root), joins the
container's cgroup, drops to the container's capabilities and user, and execs.
"""

from __future__ import annotations

import os
import time

from pkube.runtime import process
from pkube.runtime.errors import Conflict
from pkube.runtime.launch import place_in_cgroup
from pkube.runtime.namespaces import plan_for_exec
from pkube.runtime.records import Record
from pkube.runtime.rootfs import remove_tree
from pkube.runtime.signals import SIGKILL
from pkube.runtime.spec import ShimConfig, capability_mask, spec_from_dict


class ExecResult(Record):
    """What an exec returns, whichever way it ran.

    pid: the host pid of the started command;
    exit_code: its exit code when exec waited for it (the default), None when it was started
      `interactive` or `detach`ed (an interactive one's code is then its attachment's);
    stdout, stderr: its output (bytes) when exec waited for it, else b"";
    attachment: the process.Attachment to relay an `interactive` one's stdin and output (the
      caller closes it), else None.
    """

    FIELDS = ("pid", ("exit_code", None), ("stdout", b""), ("stderr", b""), ("attachment", None))
    FROZEN = True


def exec_in(launcher, state, argv: list[str], tty: bool = False, env: dict | None = None,
            workdir: str | None = None, user: str | None = None, stdin: bytes | None = None,
            interactive: bool = False, detach: bool = False, tty_size: tuple[int, int] | None = None,
            timeout: float | None = None) -> ExecResult:
    """Start `argv` in the running container `state`, with its namespaces, cgroup (through
    `launcher`, a runtime.launch.Launcher), capabilities, seccomp filter and user.

    By default waits for it, feeding `stdin` when given, and returns its exit code and
    output; with `timeout`, the command is killed after that many seconds and TimeoutError
    raised (what a probe needs). `interactive` returns at once with an attachment to relay;
    `detach` returns at once with the pid only. Raises Conflict when the container is not
    running, StartError when the command cannot start.
    """
    if not state.running or not process.alive(state.pid, state.pid_start):
        raise Conflict(f"Container {state.id} is not running")
    if not argv:
        raise ValueError("exec: no command given")
    edir = os.path.join(launcher.store.dir(state.id), "execs", os.urandom(8).hex())
    os.makedirs(edir)
    config = _shim_config(state, argv, edir, tty=tty, env=env, workdir=workdir, user=user,
                          stdin_open=interactive or stdin is not None, tty_size=tty_size)
    cgroup = launcher.cgroup_of(state)
    if cgroup is not None:
        place_in_cgroup(cgroup, config)
    mode = None if detach else ("a" if (interactive or stdin is not None) else "o")
    holder = {}

    def on_pid(pid: int) -> None:
        if mode:
            holder["attachment"] = process.Attachment(config.sock, mode)

    try:
        launched = process.launch(launcher.binaries().shim, config.encode(), on_pid)
    except Exception:
        if "attachment" in holder:
            holder["attachment"].close()
        remove_tree(edir)
        raise
    if detach:
        return ExecResult(launched.pid)
    attachment = holder["attachment"]
    if interactive:
        attachment.on_close = lambda: remove_tree(edir)
        return ExecResult(launched.pid, attachment=attachment)
    return _wait(launched.pid, attachment, stdin, edir, timeout, argv[0])


def _shim_config(state, argv: list[str], edir: str, *, tty: bool, env: dict | None,
                 workdir: str | None, user: str | None, stdin_open: bool,
                 tty_size: tuple[int, int] | None) -> ShimConfig:
    """The shim's config of a command joining `state`'s namespaces, with the container's
    environment (overridden by `env`), working directory, user, capabilities and seccomp."""
    merged_env = dict(e.split("=", 1) for e in state.process["env"])
    merged_env.update(env or {})
    return ShimConfig(
        argv=list(argv), env=[f"{k}={v}" for k, v in merged_env.items()],
        plan=plan_for_exec(state.pid), exit_file=os.path.join(edir, "exit"), sock=process.socket_name(edir),
        cwd=workdir or state.process["workdir"], user=user if user is not None else (state.process["user"] or None),
        tty=tty, stdin_open=stdin_open, tty_size=tty_size,
        ptmx=f"/proc/{state.pid}/root/dev/pts/ptmx", caps=_container_caps(state),
        allow_escalation=_allows_escalation(state), **_container_seccomp(state))


def _wait(pid: int, attachment, stdin: bytes | None, edir: str, timeout: float | None,
          name: str) -> ExecResult:
    """Collect a command's output and exit code (killing it after `timeout` seconds)."""
    watchdog = _Watchdog(pid, timeout) if timeout is not None else None
    try:
        code, out, err = _collect(attachment, stdin, edir)
    finally:
        if watchdog:
            watchdog.cancel()
    if watchdog and watchdog.fired:
        raise TimeoutError(f"exec {name}: still running after {timeout}s, killed")
    return ExecResult(pid, code, out, err)


def _container_caps(state) -> int:
    """The exec'd process gets the container's capabilities (its cap_add, cap_drop, privileged)."""
    if state.kind != "container" or not state.spec:
        return capability_mask()
    return capability_mask(spec_from_dict(state.spec).capabilities())


def _container_seccomp(state) -> dict:
    """An exec'd process gets its container's seccomp filter (none for a sandbox's)."""
    if state.kind != "container" or not state.spec:
        return {}
    return spec_from_dict(state.spec).seccomp_options()


def _allows_escalation(state) -> bool:
    """An exec'd process has no_new_privs exactly when its container has."""
    spec = state.spec or {}
    return not spec.get("no_new_privileges", True) or bool(spec.get("privileged"))


class _Watchdog:
    """Kills `pid` (SIGKILL) when `seconds` pass before cancel()."""

    def __init__(self, pid: int, seconds: float):
        import threading
        self.pid, self.fired = pid, False
        self.start = process.proc_start_time(pid)
        self.timer = threading.Timer(seconds, self._fire)
        self.timer.daemon = True
        self.timer.start()

    def _fire(self) -> None:
        if self.start is not None and process.alive(self.pid, self.start):
            self.fired = True
            os.kill(self.pid, SIGKILL)

    def cancel(self) -> None:
        self.timer.cancel()


def _collect(attachment, stdin: bytes | None, edir: str) -> tuple[int, bytes, bytes]:
    out, err = [], []
    try:
        if stdin is not None:
            attachment.send(stdin)
            attachment.close_stdin()
        for stream, data in attachment.frames():
            (out if stream == process.STREAM_STDOUT else err).append(data)
        code = attachment.exit_code
    finally:
        attachment.close()
    if code is None:
        recorded = process.read_exit_file(os.path.join(edir, "exit"))
        code = recorded[0] if recorded else 255
    remove_tree(edir)
    return code, b"".join(out), b"".join(err)


def _read_text(path: str) -> str:
    with open(path) as f:
        return f.read()


def _proc_row(pid: int, ticks: int, boot: float) -> list[str] | None:
    try:
        stat, status = _read_text(f"/proc/{pid}/stat"), _read_text(f"/proc/{pid}/status")
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    uid = int(next(l for l in status.splitlines() if l.startswith("Uid:")).split()[1])
    import pwd   # `top` only
    try:
        user = pwd.getpwuid(uid).pw_name
    except KeyError:
        user = str(uid)
    cpu = (int(fields[11]) + int(fields[12])) // ticks
    started = time.strftime("%H:%M", time.localtime(boot + int(fields[19]) / ticks))
    cmd = cmdline.replace(b"\0", b" ").decode(errors="replace").strip() or stat[stat.index("(") + 1:stat.rindex(")")]
    return [user, str(pid), fields[1], "0", started, "?",
            time.strftime("%H:%M:%S", time.gmtime(cpu)), cmd]


def process_table(pids: list[int]) -> tuple[list[str], list[list[str]]]:
    """`ps -ef`-style titles and rows for host pids (UID PID PPID C STIME TTY TIME CMD)."""
    ticks = os.sysconf("SC_CLK_TCK")
    uptime = float(_read_text("/proc/uptime").split()[0])
    boot = time.time() - uptime
    rows = [r for r in (_proc_row(pid, ticks, boot) for pid in pids) if r]
    return ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"], rows
