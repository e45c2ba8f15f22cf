"""Run a pkube component under tracemalloc, to find what its memory holds (issue 12).

    python -m bench.tracemem OUTDIR [--frames N] MODULE [ARGS...]

runs ``python -m MODULE ARGS`` in this process with tracemalloc started first (N frames per
allocation, default 1; more costs more; 0: no tracemalloc, only the sizes). Each SIGUSR2 writes
``OUTDIR/snap-<n>.pickle`` (a ``tracemalloc.Snapshot``, n counting from 0) and appends one line
to ``OUTDIR/sizes.txt``: n, seconds since start, tracemalloc's traced size, peak and own
overhead, glibc's heap (mallinfo2: bytes in use by malloc, free in its arenas, mmapped) and
pymalloc's arenas, and the RSS (MiB). Compare two snapshots with

    python -m bench.tracemem --compare OUTDIR/snap-1.pickle OUTDIR/snap-5.pickle [--top 25]

which prints the lines whose held memory grew most (size and count of blocks). Each SIGUSR2
also writes ``OUTDIR/census-<n>.txt``: the containers of 500 entries or more and what holds
them (with ``--frames 0`` too: structures that grow show there at full speed), then how many
objects of each type the collector sees; sizes.txt ends with the loop's asyncio tasks and the
open file descriptors (connections or tasks that never end show there). The traced size
against the RSS tells Python's own objects from the allocator's arenas and C libraries.
tracemalloc slows the component (about 2x at 1 frame): figures of throughput taken under it
mean nothing. Nothing of this is in the components themselves.
"""

from __future__ import annotations

import argparse
import ctypes
import itertools
import os
import runpy
import signal
import sys
import time
import tracemalloc
from pathlib import Path


def rss_mib() -> float:
    """This process's resident memory, MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class MallInfo2(ctypes.Structure):
    """glibc's struct mallinfo2 (glibc 2.33 and later)."""

    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
                 "fordblks", "keepcost")]


def malloc_line() -> str:
    """glibc's bytes in use, free in its arenas and mmapped, and pymalloc's arenas (MiB)."""
    try:
        libc = ctypes.CDLL(None)
        libc.mallinfo2.restype = MallInfo2
        info = libc.mallinfo2()
    except (OSError, AttributeError):
        return "malloc ?"
    return (f"malloc used {info.uordblks / 2 ** 20:.1f} free {info.fordblks / 2 ** 20:.1f} "
            f"mmapped {info.hblkhd / 2 ** 20:.1f}")


def pymalloc_line() -> str:
    """pymalloc's arenas and the bytes of its blocks in use (MiB), from sys._debugmallocstats
    (which writes to file descriptor 2: sent to a temporary file meanwhile)."""
    import re
    import tempfile

    with tempfile.TemporaryFile() as out:
        saved = os.dup(2)
        try:
            os.dup2(out.fileno(), 2)
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        out.seek(0)
        text = out.read().decode(errors="replace")
    arenas = re.search(r"arenas \* \d+ bytes/arena\s*=\s*([\d,]+)", text)
    blocks = re.search(r"# bytes in allocated blocks\s*=\s*([\d,]+)", text)

    def mib(found) -> str:
        return f"{int(found.group(1).replace(',', '')) / 2 ** 20:.1f}" if found else "?"
    return f"pymalloc arenas {mib(arenas)} blocks {mib(blocks)}"


def live_line() -> str:
    """The asyncio tasks of the running loop (when there is one) and the open file descriptors."""
    import asyncio

    try:
        tasks = str(len(asyncio.all_tasks(asyncio.get_running_loop())))
    except RuntimeError:
        tasks = "?"
    return f"tasks {tasks} fds {len(os.listdir('/proc/self/fd'))}"


