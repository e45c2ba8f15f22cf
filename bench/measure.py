"""Latency figures shared by the store and apiserver benchmarks: run a call many times over a
number of concurrent workers, and read a percentile of the latencies."""

from __future__ import annotations

import asyncio
import time


PYTHON_LOOP_ITERATIONS = 3_000_000


def python_loop_line(runs: int = 3) -> str:
    """One line timing a fixed pure-Python loop (best of ``runs``): how fast this machine runs
    Python at the moment, for a bench to print first, so that its figures can be read against
    the machine's speed and load of that run."""
    best = float("inf")
    for _ in range(runs):
        began, total = time.perf_counter(), 0
        for i in range(PYTHON_LOOP_ITERATIONS):
            total += i & 7
        best = min(best, time.perf_counter() - began)
    return f"pure-Python loop ({PYTHON_LOOP_ITERATIONS:,} iterations, best of {runs}): {best * 1000:.0f} ms"


def percentile(values: list[float], q: float) -> float:
    """The value at fraction ``q`` (0.5, 0.99) of the sorted ``values`` (not interpolated)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run_concurrent(total: int, concurrency: int, one) -> tuple[float, list[float]]:
    """Run ``one(i)`` for i < ``total`` over ``concurrency`` workers; (seconds, latencies)."""
    latencies: list[float] = []
    numbers = iter(range(total))

    async def worker():
        for i in numbers:
            start = time.perf_counter()
            await one(i)
            latencies.append(time.perf_counter() - start)

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - began, latencies
