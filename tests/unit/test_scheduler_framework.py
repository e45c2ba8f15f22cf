"""The framework's choice and failure message, the assumed-pod cache, and the scheduling queue."""

import asyncio
import random
from collections import Counter

from pkube.client.clock import FakeClock
from pkube.scheduler.cache import SchedulerCache
from pkube.scheduler.framework import Framework, failure_message, feasible_nodes_to_find
from pkube.scheduler.queue import SchedulingQueue
from pkube.scheduler.types import PodInfo
from tests.unit.test_scheduler_plugins import make_node, make_pod


def cache_with(*nodes, clock=None):
    cache = SchedulerCache(clock or FakeClock())
    for node in nodes:
        cache.add_node(node)
    return cache


def test_failure_message_matches_kubernetes():
    hdd = {"disk": "hdd"}
    cache = cache_with(make_node("a", cpu="1", labels=hdd), make_node("b", cpu="1", labels=hdd),
                       make_node("c", cpu="8", labels={"disk": "ssd"}))
    pod = PodInfo.from_pod(make_pod(cpu="2", node_selector=hdd))
    result = Framework().schedule(pod, cache.node_list())
    assert result.node is None
    assert result.message == ("0/3 nodes are available: 2 Insufficient cpu, "
                              "1 node(s) didn't match Pod's node affinity/selector.")


def test_no_nodes_message():
    assert Framework().schedule(PodInfo.from_pod(make_pod()), []).message.startswith("0/0 nodes are available")


def test_failure_message_orders_by_count_then_reason():
    reasons = Counter({"b": 1, "a": 1, "Insufficient cpu": 3})
    assert failure_message(5, reasons) == "0/5 nodes are available: 3 Insufficient cpu, 1 a, 1 b."


def test_picks_the_best_scoring_feasible_node():
    cache = cache_with(make_node("small", cpu="2", memory="4Gi"), make_node("big", cpu="16", memory="32Gi"),
                       make_node("tainted", cpu="64", memory="64Gi",
                                 taints=[{"key": "k", "effect": "NoSchedule"}]))
    result = Framework(rng=random.Random(1)).schedule(PodInfo.from_pod(make_pod(cpu="1")), cache.node_list())
    assert result.node == "big" and result.feasible == 2


def test_ties_are_broken_at_random_over_all_tied_nodes():
    cache = cache_with(*(make_node(f"n{i}") for i in range(4)))
    framework = Framework(rng=random.Random(7))
    chosen = {framework.schedule(PodInfo.from_pod(make_pod()), cache.node_list()).node for _ in range(50)}
    assert chosen == {"n0", "n1", "n2", "n3"}


def test_many_nodes_are_sampled():
    assert feasible_nodes_to_find(50) == 50
    assert feasible_nodes_to_find(1000) == 420        # 42%
    assert feasible_nodes_to_find(5000) == 500        # 10%
    assert feasible_nodes_to_find(100000) == 5000     # floor of 5%
    assert feasible_nodes_to_find(5000, 100) == 5000
    cache = cache_with(*(make_node(f"n{i}") for i in range(1000)))
    result = Framework().schedule(PodInfo.from_pod(make_pod()), cache.node_list())
    assert result.evaluated == 420 and result.node is not None


def test_assumed_pods_prevent_overcommit_in_a_burst():
    cache = cache_with(make_node("a", cpu="2"), make_node("b", cpu="2"))
    framework = Framework()
    placed = []
    for i in range(5):
        pod = PodInfo.from_pod(make_pod(f"p{i}", cpu="1"))
        node = framework.schedule(pod, cache.node_list()).node
        if node:
            cache.assume(pod, node)
        placed.append(node)
    assert sorted(p for p in placed if p) == ["a", "a", "b", "b"] and placed[-1] is None


