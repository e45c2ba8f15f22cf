"""pdocker's output as Docker prints it: tables, sizes, durations, times and inspect's
`--format` templates. Pure functions of their arguments (and of the clock, for "ago")."""

from __future__ import annotations

import time

from pkube.runtime import jsonlite


def table(rows: list[list[str]]) -> str:
    """Docker's tabwriter layout: columns padded to the widest cell plus 3 spaces; the first
    row is the header."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("".join(c.ljust(w + 3) if i < len(r) - 1 else c
                             for i, (c, w) in enumerate(zip(r, widths))).rstrip() for r in rows)


def human_size(n: float) -> str:
    """Binary units, 4 significant digits: 512B, 1.5KiB, 64MiB (docker stats' memory)."""
    return _scaled_size(n, 1024, ("B", "KiB", "MiB", "GiB"), 4)


def decimal_size(n: float) -> str:
    """Docker's units.HumanSize (decimal, 3 significant digits): 0B, 648B, 1.23kB, 3.4MB."""
    return _scaled_size(n, 1000, ("B", "kB", "MB", "GB", "TB"), 3)


def _scaled_size(n: float, base: int, units: tuple[str, ...], digits: int) -> str:
    """``n`` bytes in the first of ``units`` (each ``base`` times the last) under ``base``, or
    the last; bytes as a whole number, others to ``digits`` significant digits."""
    for unit in units[:-1]:
        if n < base:
            break
        n /= base
    else:
        unit = units[-1]
    return f"{int(n)}B" if unit == "B" else f"{n:.{digits}g}{unit}"


def human_duration(seconds: float) -> str:
    """Docker's units.HumanDuration."""
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    if s == 1:
        return "1 second"
    if s < 60:
        return f"{s} seconds"
    minutes = s // 60
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = round(s / 3600)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{hours // 24 // 365} years"


def parse_time(stamp: str) -> float:
    """runtime.logs.parse_time (RFC 3339 or epoch seconds; ValueError otherwise), imported only
    by the commands that show times."""
    from pkube.runtime.logs import parse_time as parse
    return parse(stamp)


def ago(stamp: str) -> str:
    """"5 minutes ago" for an RFC 3339 time; "N/A" for one that is not (an image made
    without a creation time)."""
    try:
        when = parse_time(stamp)
    except (ValueError, TypeError):
        return "N/A"
    return human_duration(max(time.time() - when, 0)) + " ago"


def command_text(argv: list[str]) -> str:
    """ps's COMMAND column: the quoted command line, cut to 20 characters."""
    text = " ".join(argv)
    return jsonlite.dumps(text if len(text) <= 20 else text[:19] + "…")


def render_format(fmt: str, doc: dict) -> str:
    """The tiny subset of Go templates people use with inspect: {{.A.B}} and {{json .A}}."""
    import json
    import re

    def lookup(path: str):
        value = doc
        for part in path.strip(".").split("."):
            value = value.get(part) if isinstance(value, dict) else None
        return value

    def replace(m):
        expr = m.group(1).strip()
        if expr.startswith("json "):
            return json.dumps(lookup(expr[5:].strip()))
        value = lookup(expr)
        if isinstance(value, bool):
            return str(value).lower()
        return "<no value>" if value is None else str(value)
    return re.sub(r"\{\{(.*?)\}\}", replace, fmt)


class ProgressBars:
    """Docker-style per-layer progress of pull and push: redrawn lines on a terminal, status
    changes otherwise. `update` is called from the download threads."""

    WIDTH = 40

    def __init__(self, out, quiet: bool = False):
        import threading   # pull and push only
        self.out = out
        self.quiet = quiet
        self.tty = out.isatty()
        self.order: list[str] = []
        self.last: dict[str, str] = {}
        self.lock = threading.Lock()

    def update(self, event) -> None:
        """Called from download threads: serialised by a lock."""
        if self.quiet:
            return
        with self.lock:
            self._update(event)

    def _update(self, event) -> None:
        line = self._line(event)
        if event.id not in self.order:
            self.order.append(event.id)
            self.last[event.id] = ""
            if self.tty:
                self.out.write("\n")
        if self.tty:
            up = len(self.order) - self.order.index(event.id)
            self.out.write(f"\x1b[{up}A\r\x1b[2K{line}\x1b[{up}B\r")
        elif self.last[event.id] != event.status:
            self.out.write(f"{event.id}: {event.status}\n")
        self.last[event.id] = event.status
        self.out.flush()

    def finish(self) -> None:
        self.out.flush()

    def _line(self, event) -> str:
        if event.status in ("Downloading", "Pushing") and event.total:
            done = min(self.WIDTH, self.WIDTH * event.current // event.total)
            arrow = "=" * max(done - 1, 0) + (">" if done else "")
            return (f"{event.id}: {event.status} [{arrow:<{self.WIDTH}}] "
                    f"{decimal_size(event.current)}/{decimal_size(event.total)}")
        return f"{event.id}: {event.status}"
