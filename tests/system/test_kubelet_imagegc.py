"""Image garbage collection on a real runtime store."""

from __future__ import annotations

import os

import pytest

from pkube.kubelet.imagegc import ImageGC


@pytest.mark.skipif(os.geteuid() != 0, reason="runs a container: needs root")
def test_collect_deletes_unused_images_of_a_real_store_and_keeps_used_ones(tmp_path):
    from pkube.runtime.runtime import Runtime
    from pkube.runtime.spec import ContainerSpec
    runtime = Runtime(str(tmp_path / "rt"))
    try:
        used = runtime.run(ContainerSpec(image="busybox", command=["sleep", "30"], network="none"))
        runtime.exec(used.id, ["touch", "/made"])
        committed = runtime.commit(used.id, "spare:1")
        gc = ImageGC(runtime, min_age=0, usage=lambda path: (90, 100))
        assert gc.collect() == [committed.id]
        assert not runtime.images.exists("spare:1") and runtime.images.exists("busybox")
        assert ImageGC(runtime, min_age=0, usage=lambda path: (50, 100)).collect() == []
    finally:
        for record in runtime.list(all=True):
            runtime.remove(record.id, force=True)