def test_assumed_pod_is_confirmed_forgotten_or_expired():
    clock = FakeClock()
    cache = cache_with(make_node("a", cpu="2"), clock=clock)
    confirmed, failed, lost = (PodInfo.from_pod(make_pod(n, cpu="500m")) for n in ("ok", "bad", "lost"))
    for pod in (confirmed, failed, lost):
        cache.assume(pod, "a")
    assert cache.node("a").cpu == 1500
    bound = make_pod("ok", cpu="500m", node_name="a")
    cache.add_pod(bound)                  # the informer confirms it
    cache.forget("default/bad")           # its binding failed
    cache.finish_binding("default/lost")  # bound, but never seen by the informer
    assert cache.node("a").cpu == 1000
    clock.advance(31)
    assert cache.cleanup_expired() == ["default/lost"]
    assert cache.node("a").cpu == 500 and not cache.is_assumed("default/ok")


def test_cache_tracks_bound_pods_moves_and_finished_pods():
    cache = cache_with(make_node("a"), make_node("b"))
    cache.add_pod(make_pod("x", cpu="1", node_name="a"))
    assert cache.node("a").cpu == 1000
    finished = make_pod("x", cpu="1", node_name="a")
    finished["status"] = {"phase": "Succeeded"}
    cache.add_pod(finished)
    assert cache.node("a").cpu == 0
    cache.add_pod(make_pod("y", cpu="1", node_name="ghost"))     # node not seen yet
    assert [n.name for n in cache.node_list()] == ["a", "b"]
    cache.add_node(make_node("ghost"))
    assert cache.node("ghost").cpu == 1000
    cache.remove_node("a")
    assert [n.name for n in cache.node_list()] == ["b", "ghost"]


def test_the_node_list_changes_only_when_nodes_come_or_go():
    cache = cache_with(make_node("a"), make_node("b"))
    candidates = cache.node_list()
    cache.add_node(make_node("a", cpu="8"))                   # an update: in place
    assert cache.node_list() is candidates and cache.node("a").alloc_cpu == 8000
    cache.add_pod(make_pod("x", node_name="c"))               # a placeholder is no candidate
    assert cache.node_list() is candidates
    cache.add_node(make_node("c"))
    assert [n.name for n in cache.node_list()] == ["a", "b", "c"]


def test_a_pod_counted_once_however_often_the_informer_reports_it():
    cache = cache_with(make_node("a"))
    pod = make_pod("x", cpu="1", owner="rs-1", node_name="a")
    cache.add_pod(pod)
    cache.drain_changed()
    running = make_pod("x", cpu="1", owner="rs-1", node_name="a")
    running["status"] = {"phase": "Running"}
    cache.add_pod(running)
    assert cache.node("a").cpu == 1000 and not cache.drain_changed()     # nothing to recompute
    cache.add_pod(make_pod("x", cpu="1", owner="rs-2", node_name="a"))  # re-owned: counted anew
    assert cache.node("a").owners == {"rs-2": 1} and cache.drain_changed() == {"a"}


# the scheduling queue
def test_queue_pops_by_priority_then_age():
    clock = FakeClock()
    q = SchedulingQueue(clock)
    for name, prio in (("low", 0), ("high", 10), ("low2", 0)):
        pod = make_pod(name)
        pod["spec"]["priority"] = prio
        q.add(pod)
        clock.advance(1)
    assert [q.pop_nowait().pod["metadata"]["name"] for _ in range(3)] == ["high", "low", "low2"]
    assert q.pop_nowait() is None


def test_unschedulable_pod_waits_for_a_cluster_change_then_backs_off():
    clock = FakeClock()
    q = SchedulingQueue(clock)
    q.add(make_pod("p"))
    attempt = q.pop_nowait()
    q.requeue_unschedulable(attempt)
    assert q.where("default/p") == "unschedulable" and q.pop_nowait() is None
    q.move_all()                                    # a node was added
    assert q.where("default/p") == "backoff"        # first attempt: 1 s back-off
    clock.advance(1)
    assert q.pop_nowait().attempts == 2


