"""The equivalence tables give the very decisions of the direct walk, change after change."""

import random

from pkube.client.clock import FakeClock
from pkube.scheduler.cache import SchedulerCache
from pkube.scheduler.equivalence import EquivalenceCache, signature
from pkube.scheduler.framework import DEFAULT_FILTERS, DEFAULT_SCORERS, Framework
from pkube.scheduler.types import PodInfo, freeze
from tests.unit.test_scheduler_plugins import make_node, make_pod

HARD = {"key": "dedicated", "value": "db", "effect": "NoSchedule"}
SOFT = {"key": "spot", "effect": "PreferNoSchedule"}


def random_node(rng: random.Random, name: str) -> dict:
    return make_node(name, cpu=rng.choice(["1", "2", "4"]), memory=rng.choice(["1Gi", "4Gi"]),
                     pods=rng.choice(["3", "110"]), labels={"zone": rng.choice("abc")},
                     taints=rng.choice([[], [], [], [HARD], [SOFT]]),
                     unschedulable=rng.random() < 0.05, ready=rng.random() > 0.05)


SHAPES = [dict(cpu="100m", memory="64Mi"), dict(cpu="500m", owner="rs-1"), dict(),
          dict(cpu="1", node_selector={"zone": "a"}), dict(tolerations=[{"key": "dedicated", "operator": "Exists"}]),
          dict(memory="512Mi", owner="rs-2", affinity={"nodeAffinity": {
              "preferredDuringSchedulingIgnoredDuringExecution": [
                  {"weight": 5, "preference": {"matchExpressions": [
                      {"key": "zone", "operator": "In", "values": ["b"]}]}}]}}),
          dict(ports=[{"containerPort": 80, "hostPort": 8080}])]


class Twin:
    """One cache and framework; ``tables`` says whether it tells the framework what changed."""

    def __init__(self, nodes: list, tables: bool, seed: int):
        self.cache = SchedulerCache(FakeClock())
        for node in nodes:
            self.cache.add_node(node)
        self.framework = Framework(rng=random.Random(seed))
        self.tables = tables

    def decide(self, body: dict):
        pod = PodInfo.from_pod(body)
        changed = self.cache.drain_changed() if self.tables else None
        result = self.framework.schedule(pod, self.cache.node_list(), changed)
        if result.node:
            self.cache.assume(pod, result.node)
        return result.node, result.evaluated, result.feasible, dict(result.reasons), result.message


def test_tables_decide_exactly_as_the_direct_walk():
    rng = random.Random(11)
    nodes = [random_node(rng, f"n{i}") for i in range(300)]
    direct, tabled = Twin(nodes, False, 5), Twin(nodes, True, 5)
    for step in range(600):
        shape = SHAPES[rng.randrange(len(SHAPES))]
        body = make_pod(f"p{step}", **shape)
        assert direct.decide(body) == tabled.decide(body), step
        if step % 50 == 25:                    # the cluster changes under the tables
            changed = random_node(rng, f"n{rng.randrange(300)}")
            for twin in (direct, tabled):
                twin.cache.add_node(changed)
                twin.cache.remove_pod(f"default/p{step - 10}")
        if step == 300:
            for twin in (direct, tabled):
                twin.cache.add_node(make_node("late", cpu="64", memory="64Gi"))
    assert tabled.framework.equivalence.table_count(), "the tables were used"


def test_an_unschedulable_pod_gets_the_same_message_from_the_tables():
    nodes = [make_node(f"n{i}", cpu="1", taints=[HARD] if i % 3 == 0 else []) for i in range(150)]
    twin = Twin(nodes, True, 1)
    messages = {twin.decide(make_pod(f"big{i}", cpu="2"))[4] for i in range(5)}
    assert twin.framework.equivalence.table_count()
    assert messages == {"0/150 nodes are available: 100 Insufficient cpu, "
                        "50 node(s) had untolerated taint {dedicated: db}."}


def test_a_table_is_built_only_for_a_signature_seen_often_enough():
    cache = EquivalenceCache()
    nodes = [object() for _ in range(5000)]
    assert cache.sync(nodes, set())
    key = ("some", "signature")
    assert [cache.table(key, [], [], None, 500) is None for _ in range(10)] == [True] * 9 + [False]


def test_pods_alike_share_a_signature_and_a_plugin_without_keys_opts_out():
    filters = list(DEFAULT_FILTERS)
    scorers = [p for p, _ in DEFAULT_SCORERS]
    one, other = (PodInfo.from_pod(make_pod(n, cpu="1", tolerations=[{"key": "k", "operator": "Exists"}]))
                  for n in ("a", "b"))
    assert signature(filters, scorers, one) == signature(filters, scorers, other)
    assert signature(filters, scorers, one) != signature(filters, scorers, PodInfo.from_pod(make_pod("c", cpu="2")))

    class NoKey:
        @staticmethod
        def filter(pod, node):
            raise AssertionError("not called")
    assert signature(filters + [NoKey], scorers, one) is None
    assert freeze({"a": [1, {"b": 2}]}) == freeze({"a": [1, {"b": 2}]})


class Counting:
    """A plugin made of another's functions (hashable, as plugin modules are)."""


def counting(plugin, calls):
    """A copy of ``plugin`` whose per-node and batch calls count the nodes they look at."""
    copy = Counting()
    for key, value in vars(plugin).items():
        if not key.startswith("__"):
            setattr(copy, key, value)
    for name in ("filter", "score"):
        if hasattr(plugin, name):
            setattr(copy, name, lambda pod, node, f=getattr(plugin, name): (calls.append(1), f(pod, node))[1])
    for name in ("filter_nodes", "score_nodes"):
        if hasattr(plugin, name):
            setattr(copy, name, lambda pod, nodes, f=getattr(plugin, name): (calls.extend([1] * len(nodes)),
                                                                              f(pod, nodes))[1])
    return copy


def test_once_a_table_is_built_a_decision_looks_only_at_the_nodes_that_changed():
    calls = []
    filters = [counting(p, calls) for p in DEFAULT_FILTERS]
    scorers = [(counting(p, calls), w) for p, w in DEFAULT_SCORERS]
    cache = SchedulerCache(FakeClock())
    for i in range(1000):
        cache.add_node(make_node(f"n{i}", cpu="32", memory="64Gi"))
    framework = Framework(filters, scorers, rng=random.Random(2))
    per_decision = []
    for i in range(20):
        del calls[:]
        pod = PodInfo.from_pod(make_pod(f"p{i}", cpu="100m", owner="rs-1"))
        cache.assume(pod, framework.schedule(pod, cache.node_list(), cache.drain_changed()).node)
        per_decision.append(len(calls))
    assert min(per_decision[:2]) >= 420                # the direct walk: 420 of 1000 nodes
    assert max(per_decision[5:]) <= 2 * (len(filters) + len(scorers))   # one node changed per decision
