"""The pure parts of a multi-member control plane (pkube/cluster/hacluster.py, pkube/cluster/cli.py): the
topology a first member plans and publishes, the member's flags, the checks of --control-plane."""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import pytest
import yaml

from pkube.cluster import hacluster, netnodes
from pkube.cluster.cli import DEFAULT_ROUTE_PROBE, check_control_plane, node_ip_of
from pkube.cluster.up import ClusterConfig, ClusterError, usage_text


def test_the_planned_topology_names_every_members_etcd_and_apiserver():
    config = ClusterConfig(data_dir=Path("/x"), port=16443)
    topology = hacluster.planned_topology(config, ["10.200.0.1", "10.200.0.2"], 6444)
    assert topology == {"etcdServers": ["https://10.200.0.1:2379", "https://10.200.0.2:2379"],
                        "apiServers": ["https://10.200.0.1:16443", "https://10.200.0.2:16443"],
                        "loadBalancerPort": 6444}


def test_the_configmap_is_read_back_as_the_topology():
    configmap = {"data": {"etcdServers": "https://a:2379,https://b:2379", "apiServers": "https://a:6443",
                          "loadBalancerPort": "7000"}}
    assert hacluster.topology_of(configmap) == {"etcdServers": ["https://a:2379", "https://b:2379"],
                                                "apiServers": ["https://a:6443"], "loadBalancerPort": 7000}
    assert hacluster.topology_of({})["loadBalancerPort"] == hacluster.LB_PORT


def test_a_kubeconfig_is_pointed_at_the_balancer(tmp_path):
    path = tmp_path / "kubelet.kubeconfig"
    path.write_text(yaml.safe_dump({"clusters": [{"name": "pkube", "cluster": {"server": "https://1.2.3.4:6443"}}]}))
    hacluster.point_at(path, hacluster.lb_server(6444))
    assert yaml.safe_load(path.read_text())["clusters"][0]["cluster"]["server"] == "https://127.0.0.1:6444"


def test_a_members_apiserver_talks_tls_to_every_etcd_and_advertises_its_address(tmp_path):
    config = ClusterConfig(data_dir=tmp_path, port=16443, node_name="m1", node_ip="10.200.0.2")
    comps = hacluster.member_components(config, "10.200.0.2", ["https://10.200.0.2:2379", "https://10.200.0.1:2379"],
                                        6444, ["https://10.200.0.2:16443"])
    names = [c.name for c in comps]
    assert names == ["apiserver", "loadbalancer", "scheduler", "controllers", "kubelet", "proxy"]
    apiserver = comps[0].argv
    assert apiserver[apiserver.index("--etcd-servers") + 1] == "https://10.200.0.2:2379,https://10.200.0.1:2379"
    assert apiserver[apiserver.index("--advertise-address") + 1] == "10.200.0.2"
    assert "--etcd-certfile" in apiserver
    assert "--leader-elect" in comps[2].argv and "--leader-elect" in comps[3].argv


def test_every_members_component_runs_a_module_that_exists(tmp_path):
    config = ClusterConfig(data_dir=tmp_path, port=16443, node_name="m1", node_ip="10.200.0.2")
    for comp in hacluster.member_components(config, "10.200.0.2", ["https://10.200.0.2:2379"], 6444,
                                            ["https://10.200.0.2:16443"]):
        module = comp.argv[comp.argv.index("-m") + 1]
        assert importlib.util.find_spec(module) is not None, f"{comp.name}: python -m {module} finds nothing"


def args(control_plane: int, nodes: int = 1, no_kubelet: bool = False) -> argparse.Namespace:
    return argparse.Namespace(control_plane=control_plane, nodes=nodes, no_kubelet=no_kubelet, static_pods=True)


def test_control_plane_wants_an_odd_count_and_as_many_nodes():
    with pytest.raises(ClusterError, match="odd"):
        check_control_plane(args(2))
    with pytest.raises(ClusterError, match="as many nodes"):
        check_control_plane(args(3, nodes=2))
    given = args(3)
    check_control_plane(given)
    assert (given.nodes, given.static_pods) == (3, False)


def test_workers_prefer_apiservers_spread_over_the_members():
    apiservers = ["https://10.200.0.1:6443", "https://10.200.0.2:6443", "https://10.200.0.3:6443"]
    orders = {name: hacluster.spread(apiservers, name) for name in (f"worker-{i}" for i in range(12))}
    assert all(sorted(order) == apiservers for order in orders.values())
    # each order is a rotation: the balancer fails over to the next member, wrapping
    assert all(order == apiservers[apiservers.index(order[0]):] + apiservers[:apiservers.index(order[0])]
               for order in orders.values())
    assert {order[0] for order in orders.values()} == set(apiservers)
    assert hacluster.spread(apiservers, "worker-1") == orders["worker-1"]   # stable across restarts
    assert hacluster.spread([], "worker-1") == []


def ip_args(node_ip: str = "", nodes: int = 1, cluster_init: bool = False) -> argparse.Namespace:
    return argparse.Namespace(node_ip=node_ip, nodes=nodes, cluster_init=cluster_init)


def test_cluster_init_takes_the_default_routes_address_unless_one_is_given():
    from pkube.cluster import join
    assert node_ip_of(ip_args(cluster_init=True)) == join.route_source(DEFAULT_ROUTE_PROBE, 53)
    assert node_ip_of(ip_args("10.1.2.3", cluster_init=True)) == "10.1.2.3"
    assert node_ip_of(ip_args()) == ""                              # the kubelet picks, as before
    assert node_ip_of(ip_args(nodes=3)) == netnodes.HOST_ADDRESS    # the nodes' bridge
    with pytest.raises(ClusterError, match="--node-ip with --nodes 3"):
        node_ip_of(ip_args("10.1.2.3", nodes=3))


def test_a_joinable_control_plane_tells_how_another_machine_joins_it():
    plain = ClusterConfig(data_dir=Path("/x"), port=16443, node_ip="10.1.2.3", static_pods=False)
    assert "--control-plane" not in usage_text(plain)
    joinable = ClusterConfig(data_dir=Path("/x"), port=16443, node_ip="10.1.2.3", static_pods=False,
                             cluster_init=True)
    assert joinable.joinable
    text = usage_text(joinable)
    assert "pkube join https://10.1.2.3:16443 --token TOKEN --control-plane --certificate-key KEY" in text
    assert "pkube token create --data-dir /x" in text and "pkube certs upload --data-dir /x" in text


def test_kube_component_args_are_kept_by_static_pod_name():
    from pkube.cluster.cli import build_parser, extra_args_of
    parsed = build_parser().parse_args(["up", "--kube-controller-manager-arg", "node-monitor-grace-period=25",
                                        "--kube-controller-manager-arg", "resync-period=60",
                                        "--kube-apiserver-arg=max-requests-inflight=800"])
    assert extra_args_of(parsed) == {"kube-controller-manager": ["node-monitor-grace-period=25", "resync-period=60"],
                                     "kube-apiserver": ["max-requests-inflight=800"]}
    assert extra_args_of(build_parser().parse_args(["up"])) == {}