def test_a_change_during_the_attempt_is_not_missed():
    clock = FakeClock()
    q = SchedulingQueue(clock)
    q.add(make_pod("p"))
    attempt = q.pop_nowait()
    q.move_all()                                    # a node appeared while we were deciding
    q.requeue_unschedulable(attempt)
    assert q.where("default/p") == "backoff"


def test_backoff_doubles_up_to_the_cap():
    clock = FakeClock()
    q = SchedulingQueue(clock)
    q.add(make_pod("p"))
    waits = []
    for _ in range(6):
        attempt = q.pop_nowait()
        q.requeue_backoff(attempt)
        waits.append(q.backoff_duration(attempt))
        clock.advance(waits[-1])
    assert waits == [1, 2, 4, 8, 10, 10]


def test_unschedulable_pods_are_retried_after_five_minutes_anyway():
    clock = FakeClock()
    q = SchedulingQueue(clock)
    q.add(make_pod("p"))
    q.requeue_unschedulable(q.pop_nowait())
    clock.advance(299)
    assert q.pop_nowait() is None
    clock.advance(1)
    assert q.pop_nowait() is not None


def test_each_unschedulable_pod_is_retried_five_minutes_after_it_was_parked():
    clock = FakeClock()
    q = SchedulingQueue(clock)
    for name in ("early", "late"):
        q.add(make_pod(name))
        q.requeue_unschedulable(q.pop_nowait())
        clock.advance(100)
    clock.advance(100)                              # early parked 300 s ago, late 200 s ago
    assert q.pop_nowait().key == "default/early" and q.pop_nowait() is None
    assert q.where("default/late") == "unschedulable"
    clock.advance(100)
    assert q.pop_nowait().key == "default/late"


def test_deleted_or_bound_pods_leave_the_queue_even_in_flight():
    q = SchedulingQueue(FakeClock())
    q.add(make_pod("p"))
    q.add(make_pod("gone"))
    q.delete("default/gone")
    attempt = q.pop_nowait()
    q.delete("default/p")
    q.requeue_unschedulable(attempt)
    assert q.where("default/p") is None and q.pop_nowait() is None


def test_a_spec_change_requeues_an_unschedulable_pod_but_a_status_change_does_not():
    q = SchedulingQueue(FakeClock())
    q.add(make_pod("p", cpu="8"))
    q.requeue_unschedulable(q.pop_nowait())
    with_status = make_pod("p", cpu="8")
    with_status["status"] = {"conditions": [{"type": "PodScheduled", "status": "False"}]}
    q.update(with_status)
    assert q.where("default/p") == "unschedulable"
    q.update(make_pod("p", cpu="1"))
    assert q.where("default/p") in ("active", "backoff")


def test_async_pop_waits_for_a_backoff_on_the_clock():
    async def scenario():
        clock = FakeClock()
        q = SchedulingQueue(clock)
        q.add(make_pod("p"))
        q.requeue_backoff(q.pop_nowait())
        popper = asyncio.ensure_future(q.pop())
        for _ in range(5):
            await asyncio.sleep(0)
        assert not popper.done()
        clock.advance(1)
        assert (await asyncio.wait_for(popper, 5)).key == "default/p"
        q.close()
        assert await q.pop() is None
    asyncio.run(scenario())


def test_a_waiting_pop_learns_of_pods_moved_out_of_unschedulable():
    async def scenario():
        clock = FakeClock()
        q = SchedulingQueue(clock)
        q.add(make_pod("p"))
        q.requeue_unschedulable(q.pop_nowait())
        popper = asyncio.ensure_future(q.pop())     # parked until the 5-minute flush
        for _ in range(5):
            await asyncio.sleep(0)
        q.move_all()
        for _ in range(5):
            await asyncio.sleep(0)
        clock.advance(1)                            # its 1 s back-off, not 300 s
        assert (await asyncio.wait_for(popper, 5)).key == "default/p"
    asyncio.run(scenario())
