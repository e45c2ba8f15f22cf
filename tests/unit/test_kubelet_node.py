"""The Node as the kubelet reports it: capacity, allocatable, conditions from host facts."""

from __future__ import annotations

import datetime as dt

from pkube.kubelet.node import HostFacts, NodeConfig, node_object, node_status, read_host_facts, significant_change

NOW = dt.datetime(2026, 12, 4, 10, 0, tzinfo=dt.timezone.utc)
GI = 1024 ** 3


def facts(**overrides):
    base = dict(cpus=2, memory_total=8 * GI, memory_available=4 * GI, disk_total=100 * GI, disk_available=50 * GI,
                pids_used=300, pids_max=32768, kernel="6.1", os_image="Debian", machine_id="m", boot_id="b",
                architecture="amd64")
    return HostFacts(**{**base, **overrides})


def conditions(status):
    return {c["type"]: c["status"] for c in status["conditions"]}


def test_capacity_and_allocatable_leave_room_for_the_system():
    status = node_status(facts(), NodeConfig("n1", "192.0.2.2", reserved_memory="256Mi", reserved_cpu="100m"),
                         True, NOW)
    assert status["capacity"] == {"cpu": "2", "memory": f"{8 * 1024 * 1024}Ki", "pods": "110",
                                  "ephemeral-storage": f"{100 * 1024 * 1024}Ki"}
    assert status["allocatable"]["cpu"] == "1900m"
    assert status["allocatable"]["memory"] == f"{8 * 1024 * 1024 - 256 * 1024 - 100 * 1024}Ki"
    assert status["daemonEndpoints"] == {"kubeletEndpoint": {"Port": 10250}}
    assert {"type": "InternalIP", "address": "192.0.2.2"} in status["addresses"]


def test_pressure_conditions_follow_the_eviction_thresholds():
    healthy = conditions(node_status(facts(), NodeConfig("n1", "a"), True, NOW))
    assert healthy == {"MemoryPressure": "False", "DiskPressure": "False", "PIDPressure": "False", "Ready": "True"}
    low = conditions(node_status(facts(memory_available=50 * 1024 * 1024, disk_available=GI, pids_used=32000),
                                 NodeConfig("n1", "a"), False, NOW))
    assert low == {"MemoryPressure": "True", "DiskPressure": "True", "PIDPressure": "True", "Ready": "False"}


def test_a_heartbeat_alone_is_not_a_significant_change():
    config = NodeConfig("n1", "a")
    first = node_status(facts(), config, True, NOW)
    later = node_status(facts(), config, True, NOW + dt.timedelta(seconds=10), first)
    assert not significant_change(first, later)
    assert later["conditions"][0]["lastTransitionTime"] == first["conditions"][0]["lastTransitionTime"]
    assert significant_change(first, node_status(facts(), config, False, NOW, first))


def test_the_node_object_is_labelled_and_this_host_can_be_read(tmp_path):
    node = node_object(facts(), NodeConfig("n1", "a", labels={"role": "x"}), True, NOW)
    assert node["metadata"]["labels"]["kubernetes.io/hostname"] == "n1" and node["metadata"]["labels"]["role"] == "x"
    real = read_host_facts(str(tmp_path))
    assert real.cpus >= 1 and real.memory_total > real.memory_available > 0 and real.disk_total > 0
