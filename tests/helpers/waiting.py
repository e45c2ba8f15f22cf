"""Polling until something a test waits for is true; AssertionError when it never is."""

import asyncio
import time


async def until(check, timeout: float = 30.0, interval: float = 0.05):
    """Poll ``check`` (a coroutine function) until it returns a truthy value; that value."""
    value = None
    for _ in range(int(timeout / interval)):
        value = await check()
        if value:
            return value
        await asyncio.sleep(interval)
    raise AssertionError(f"not reached within {timeout}s: last {value!r}")


def wait_for(check, timeout: float = 20.0):
    """Poll ``check`` until it returns something truthy and return that; AssertionError after
    ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"not reached within {timeout}s")
