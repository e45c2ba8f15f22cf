"""Signals for the runtime and pdocker, through the C module `_signal`: the `signal` module wraps
it in enums, and importing enum costs every pdocker command milliseconds (bench/runtime.py's
start-up tricks; docs/runtime.md §11.1). The only module of runtime/ and pdocker/ that touches
`_signal`; everything else takes its signal numbers and handlers from here."""

from __future__ import annotations

import _signal

SIGKILL = _signal.SIGKILL
SIGTERM = _signal.SIGTERM
FORWARDED = (_signal.SIGINT, _signal.SIGTERM, _signal.SIGHUP)   # what `pdocker run` passes on


def signal_number(text: str) -> int | None:
    """A signal's number from its number, its name or its name without SIG (kill -s); None
    for no such signal. The names are those of signal.Signals: _signal's SIG* constants but
    SIG_DFL and the like."""
    if text.isdigit():
        return int(text)
    name = text.upper() if text.upper().startswith("SIG") else "SIG" + text.upper()
    number = getattr(_signal, name, None) if not name.startswith("SIG_") else None
    return number if isinstance(number, int) else None


def on_signals(numbers, handler) -> None:
    """Call handler(signum, frame) for each signal of `numbers` from now on."""
    for number in numbers:
        _signal.signal(number, handler)


def on_resize(handler) -> None:
    """Call handler() whenever our terminal is resized (SIGWINCH)."""
    _signal.signal(_signal.SIGWINCH, lambda *_: handler())
