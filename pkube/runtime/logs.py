"""Reading a container's log: JSON lines written by the shim, Docker json-file style:
{"log": "hi\\n", "stream": "stdout", "time": "2026-11-26T18:10:05.123456789Z"}."""

from __future__ import annotations

import os
import time

from pkube.runtime import jsonlite
from pkube.runtime.records import Record


class LogEntry(Record):
    """One write of the container: stream ("stdout" | "stderr"), data (bytes), time
    (RFC 3339, nanoseconds)."""

    FIELDS = ("stream", "data", "time")
    FROZEN = True

    def render(self, timestamps: bool = False) -> bytes:
        return (self.time.encode() + b" " + self.data) if timestamps else self.data


def parse_time(text: str) -> float:
    """RFC 3339 (as the shim writes it, or a user's --since) to epoch seconds; also accepts
    plain epoch seconds. Raises ValueError."""
    try:
        return float(text)
    except ValueError:
        pass
    import datetime as dt   # only for --since and timestamps given as text
    main, _, frac = text.rstrip("Z").partition(".")
    stamp = dt.datetime.fromisoformat(main).replace(tzinfo=dt.timezone.utc).timestamp()
    return stamp + (float("0." + frac) if frac else 0.0)


def _parse(line: bytes) -> LogEntry | None:
    try:
        doc = jsonlite.loads(line.decode("utf-8", errors="surrogateescape"))
    except ValueError:
        return None
    return LogEntry(doc["stream"], doc["log"].encode("utf-8", errors="surrogateescape"), doc["time"])


def read(path: str | os.PathLike, tail: int | None = None, since: float | None = None) -> list[LogEntry]:
    """The entries now in the log (oldest first): the last `tail` only when given, and only
    those at or after `since` (epoch seconds)."""
    lines = []
    for name in [*rotated_names(path), os.fspath(path)]:
        try:
            with open(name, "rb") as f:
                lines += f.read().splitlines()
        except FileNotFoundError:
            continue
    entries = [e for e in map(_parse, lines) if e is not None]
    if since is not None:
        entries = [e for e in entries if parse_time(e.time) >= since]
    if tail is not None:
        entries = entries[-tail:] if tail > 0 else []
    return entries


def follow(path: str | os.PathLike, running, tail: int | None = None,
           since: float | None = None, poll: float = 0.05, sleep=time.sleep) -> Iterator[LogEntry]:
    """The entries now in the log, then new ones as they are written, until `running()`
    (a callable returning bool) says the container stopped (and the rest is read);
    `sleep(seconds)` waits `poll` between reads."""
    offset = 0
    first = True
    while True:
        was_running = running()
        try:
            with open(path, "rb") as f:
                if os.fstat(f.fileno()).st_size < offset:   # rotated (copied, then truncated)
                    offset = 0
                f.seek(offset)
                chunk = f.read()
        except FileNotFoundError:
            chunk = b""
        complete = chunk[:chunk.rfind(b"\n") + 1]
        offset += len(complete)
        entries = [e for e in map(_parse, complete.splitlines()) if e is not None]
        if since is not None:
            entries = [e for e in entries if parse_time(e.time) >= since]
        if first and tail is not None:
            entries = entries[-tail:] if tail > 0 else []
        first = False
        yield from entries
        if not was_running:
            return
        sleep(poll)


def rotated_names(path: str | os.PathLike) -> list[str]:
    """The rotated files of a log that exist, oldest first (path.N ... path.1)."""
    base = os.fspath(path)
    names, n = [], 1
    while os.path.exists(f"{base}.{n}"):
        names.append(f"{base}.{n}")
        n += 1
    return names[::-1]


def rotate(path: str | os.PathLike, max_bytes: int, max_files: int) -> bool:
    """When the log is larger than `max_bytes`: keep it as path.1 (older ones shifted up,
    at most `max_files` files in all) and start it empty again; True when it rotated.

    The writer (the shim) appends with O_APPEND, so the log is copied then truncated in
    place: lines written between the copy and the truncation are lost, as with logrotate's
    copytruncate."""
    base = os.fspath(path)
    try:
        if os.path.getsize(base) <= max_bytes:
            return False
    except FileNotFoundError:
        return False
    for n in range(max(1, max_files - 1), 0, -1):
        older = f"{base}.{n}"
        if os.path.exists(older):
            if n + 1 >= max_files:
                os.unlink(older)
            else:
                os.replace(older, f"{base}.{n + 1}")
    if max_files > 1:
        with open(base, "rb") as src, open(f"{base}.1.tmp", "wb") as dst:
            while chunk := src.read(1 << 20):
                dst.write(chunk)
        os.replace(f"{base}.1.tmp", f"{base}.1")
    os.truncate(base, 0)
    return True
