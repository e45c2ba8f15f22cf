"""Starting and watching processes through the C shim.

- `binaries(root_bin)` (pkube/runtime/helpers.py) finds the shim and pause executables built from
  this package's shim.c and pause.c: the installed ones, else built into ROOT/bin.
- `launch(shim, config, on_pid, meanwhile)` runs the shim protocol (see shim.c): spawns it,
  gets the container's pid, lets the caller wire network/attach in `on_pid`, releases the
  child, and returns the pids or raises `StartError` with the shim's message. (The shim puts
  the child in its cgroup itself.)
- `Attachment` is a client of the shim's socket: output frames, stdin, the exit code.
- `proc_start_time`/`alive` identify a process across pid reuse.
"""

from __future__ import annotations

import fcntl
import os
import time
from _struct import pack, unpack   # the C module: `struct` is a Python wrapper around it

# the helpers' executables, named here for the callers of launch (runtime.py, exec.py, pdocker)
from pkube.runtime.helpers import Binaries, BuildError, binaries, build_binary  # noqa: F401
from pkube.runtime.records import Record
from pkube.runtime.sha256 import sha256_hex

# The C socket type itself: the `socket` module wrapped around it (enum tables, selectors)
# would cost every start about 2 ms.
try:
    from _socket import AF_UNIX, SHUT_WR, SOCK_STREAM, socket as unix_socket
except ImportError:   # not CPython
    from socket import AF_UNIX, SHUT_WR, SOCK_STREAM, socket as unix_socket

STREAM_STDOUT, STREAM_STDERR, STREAM_EXIT = 1, 2, 3


class StartError(Exception):
    """The container's process could not be started; the message is the shim's."""


