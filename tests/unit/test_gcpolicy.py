"""The components' collector policy: start-up frozen, a larger young generation, cycles still collected."""

import gc

import pytest

from pkube.client.gcpolicy import settle_after_startup


@pytest.fixture
def restored_gc():
    threshold = gc.get_threshold()
    yield
    gc.set_threshold(*threshold)
    gc.unfreeze()


def test_settling_freezes_start_up_and_enlarges_only_the_young_generation(restored_gc):
    _, middle, old = gc.get_threshold()
    settle_after_startup(12_345)
    assert gc.get_threshold() == (12_345, middle, old)
    assert gc.get_freeze_count() > 0


def test_a_cycle_made_after_settling_is_still_collected(restored_gc):
    settle_after_startup()

    class Node:
        pass
    a, b = Node(), Node()
    a.other, b.other = b, a
    del a, b
    assert gc.collect() >= 2


def test_a_threshold_below_one_is_refused(restored_gc):
    with pytest.raises(ValueError, match="young generation"):
        settle_after_startup(0)
