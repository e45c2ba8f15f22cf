"""pdocker's side of an attached container: our terminal in raw mode for -it, its size handed
to the container's pty, and the copy loop between our stdio and the shim's attach socket."""

from __future__ import annotations

import os
import select
import sys

from pkube.runtime import process, signals
from pkube.runtime.runtime import ContainerError, Runtime


def terminal_size(tty: bool) -> tuple[int, int] | None:
    """(rows, cols) of our terminal for a container's pty, or None (no -t, or stdout is not a
    terminal)."""
    if not tty or not sys.stdout.isatty():
        return None
    size = os.get_terminal_size(sys.stdout.fileno())
    return size.lines, size.columns


class RawTerminal:
    """Puts the local terminal in raw mode for -it, restoring it on exit."""

    def __init__(self, enabled: bool):
        self.enabled = enabled and sys.stdin.isatty()
        self.saved = None

    def __enter__(self):
        if self.enabled:
            import termios
            import tty
            self.saved = termios.tcgetattr(sys.stdin.fileno())
            tty.setraw(sys.stdin.fileno())
        return self

    def __exit__(self, *exc):
        if self.saved is not None:
            import termios
            termios.tcsetattr(sys.stdin.fileno(), termios.TCSADRAIN, self.saved)


def relay(attachment: process.Attachment, stdin: bool, tty: bool) -> int | None:
    """Copy frames to our stdout/stderr and (when `stdin`) our stdin to the container until
    the exit frame; returns the exit code (None if the shim went away without one)."""
    out, err = sys.stdout.buffer, sys.stderr.buffer
    watch = [attachment.sock] + ([sys.stdin.fileno()] if stdin else [])
    if tty and terminal_size(True):   # our terminal resized: so is the container's pty
        signals.on_resize(lambda: attachment.resize(*terminal_size(True)))
    with RawTerminal(tty and stdin):
        while True:
            ready, _, _ = select.select(watch, [], [])
            if sys.stdin.fileno() in ready:
                data = os.read(sys.stdin.fileno(), 4096)
                if data:
                    attachment.send(data)
                else:
                    watch.remove(sys.stdin.fileno())
                    if not tty:
                        attachment.close_stdin()
            if attachment.sock in ready:
                frame = attachment.read_frame()
                if frame is None:
                    return attachment.exit_code
                stream = out if frame[0] == process.STREAM_STDOUT else err
                stream.write(frame[1])
                stream.flush()


def forward_signals(rt: Runtime, cid: str) -> None:
    """From now on, SIGINT, SIGTERM and SIGHUP sent to pdocker go to container `cid` (a
    container already gone is no error)."""
    def forward(signum, _frame):
        try:
            rt.kill(cid, signum)
        except ContainerError:
            pass
    signals.on_signals(signals.FORWARDED, forward)


def attach_and_wait(rt: Runtime, cid: str, attachment, stdin: bool, tty: bool) -> int:
    """Relay container `cid` until it exits; its exit code (from the shim's exit frame, else
    from the runtime). Without a tty, our signals are forwarded to it, as docker does."""
    if not tty:
        forward_signals(rt, cid)
    code = relay(attachment, stdin, tty)
    attachment.close()
    return code if code is not None else rt.wait(cid)
