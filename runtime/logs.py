"""Reading a container's log: JSON lines written by the shim, Docker json-file style:
{"log": "hi\\n", "stream": "stdout", "time": "2026-11-26T18:10:05.123456789Z"}."""

from __future__ import annotations

import datetime as dt
import json
import time
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Callable, Iterator


@dataclass(frozen=True)
class LogEntry:
    stream: str      # "stdout" | "stderr"
    data: bytes
    time: str        # RFC 3339, nanoseconds

    def render(self, timestamps: bool = False) -> bytes:
        return (self.time.encode() + b" " + self.data) if timestamps else self.data


def parse_time(text: str) -> float:
    """RFC 3339 (as the shim writes it, or a user's --since) to epoch seconds; also accepts
    plain epoch seconds. Raises ValueError."""
    try:
        return float(text)
    except ValueError:
        pass
    main, _, frac = text.rstrip("Z").partition(".")
    stamp = dt.datetime.fromisoformat(main).replace(tzinfo=dt.timezone.utc).timestamp()
    return stamp + (float("0." + frac) if frac else 0.0)


def _parse(line: bytes) -> LogEntry | None:
    try:
        doc = json.loads(line.decode("utf-8", errors="surrogateescape"))
    except ValueError:
        return None
    return LogEntry(doc["stream"], doc["log"].encode("utf-8", errors="surrogateescape"), doc["time"])


def read(path: Path, tail: int | None = None, since: float | None = None) -> list[LogEntry]:
    """The entries now in the log (oldest first): the last `tail` only when given, and only
    those at or after `since` (epoch seconds)."""
    try:
        lines = path.read_bytes().splitlines()
    except FileNotFoundError:
        return []
    entries = [e for e in map(_parse, lines) if e is not None]
    if since is not None:
        entries = [e for e in entries if parse_time(e.time) >= since]
    if tail is not None:
        entries = entries[-tail:] if tail > 0 else []
    return entries


def follow(path: Path, running: Callable[[], bool], tail: int | None = None,
           since: float | None = None, poll: float = 0.05,
           sleep: Callable[[float], None] = time.sleep) -> Iterator[LogEntry]:
    """The entries now in the log, then new ones as they are written, until `running()`
    says the container stopped (and the rest is read)."""
    offset = 0
    first = True
    while True:
        was_running = running()
        try:
            with open(path, "rb") as f:
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