def proc_start_time(pid: int) -> int | None:
    """Field 22 of /proc/<pid>/stat (start time in clock ticks), or None if no such process."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    if fields[0] == "Z":
        return None
    return int(fields[19])


def alive(pid: int, start: int) -> bool:
    """True when `pid` runs and is the process that started at `start` (not a reused pid)."""
    return pid > 0 and proc_start_time(pid) == start


def _high_fd(fd: int) -> int:
    """Move fd above the ones the shim expects (3, 4), close-on-exec."""
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return moved


def _read_line(fd: int) -> str:
    data = b""
    while not data.endswith(b"\n"):
        chunk = os.read(fd, 1)
        if not chunk:
            break
        data += chunk
    return data.decode(errors="replace").strip()


def _config_pipe(config: bytes) -> int:
    """The read end of a pipe already holding `config` (no file to create per start)."""
    r, w = (_high_fd(fd) for fd in os.pipe())
    try:
        if len(config) > 65536:
            fcntl.fcntl(w, fcntl.F_SETPIPE_SZ, 1 << 18)
        os.write(w, config)
    except BaseException:
        os.close(r)
        raise
    finally:
        os.close(w)
    return r


def _release(go_w: int) -> None:
    """One go byte; a child that already died is reported by the notify pipe instead."""
    try:
        os.write(go_w, b"g")
    except BrokenPipeError:
        pass


class Launched(Record):
    """What launch() started: the shim's pid and the container process's pid."""

    FIELDS = ("shim_pid", "pid")
    FROZEN = True


def launch(shim: str | os.PathLike, config: bytes, on_pid: Callable[[int], None] | None = None,
           meanwhile: Callable[[], None] | None = None) -> Launched:
    """Run the shim protocol. `on_pid(pid)` runs while the child waits, after its namespaces
    exist and before its rootfs is set up (network, init layer, attach); `meanwhile()` runs
    while the shim starts (work that needs no pid). An exception in either aborts the start
    (the child exits) and propagates. The shim puts the child in its cgroup itself (the
    config's `cgroup` or `cgroup_procs`). Raises StartError with the shim's message; when the
    shim got as far as the child's pid, it has exited (exit file written) by then."""
    notify_r, notify_w = (_high_fd(fd) for fd in os.pipe())
    go_r, go_w = (_high_fd(fd) for fd in os.pipe())
    config_r = _config_pipe(config)
    spawned = 0
    try:
        shim = os.fspath(shim)
        spawned = os.posix_spawn(shim, [shim, "-"], {}, file_actions=[
            (os.POSIX_SPAWN_DUP2, config_r, 0), (os.POSIX_SPAWN_DUP2, notify_w, 3),
            (os.POSIX_SPAWN_DUP2, go_r, 4)])
        os.close(notify_w)
        os.close(go_r)
        notify_w = go_r = -1
        if meanwhile:
            meanwhile()
        line = _read_line(notify_r)
        if not line.startswith("pid "):
            raise StartError(line[4:] if line.startswith("err ") else f"shim failed: {line or 'no answer'}")
        _, shim_pid, pid = line.split()
        if on_pid:
            on_pid(int(pid))
        _release(go_w)
        line = _read_line(notify_r)
        if line != "ok":
            _wait_gone(int(shim_pid))   # it reaps the child and writes the exit file first
            raise StartError(line[4:] if line.startswith("err ") else f"shim failed: {line or 'no answer'}")
        return Launched(int(shim_pid), int(pid))
    finally:
        for fd in (notify_r, notify_w, go_r, go_w, config_r):
            if fd >= 0:
                os.close(fd)
        if spawned:
            os.waitpid(spawned, 0)   # the shim's first process exits as soon as it daemonized


def _wait_gone(pid: int, timeout: float = 5.0) -> None:
    """Wait until process `pid` (not our child: the shim daemonized) has exited, at most
    `timeout` seconds. After a failed start the shim still reaps the child and writes its
    exit file into the container's (or exec's) directory: a caller that removes that
    directory on StartError must not race with it."""
    start = proc_start_time(pid)
    deadline = time.monotonic() + timeout
    while start is not None and proc_start_time(pid) == start and time.monotonic() < deadline:
        time.sleep(0.001)


def socket_name(directory: str | os.PathLike) -> str:
    """The abstract unix socket name of the shim supervising `directory`."""
    return "pkube-" + sha256_hex(os.fsencode(directory))[:32]


class Attachment:
    """A connection to a shim. mode 'a': output + stdin; 'o': output; 'w': exit code only.

    Iterate `frames()` for (stream, bytes) until the exit frame; `exit_code` is set then
    (None if the shim went away without one: read the exit file instead)."""

    def __init__(self, sock_name: str, mode: str = "o"):
        self.sock = unix_socket(AF_UNIX, SOCK_STREAM)
        try:
            self.sock.connect("\0" + sock_name)
            self.sock.sendall(mode.encode())
        except OSError:
            self.sock.close()
            raise
        self.exit_code: int | None = None
        self.sock_name = sock_name
        self.on_close: Callable[[], None] | None = None   # e.g. remove an exec's directory

    def resize(self, rows: int, cols: int) -> None:
        """Set the size of the process's pty (it gets SIGWINCH); ignored without a tty."""
        conn = unix_socket(AF_UNIX, SOCK_STREAM)
        try:
            conn.connect("\0" + self.sock_name)
            conn.sendall(b"r" + pack(">HH", rows, cols))
        except OSError:
            pass   # the process is gone: nothing to resize
        finally:
            conn.close()

    def fileno(self) -> int:
        return self.sock.fileno()

    def send(self, data: bytes) -> None:
        """Bytes for the container's stdin (mode 'a')."""
        self.sock.sendall(data)

    def close_stdin(self) -> None:
        """EOF on the container's stdin (without a tty)."""
        try:
            self.sock.shutdown(SHUT_WR)
        except OSError:
            pass

    def _recv_exact(self, n: int) -> bytes | None:
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                return None
            buf += chunk
        return buf

    def read_frame(self) -> tuple[int, bytes] | None:
        """The next (stream, data), or None at the end (after the exit frame or a hangup)."""
        try:
            header = self._recv_exact(5)
            if header is None:
                return None
            stream, size = header[0], unpack(">I", header[1:])[0]
            data = self._recv_exact(size) or b""
        except (ConnectionResetError, OSError):
            return None
        if stream == STREAM_EXIT:
            self.exit_code = unpack(">I", data)[0]
            return None
        return stream, data

    def frames(self) -> Iterator[tuple[int, bytes]]:
        while (frame := self.read_frame()) is not None:
            yield frame

    def close(self) -> None:
        self.sock.close()
        if self.on_close is not None:
            self.on_close()
            self.on_close = None


def read_exit_file(path: str | os.PathLike) -> tuple[int, str] | None:
    """(exit code, finished_at) recorded by the shim, or None when not yet written."""
    try:
        with open(path) as f:
            code, finished = f.read().split()
    except (FileNotFoundError, ValueError):
        return None
    return int(code), finished


def wait_for_exit(sock_name: str, exit_file: str | os.PathLike, watched: list[tuple[int, int]],
                  timeout: float | None = None) -> tuple[int, str] | None:
    """Block until the supervised process has exited; (code, finished_at) as the shim
    recorded it, or None on timeout, or when the shim and the process (`watched`: their
    (pid, start time)) both vanished without a record. Uses the shim's socket when it
    answers, else polls."""
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        conn = Attachment(sock_name, "w")
        conn.sock.settimeout(timeout)
        try:
            conn.read_frame()
        finally:
            conn.close()
    except OSError:
        pass
    while True:
        if (result := read_exit_file(exit_file)) is not None:
            return result
        if not any(alive(pid, start) for pid, start in watched):
            return read_exit_file(exit_file)
        if deadline is not None and time.monotonic() > deadline:
            return None
        time.sleep(0.01)
