"""The C allocator's policy (pkube/client/mallocpolicy.py) against the real glibc: after a
large block was freed, the next large block still gets a mapping of its own, so freeing it
gives its memory back to the system instead of leaving a hole in the heap."""

from __future__ import annotations

import subprocess
import sys

import pytest

from pkube.client.mallocpolicy import map_large_blocks

# Frees a 4 MiB block (which raises glibc's dynamic threshold to 4 MiB), then allocates a
# TLS-sized 256 KiB buffer and prints whether glibc mapped it (its count of mapped blocks grew).
PROBE = """
import ctypes, sys
from pkube.client.mallocpolicy import map_large_blocks
class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd",
                                               "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL(None)
libc.mallinfo2.restype = MallInfo2
if sys.argv[1] == "policy":
    map_large_blocks()
big = bytearray(4 * 2 ** 20)
del big
before = libc.mallinfo2().hblks
buffer = bytearray(256 * 1024)
print("mapped" if libc.mallinfo2().hblks > before else "heap")
"""


def probe(mode: str) -> str:
    done = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_without_the_policy_glibc_puts_large_blocks_on_the_heap_after_a_free():
    assert probe("default") == "heap"


def test_with_the_policy_large_blocks_keep_their_own_mapping():
    assert probe("policy") == "mapped"


def test_rejects_a_nonsense_threshold():
    with pytest.raises(ValueError):
        map_large_blocks(0)
