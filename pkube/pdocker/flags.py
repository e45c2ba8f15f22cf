"""The values of pdocker's flags as Docker reads them: sizes, KEY=value lists, volumes, signals,
times. Each raises UsageError (one line for the user) for text it cannot read."""

from __future__ import annotations

import os
import time

from pkube.pdocker.cliargs import UsageError
from pkube.runtime import signals
from pkube.runtime.spec import Mount


def parse_bytes(text: str) -> int:
    """Docker's memory sizes: 512, 512k, 64m, 1g (binary units)."""
    units = {"b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    t = text.strip().lower()
    if t and t[-1] == "b" and len(t) > 1 and t[-2] in units:
        t = t[:-1]
    mult = units.get(t[-1:], None)
    number = t[:-1] if mult else t
    try:
        value = int(float(number) * (mult or 1))
    except ValueError:
        raise UsageError(f"invalid size: {text!r}") from None
    if value <= 0:
        raise UsageError(f"invalid size: {text!r}")
    return value


def key_values(items: list[str], invalid) -> dict[str, str]:
    """Docker's KEY=value lists (``-e``, ``--build-arg``): a bare KEY takes its value from this
    process's environment and is left out when unset there; an item without a key raises
    ``invalid(item)``."""
    result = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not key:
            raise invalid(item)
        if not sep:
            if key not in os.environ:
                continue
            value = os.environ[key]
        result[key] = value
    return result


def environment(items: list[str]) -> dict[str, str]:
    """``-e`` flags."""
    return key_values(items, lambda item: UsageError(f"invalid environment variable: {item!r}"))


def labels(items: list[str]) -> dict[str, str]:
    """``-l KEY=value`` flags (a bare KEY is an empty label)."""
    return {k: v for k, _, v in (i.partition("=") for i in items)}


def volume(text: str) -> Mount:
    """``-v HOST:DIR[:ro]``: a bind mount of an absolute host path, made when missing."""
    parts = text.split(":")
    if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] not in ("ro", "rw")):
        raise UsageError(f"invalid volume specification: {text!r} (want HOST:DIR[:ro])")
    if not parts[0].startswith("/"):
        raise UsageError(f"invalid volume {text!r}: only absolute host paths are supported")
    if not os.path.exists(parts[0]):
        os.makedirs(parts[0], exist_ok=True)
    return Mount(parts[0], parts[1], len(parts) == 3 and parts[2] == "ro")


def signal_number(text: str) -> int:
    """``kill -s``: a signal's number, name, or name without SIG (pkube/runtime/signals.py)."""
    number = signals.signal_number(text)
    if number is None:
        raise UsageError(f"invalid signal: {text}")
    return number


def parse_since(text: str) -> float:
    """--since: RFC 3339, epoch seconds, or a duration back from now (30s, 5m, 2h)."""
    units = {"s": 1, "m": 60, "h": 3600}
    if text[-1:] in units and text[:-1].replace(".", "", 1).isdigit():
        return time.time() - float(text[:-1]) * units[text[-1]]
    from pkube.runtime.logs import parse_time
    try:
        return parse_time(text)
    except ValueError:
        raise UsageError(f"invalid --since {text!r}: want a timestamp or a duration like 10m") from None