def census(path: Path, least: int = 500) -> None:
    """Write to ``path`` every container (dict, list, set, deque) of at least ``least`` entries
    that the collector tracks, biggest first, each with what holds it (class and attribute, or
    the holder's type): the structures to watch for growth between two snapshots."""
    import collections
    import gc

    kinds = (dict, list, set, collections.deque, collections.OrderedDict)
    objects = all_objects()
    big = sorted((o for o in objects if isinstance(o, kinds) and len(o) >= least and o is not _PARENTS),
                 key=len, reverse=True)
    del big[200:]
    counts = type_counts(objects)
    del objects
    _PARENTS.clear()
    lines = [f"{len(c):9d} {type(c).__name__:<12} {_holder(c, ignore=(id(big),))}  e.g. {_sample(c)}" for c in big]
    del big
    path.write_text("\n".join(lines + large_bytes() + counts) + "\n")
    _PARENTS.clear()


def type_counts(objects: list, top: int = 60) -> list[str]:
    """How many objects of each type (module.qualname) the collector sees, the ``top`` most
    numerous: per-connection or per-request objects that outlive their use show here as a
    count that grows between two censuses."""
    import collections

    counts = collections.Counter(f"{type(o).__module__}.{type(o).__qualname__}" for o in objects)
    return ["types:"] + [f"  {n:9d} {name}" for name, n in counts.most_common(top)]


def _sample(container) -> str:
    """The repr of one entry (a key for a mapping), cut to 100 characters."""
    try:
        item = next(iter(container))
        if isinstance(container, dict):
            item = (item, container[item])
        return repr(item)[:100]
    except Exception:  # noqa: BLE001 - an empty or odd container
        return "?"


def large_bytes(least: int = 512, holders: int = 15) -> list[str]:
    """The bytes and str objects over ``least`` bytes (what malloc holds for Python, beside
    pymalloc's arenas), summed by the container holding them (through untracked tuples too);
    the ``holders`` biggest containers named as ``census`` names them."""
    import gc

    seen: set[int] = set()
    holder_of: dict[int, object] = {}
    size_of: dict[int, int] = {}
    count_of: dict[int, int] = {}
    for obj in all_objects():
        for child in gc.get_referents(obj):
            if type(child) in (bytes, str) and id(child) not in seen:
                size = sys.getsizeof(child)
                if size >= least:
                    seen.add(id(child))
                    owner = obj
                    while type(owner) is tuple and id(owner) in _PARENTS:
                        owner = _PARENTS[id(owner)]
                    holder_of[id(owner)] = owner
                    size_of[id(owner)] = size_of.get(id(owner), 0) + size
                    count_of[id(owner)] = count_of.get(id(owner), 0) + 1
    out = [f"large bytes/str: {sum(size_of.values()) / 2 ** 20:.1f} MiB in {sum(count_of.values())} objects"]
    for key in sorted(size_of, key=size_of.get, reverse=True)[:holders]:
        obj = holder_of[key]
        out.append(f"  {size_of[key] / 2 ** 20:8.2f} MiB {count_of[key]:7d} in {type(obj).__name__} "
                   f"{_holder(obj, ignore=(id(holder_of),))}")
    by_type: dict[str, list] = {}
    for key, obj in holder_of.items():
        acc = by_type.setdefault(type(obj).__name__, [0, 0])
        acc[0] += size_of[key]
        acc[1] += count_of[key]
    out += [f"  by holder type {name}: {v[0] / 2 ** 20:.1f} MiB, {v[1]}" for name, v in
            sorted(by_type.items(), key=lambda kv: -kv[1][0])[:10]]
    return out


_PARENTS: dict = {}     # untracked tuple's id -> its holder, during one census only


def all_objects() -> list:
    """The collector's objects and the untracked dicts and tuples they hold (the collector
    stops tracking a dict or tuple holding only atoms: a dict of bytes would be missed)."""
    import gc

    found = gc.get_objects()
    seen = {id(o) for o in found}
    i = 0
    while i < len(found):
        for child in gc.get_referents(found[i]):
            if type(child) in (dict, tuple) and id(child) not in seen and not gc.is_tracked(child):
                seen.add(id(child))
                found.append(child)
                if type(child) is tuple:
                    _PARENTS[id(child)] = found[i]
        i += 1
    return found


