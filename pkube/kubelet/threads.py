"""Blocking iterators (a log being followed, a shim's output frames) consumed from the
event loop, each in a thread of its own: they may block for hours, and must not hold one
of the few threads of the loop's default executor (asyncio.to_thread) meanwhile."""

from __future__ import annotations

import asyncio
import threading
from typing import AsyncIterator, Callable, Iterable

END = object()


async def iterate_in_thread(make_iterator: Callable[[], Iterable], stop: threading.Event, *,
                            name: str = "kubelet-stream", maxsize: int = 16) -> AsyncIterator:
    """Yield the items of `make_iterator()`, iterated in a daemon thread; an exception it
    raises is raised here. At most `maxsize` items wait (the thread blocks meanwhile). When
    the consumer stops early (or is cancelled), `stop` is set and the thread ends after its
    current item: the iterator must itself return soon once `stop` is set, or be woken by
    the caller (a socket shut down). Use under contextlib.aclosing."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue(maxsize)

    def put(item) -> bool:
        try:
            asyncio.run_coroutine_threadsafe(queue.put(item), loop).result()
            return True
        except RuntimeError:   # the loop is closed: nobody listens any more
            return False

    def run() -> None:
        outcome = END
        try:
            for item in make_iterator():
                if stop.is_set() or not put(item):
                    return
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            outcome = exc
        put(outcome)

    threading.Thread(target=run, name=name, daemon=True).start()
    try:
        while (item := await queue.get()) is not END:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while not queue.empty():   # unblock a put in progress
            queue.get_nowait()
