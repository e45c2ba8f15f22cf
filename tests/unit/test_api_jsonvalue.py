"""pkube/api/jsonvalue.py: the encodings kept in memory hold about their own size."""

import gc
import tracemalloc

from pkube.api.jsonvalue import dumps, dumps_sorted, loads


def kept(encode, values) -> tuple[list, int]:
    """The encodings of ``values`` and the bytes the Python allocators hold for them."""
    tracemalloc.start()
    try:
        gc.collect()
        before = tracemalloc.get_traced_memory()[0]
        out = [encode(v) for v in values]
        gc.collect()
        return out, tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()


def test_kept_encodings_hold_about_their_size():
    """Issue 12: orjson returns its whole working buffer (4 KiB at least, 32 KiB for a 3 KiB
    object), and the apiserver keeps encodings (watch cache events, last writes): 1,000
    small objects held 4 MiB and 100 of 3 KiB held 3 MiB."""
    small = [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"c{n}"}} for n in range(1000)]
    large = [{"metadata": {"name": f"c{n}"}, "data": {"x": "y" * 3000}} for n in range(100)]
    for encode in (dumps, dumps_sorted):
        out, held = kept(encode, small)
        assert [loads(b) for b in out] == small
        assert held < 2 * sum(len(b) + 40 for b in out) + 8192     # the list itself included
        out, held = kept(encode, large)
        assert [loads(b) for b in out] == large
        assert held < 2 * sum(len(b) + 40 for b in out) + 8192