def _holder(container, ignore=()) -> str:
    """``Class.attribute`` of an object holding ``container`` (as an attribute, or through its
    dict), else the type of the first holder found."""
    import gc

    first = "?"
    for ref in gc.get_referrers(container):
        if ref is container or id(ref) in ignore or type(ref).__name__ in ("frame", "cell"):
            continue
        attrs = getattr(ref, "__dict__", None)
        if isinstance(attrs, dict) and not isinstance(ref, type):
            for name, value in attrs.items():
                if value is container:
                    return f"{type(ref).__module__}.{type(ref).__qualname__}.{name}"
        if isinstance(ref, dict):
            for owner in gc.get_referrers(ref):
                if getattr(owner, "__dict__", None) is ref:
                    name = next((k for k, v in ref.items() if v is container), "?")
                    return f"{type(owner).__module__}.{type(owner).__qualname__}.{name}"
        if first == "?":
            first = f"in {type(ref).__module__}.{type(ref).__qualname__}"
    return first


def install(outdir: Path) -> None:
    """SIGUSR2 writes the next snapshot and its line in sizes.txt."""
    outdir.mkdir(parents=True, exist_ok=True)
    numbers, began = itertools.count(), time.monotonic()

    def dump(signum, frame) -> None:
        n = next(numbers)
        if tracemalloc.is_tracing():
            tracemalloc.take_snapshot().dump(str(outdir / f"snap-{n}.pickle"))
        census(outdir / f"census-{n}.txt")
        traced, peak = tracemalloc.get_traced_memory()
        with open(outdir / "sizes.txt", "a") as out:
            out.write(f"{n} {time.monotonic() - began:.0f}s traced {traced / 2 ** 20:.1f} "
                      f"peak {peak / 2 ** 20:.1f} overhead {tracemalloc.get_tracemalloc_memory() / 2 ** 20:.1f} "
                      f"{malloc_line()} {pymalloc_line()} rss {rss_mib():.1f} {live_line()}\n")

    signal.signal(signal.SIGUSR2, dump)


def compare(before: str, after: str, top: int) -> None:
    """Print the ``top`` source lines whose held memory grew most from ``before`` to ``after``."""
    old, new = (tracemalloc.Snapshot.load(p) for p in (before, after))
    ignore = [tracemalloc.Filter(False, tracemalloc.__file__), tracemalloc.Filter(False, "<frozen importlib._bootstrap>")]
    old, new = old.filter_traces(ignore), new.filter_traces(ignore)
    total = sum(s.size for s in new.statistics("filename")) - sum(s.size for s in old.statistics("filename"))
    print(f"traced: {sum(s.size for s in old.statistics('filename')) / 2 ** 20:.1f} -> "
          f"{sum(s.size for s in new.statistics('filename')) / 2 ** 20:.1f} MiB ({total / 2 ** 20:+.1f})")
    for stat in new.compare_to(old, "traceback")[:top]:
        print(f"{stat.size_diff / 1024:+9.1f} KiB {stat.count_diff:+7d} blocks  (now {stat.size / 1024:.1f} KiB)")
        for line in stat.traceback.format()[-6:]:
            print("    " + line.strip())


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--compare":
        parser = argparse.ArgumentParser(prog="python -m bench.tracemem --compare")
        parser.add_argument("before")
        parser.add_argument("after")
        parser.add_argument("--top", type=int, default=25)
        args = parser.parse_args(argv[1:])
        compare(args.before, args.after, args.top)
        return 0
    parser = argparse.ArgumentParser(prog="python -m bench.tracemem", description=__doc__.splitlines()[0])
    parser.add_argument("outdir", type=Path)
    parser.add_argument("--frames", type=int, default=1)
    parser.add_argument("module")
    parser.add_argument("args", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    if args.frames > 0:
        tracemalloc.start(args.frames)
    install(args.outdir)
    sys.argv = [args.module, *args.args]
    runpy.run_module(args.module, run_name="__main__", alter_sys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
