"""The C allocator's policy of long-running components: large blocks get their own mapping.

glibc serves a block of ``M_MMAP_THRESHOLD`` bytes or more (128 KiB at first) with its own
mmap and unmaps it when it is freed, but it raises that threshold to the size of every such
block freed (up to 32 MiB), so after the first few, large blocks come from the heap. There
they leave holes: the heap only shrinks from its top, and below the top sit the long-lived
blocks allocated since. A component's large blocks come and go all the time: asyncio gives
each TLS connection a 256 KiB read buffer, large bodies and lists are encoded into one
buffer. In the soak (bench/soak.py, issue 12) an apiserver's heap held 35 MiB free in holes
after 3 minutes, nearly all in chunks of 280-370 KiB and 0.5-1.3 MiB (glibc's malloc_info),
and its resident memory grew with them while its live Python objects stayed flat.

Fixing the threshold keeps every large block in a mapping of its own, returned to the system
when it is freed; it costs one mmap and munmap per large block, a few microseconds against
the block's own use (a connection, a list of many objects). Nothing to do on other C
libraries (musl maps large blocks always).
"""

from __future__ import annotations

import ctypes
import logging

M_MMAP_THRESHOLD = -3       # glibc's mallopt parameter (malloc.h)
LARGE_BLOCK = 128 * 1024    # glibc's initial threshold, kept for good

log = logging.getLogger(__name__)


def map_large_blocks(threshold: int = LARGE_BLOCK) -> bool:
    """Make glibc serve every block of ``threshold`` bytes or more with a mapping of its own
    for the rest of the process (no dynamic threshold). True when set; False when the C
    library is not glibc (nothing changed)."""
    if threshold < 1:
        raise ValueError(f"the threshold must be at least 1 byte, not {threshold}")
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except AttributeError:
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    if mallopt(M_MMAP_THRESHOLD, threshold) != 1:
        log.warning("mallopt(M_MMAP_THRESHOLD, %d) refused; large blocks stay on the heap", threshold)
        return False
    return True
