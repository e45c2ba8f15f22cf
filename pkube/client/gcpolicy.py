"""The garbage-collector policy of long-running components (apiserver, controllers, scheduler, ...).

Their heap is mostly long-lived, acyclic JSON: the apiserver's watch-cache rings (10,000
decoded events per resource), the informers' stores of every pod and node. CPython's
default young-generation threshold (700 allocations) runs a young pass every few hundred
decoded objects, and every tenth middle pass may become a full pass over that whole heap:
measured during the 1,000-node DaemonSet roll (bench/controllers.py) on a quiet machine, 26
full passes in the apiserver, 3.3 of its 12.6 CPU seconds in the collector, and 1.6-1.9 of the
controller-manager's 4 (see docs/workloads.md). A young generation of 20,000 objects makes
young passes ~30 times rarer and full ones rarer still; cycles (tracebacks, futures) are still
collected, a little later. What start-up built is frozen out of every pass (it lives as long as the process).
"""

from __future__ import annotations

import gc

YOUNG_GENERATION = 20_000


def settle_after_startup(young: int = YOUNG_GENERATION) -> None:
    """Call once, when start-up has built what lives as long as the process: freezes it (no
    pass visits it again) and sets the young generation's threshold to ``young`` objects
    (the older generations' thresholds are kept)."""
    if young < 1:
        raise ValueError(f"the young generation's threshold must be >= 1, not {young}")
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(young, middle, old)
