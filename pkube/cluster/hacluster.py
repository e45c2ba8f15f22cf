"""A control plane of several members (`pkube up --control-plane N`): what every member and
every node of such a cluster shares, and the first member's part.

The layout (docs/multi-node.md, "A highly available control plane"):

- every member runs an etcd member over TLS (pkube/cluster/etcdpki.py) on its node address, ports
  2379 (clients) and 2380 (peers), with its data in DIR/etcd-member; an apiserver on the
  cluster's port, advertising its node address (pkube/apiserver/endpointleases.py puts it in the
  ``kubernetes`` endpoints), with ``--etcd-servers`` naming its own member first; a scheduler
  and a controller-manager with ``--leader-elect`` talking to the local apiserver;
- every node (members and workers) runs the local load balancer (pkube/cluster/loadbalancer.py) on
  127.0.0.1:LB_PORT, and its kubelet, its proxy and DIR/admin.kubeconfig point at it, so one
  server URL survives the death of any apiserver;
- the topology joiners need is the ConfigMap ``kube-system/pkube-control-plane`` (etcd client
  URLs, apiserver URLs, the balancer's port), readable by bootstrap tokens and nodes, and
  copied to DIR/control-plane.json where `pkube etcd member` and restarts read it.

The first member (the host of `pkube up --control-plane N`, or of `pkube up --cluster-init`,
which other machines join) starts as `Cluster.start_processes` would, then adds itself to the
published topology (made with itself alone in a new cluster); with members to join in network namespaces (HANetNodes) it
uploads the shared secrets (pkube/cluster/controlplanecerts.py) with a fresh certificate key
for the bootstrap token their joins use (`pkube certs upload` does the same for a machine).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
import zlib
from pathlib import Path
from typing import Callable, Optional

import yaml

from pkube.cluster import certs, etcdpki
from pkube.cluster.components import Component, ComponentError, python_module, tail
from pkube.cluster.etcd import EtcdProcess
from pkube.cluster.kubeconfig import write_private
from pkube.cluster.netnodes import JOIN_TIMEOUT, NetNodes, add_namespace
from pkube.cluster.node import WorkerNode
from pkube.cluster.up import ClusterConfig, ClusterError, control_plane

ETCD_CLIENT_PORT = 2379
ETCD_PEER_PORT = 2380
LB_PORT = 6444
TOPOLOGY = "pkube-control-plane"
TOPOLOGY_READER = "pkube:control-plane-topology-reader"
NAMESPACE = "kube-system"
TOPOLOGY_FILE = "control-plane.json"
FIRST_MEMBER_FILE = "cluster-init"     # its member name: `pkube down` leaves etcd first, unless it is alone
ENDPOINT_LEASE_SECONDS = "15"
READERS = ("system:bootstrappers", "system:nodes")


def etcd_url(address: str, port: int = ETCD_CLIENT_PORT) -> str:
    return f"https://{address}:{port}"


def lb_server(port: int = LB_PORT) -> str:
    return f"https://127.0.0.1:{port}"


def etcd_data_dir(data_dir: Path) -> Path:
    return data_dir / "etcd-member"


def etcd_member(config: ClusterConfig, address: str, initial_cluster: str = "", existing: bool = False) -> EtcdProcess:
    """This member's etcd (named after the node), over TLS on `address`."""
    return EtcdProcess(etcd_data_dir(config.data_dir), client_port=ETCD_CLIENT_PORT, peer_port=ETCD_PEER_PORT,
                       host=address, name=config.node_name, log_path=config.log_dir / "etcd.log",
                       initial_cluster=initial_cluster, existing=existing, pki_dir=config.pki_dir)


def etcd_component(member: EtcdProcess) -> Component:
    """A started member as a supervised component (restarted with the same flags: it then
    finds its data and rejoins)."""
    comp = Component("etcd", member.command(), member.log_path)
    comp.proc = member.proc
    return comp


def admin_tls(config: ClusterConfig) -> etcdpki.EtcdTLS:
    return etcdpki.tls_of(config.pki_dir, etcdpki.ADMIN_CLIENT)


def member_components(config: ClusterConfig, address: str, etcd_servers: list[str],
                      lb_port: int, apiservers: list[str]) -> list[Component]:
    """The apiserver (advertising `address`, etcd over TLS), the load balancer, the scheduler,
    the controller-manager (leader-elected; each process a fresh identity ``<host>_<uuid>``, so
    one restarted after a crash is not taken for the leader it was), the kubelet and the proxy,
    in start order."""
    tls = etcdpki.tls_of(config.pki_dir, etcdpki.APISERVER_CLIENT)
    apiserver, *others = control_plane(config, ",".join(etcd_servers))
    apiserver.argv += ["--advertise-address", address, "--etcd-cafile", str(tls.ca), "--etcd-certfile",
                       str(tls.cert), "--etcd-keyfile", str(tls.key),
                       "--endpoint-lease-duration", ENDPOINT_LEASE_SECONDS]
    return [apiserver, lb_component(config, apiservers, lb_port, config.kubeconfig_path), *others]


def lb_component(config: ClusterConfig, apiservers: list[str], lb_port: int, kubeconfig: Path) -> Component:
    """The node's load balancer on 127.0.0.1:`lb_port`, healthy once an apiserver answers
    /readyz through it; `kubeconfig` (pointing at it) follows the kubernetes endpoints."""
    servers = [arg for url in apiservers for arg in ("--server", url)]
    return Component("loadbalancer", python_module("pkube.cluster.loadbalancer", "--listen", f"127.0.0.1:{lb_port}",
                                                   *servers, "--kubeconfig", str(kubeconfig)),
                     config.log_dir / "loadbalancer.log", health_url=f"{lb_server(lb_port)}/readyz",
                     health_ca=str(config.ca_file))


def point_at(path: Path, server: str) -> None:
    """Rewrite the server of the kubeconfig at `path`."""
    doc = yaml.safe_load(path.read_text())
    for cluster in doc.get("clusters") or []:
        cluster["cluster"]["server"] = server
    write_private(path, doc)


def point_node_at_balancer(config: ClusterConfig, lb_port: int, admin: bool = True) -> None:
    """The kubelet's, the proxy's (and the admin's) kubeconfigs name the local balancer."""
    names = ["kubelet", "proxy", *(["admin"] if admin else [])]
    for name in names:
        point_at(certs.kubeconfig_path(config.data_dir, name), lb_server(lb_port))


def save_topology(data_dir: Path, topology: dict) -> None:
    (data_dir / TOPOLOGY_FILE).write_text(json.dumps(topology))


def load_topology(data_dir: Path) -> Optional[dict]:
    """DIR/control-plane.json, or None (not part of a multi-member control plane)."""
    try:
        return json.loads((data_dir / TOPOLOGY_FILE).read_text())
    except (OSError, ValueError):
        return None


def topology_of(configmap: dict) -> dict:
    data = configmap.get("data") or {}
    return {"etcdServers": [u for u in data.get("etcdServers", "").split(",") if u],
            "apiServers": [u for u in data.get("apiServers", "").split(",") if u],
            "loadBalancerPort": int(data.get("loadBalancerPort") or LB_PORT)}


def publish_topology(client, topology: dict) -> None:
    """Create or replace the ConfigMap and let bootstrap tokens and nodes read it."""
    from pkube.cluster.controlplanecerts import _create_or_replace
    from pkube.client.resources import CONFIGMAPS, ROLEBINDINGS, ROLES
    _create_or_replace(client, CONFIGMAPS, {
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": TOPOLOGY, "namespace": NAMESPACE},
        "data": {"etcdServers": ",".join(topology["etcdServers"]), "apiServers": ",".join(topology["apiServers"]),
                 "loadBalancerPort": str(topology["loadBalancerPort"])}})
    _create_or_replace(client, ROLES, {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": {"name": TOPOLOGY_READER, "namespace": NAMESPACE},
        "rules": [{"apiGroups": [""], "resources": ["configmaps"], "resourceNames": [TOPOLOGY], "verbs": ["get"]}]})
    _create_or_replace(client, ROLEBINDINGS, {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": TOPOLOGY_READER, "namespace": NAMESPACE},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": TOPOLOGY_READER},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": g} for g in READERS]})


def read_topology(client) -> Optional[dict]:
    """The published topology, or None when the cluster has none (a single control plane)."""
    from pkube.client.errors import NotFound
    from pkube.client.resources import CONFIGMAPS
    try:
        return topology_of(client.get(CONFIGMAPS, TOPOLOGY, NAMESPACE))
    except NotFound:
        return None


def add_member_to_topology(client, etcd: str, apiserver: str, lb_port: int = LB_PORT) -> dict:
    """Append a member's URLs to the published topology (made with `lb_port` when there is
    none; retried on a conflict); the result."""
    from pkube.client.errors import Conflict
    for _ in range(5):
        topology = read_topology(client) or {"etcdServers": [], "apiServers": [], "loadBalancerPort": lb_port}
        topology["etcdServers"] = list(dict.fromkeys([*topology["etcdServers"], etcd]))
        topology["apiServers"] = list(dict.fromkeys([*topology["apiServers"], apiserver]))
        try:
            publish_topology(client, topology)
            return topology
        except Conflict:
            continue
    raise ClusterError("could not record this member in kube-system/pkube-control-plane (conflicts)")


def planned_topology(config: ClusterConfig, addresses: list[str], lb_port: int) -> dict:
    """What `pkube up --control-plane N` will have once every member joined."""
    return {"etcdServers": [etcd_url(a) for a in addresses],
            "apiServers": [f"https://{a}:{config.port}" for a in addresses], "loadBalancerPort": lb_port}


def start_first_member(cluster, log: Callable[[str], None]) -> None:
    """The host's member (``cluster``: a cluster.up.Cluster): etcd over TLS on its node
    address, then the components of `member_components` (its apiserver lists every planned
    member's etcd, its own first: gRPC fails over to the others once they joined); then the
    topology in DIR/control-plane.json and, added to, the published one. A member of
    --cluster-init restarts on the etcd data it kept (`kept_member_data`); any other start
    is a new cluster. Raises EtcdError, ComponentError, PKIError, OSError, ClusterError."""
    from pkube.cluster.etcd import port_in_use
    from pkube.cluster.netnodes import plan
    cfg = cluster.config
    address = cfg.node_ip
    addresses = [address, *(n.address for n in plan(cfg) if n.index < cfg.control_plane)]
    lb_port = LB_PORT if not port_in_use(LB_PORT) else cfg.port + 1
    topology = planned_topology(cfg, addresses, lb_port)
    cluster.write_kubeconfigs()
    etcdpki.ensure(cfg.pki_dir, cfg.node_name, (address,))
    if cfg.cluster_init and kept_member_data(cfg.data_dir):
        log(f"restarting etcd member {cfg.node_name} on its data ({etcd_data_dir(cfg.data_dir)})")
    else:
        shutil.rmtree(etcd_data_dir(cfg.data_dir), ignore_errors=True)
        log(f"starting etcd member {cfg.node_name} on {etcd_url(address)}")
    member = etcd_member(cfg, address).start(timeout=30)
    cluster.components.append(etcd_component(member))
    point_node_at_balancer(cfg, lb_port)
    for comp in member_components(cfg, address, topology["etcdServers"], lb_port, topology["apiServers"]):
        log(f"starting {comp.name}")
        comp.start()
        cluster.components.append(comp)
    save_topology(cfg.data_dir, topology)
    publish_first_member(cfg, topology)
    if cfg.cluster_init:
        (cfg.data_dir / FIRST_MEMBER_FILE).write_text(cfg.node_name)


def kept_member_data(data_dir: Path) -> bool:
    """A `pkube up --cluster-init` member's etcd data is there, and it is still a member (its
    `pkube down` did not make it leave etcd: controlplanejoin.leave removes FIRST_MEMBER_FILE)."""
    return (etcd_data_dir(data_dir) / "member").is_dir() and (data_dir / FIRST_MEMBER_FILE).exists()


def publish_first_member(config: ClusterConfig, planned: dict) -> None:
    """The first member's URLs (the first of `planned`; each member that joins adds its own)
    added to the published topology (made when there is none: a new cluster): joiners and
    workers read it. ClusterError when the apiserver refuses."""
    from pkube.client.errors import ApiError, Unavailable
    try:
        with admin_client(config, config.server) as client:
            add_member_to_topology(client, planned["etcdServers"][0], planned["apiServers"][0],
                                   planned["loadBalancerPort"])
    except (ApiError, Unavailable) as err:
        raise ClusterError(f"could not publish the control plane's topology (kube-system/{TOPOLOGY}): "
                           f"{getattr(err, 'message', '') or err}") from err


def remove_member_data(data_dir: Path) -> None:
    """What `pkube down` removes of a member: its etcd data (the cluster is gone with it)."""
    shutil.rmtree(etcd_data_dir(data_dir), ignore_errors=True)
    (data_dir / TOPOLOGY_FILE).unlink(missing_ok=True)
    (data_dir / FIRST_MEMBER_FILE).unlink(missing_ok=True)


def admin_client(config: ClusterConfig, server: Optional[str] = None):
    """An ApiClient as DIR/admin.kubeconfig (optionally at another `server`)."""
    from pkube.client.kubeconfig import load_kubeconfig
    from pkube.client.rest import ApiClient
    client_config = load_kubeconfig(str(config.kubeconfig_path))
    return ApiClient(dataclasses.replace(client_config, server=server) if server else client_config, timeout=15)


class HANetNodes(NetNodes):
    """`pkube up --nodes N --control-plane M`: nodes 1..M-1 join as control-plane members, one
    at a time (etcd adds one member at a time: a second add waits until the first member is
    up), then the others as workers, all at once."""

    def __init__(self, config: ClusterConfig, log: Callable[[str], None]):
        super().__init__(config, log)
        self.certificate_key = ""

    def is_member(self, node) -> bool:
        return node.index < self.config.control_plane

    def join_component(self, node, token: str) -> Component:
        """A member's join carries --control-plane and the certificate key."""
        comp = super().join_component(node, token)
        if self.is_member(node):
            comp.argv += ["--control-plane", "--certificate-key", self.certificate_key]
        return comp

    def make_token(self) -> str:
        """The join token, then (as the admin, when members are to join) the shared secrets
        sealed with a fresh certificate key, owned by that token."""
        from pkube.cluster import controlplanecerts
        token = super().make_token()
        if not any(self.is_member(n) for n in self.nodes):
            return token
        self.certificate_key = controlplanecerts.new_certificate_key()
        with admin_client(self.config, self.config.server) as client:
            controlplanecerts.upload(client, self.config.data_dir, self.certificate_key,
                                     token.split("::")[1].split(".")[0])
        return token

    def start(self, supervised: list[Component]) -> None:
        """Members one by one, each waited for; then the workers together."""
        if not self.nodes:
            return
        token = self.make_token()
        members = [n for n in self.nodes if self.is_member(n)]
        for batch in [[m] for m in members] + [[n for n in self.nodes if not self.is_member(n)]]:
            joins = []
            for node in batch:
                self.log(f"adding {'control-plane member' if self.is_member(node) else 'node'} {node.name} "
                         f"({node.address}, network namespace {node.netns})")
                add_namespace(node)
                (node.data_dir / "ready").unlink(missing_ok=True)
                join = self.join_component(node, token)
                join.start()
                self.joins.append(join)
                supervised.append(join)
                joins.append((node, join))
            self.wait_for(joins)

    def wait_for(self, joins: list, timeout: float = JOIN_TIMEOUT) -> None:
        """Until each node's DIR/ready exists; ClusterError when a join exits or times out."""
        deadline = time.monotonic() + timeout
        while joins:
            for node, join in joins:
                if not join.alive():
                    raise ClusterError(f"{tail(join.log_path, 3)}\nnode {node.name} did not join "
                                       f"(its log: {join.log_path})")
            joins = [(n, j) for n, j in joins if not (n.data_dir / "ready").exists()]
            if joins and time.monotonic() > deadline:
                raise ClusterError(f"node {joins[0][0].name} did not join within {timeout:.0f}s")
            time.sleep(0.2)


def prepare_worker(config: ClusterConfig, server: str, log: Callable[[str], None]) -> bool:
    """A worker of a cluster with a published topology: its kubelet and proxy will talk through
    a local balancer (True); False for a cluster of one control plane. The topology is read as
    the node (at `server`), or from DIR/control-plane.json when the server does not answer."""
    from pkube.client.errors import ApiError, Unavailable
    from pkube.client.kubeconfig import load_kubeconfig
    from pkube.client.rest import ApiClient
    client_config = dataclasses.replace(load_kubeconfig(config.kubeconfig_of("kubelet")), server=server)
    try:
        with ApiClient(client_config, timeout=15) as client:
            topology = read_topology(client)
    except (ApiError, Unavailable):
        topology = load_topology(config.data_dir)
    if topology is None:
        return False
    topology["apiServers"] = list(dict.fromkeys([*topology["apiServers"], server]))
    save_topology(config.data_dir, topology)
    point_node_at_balancer(config, topology["loadBalancerPort"], admin=False)
    log(f"node {config.node_name}: the kubelet and the proxy talk to the apiservers through "
        f"{lb_server(topology['loadBalancerPort'])}")
    return True


def spread(apiservers: list[str], node_name: str) -> list[str]:
    """``apiservers`` rotated to start at one chosen by a stable hash of ``node_name``: a
    worker's balancer prefers its first apiserver (and moves back to it after a failover), so
    the workers' load spreads over the members instead of all landing on the first one, as
    k3s's agents shuffle their server lists."""
    if not apiservers:
        return []
    start = zlib.crc32(node_name.encode()) % len(apiservers)
    return apiservers[start:] + apiservers[:start]


class HAWorker(WorkerNode):
    """A worker node of a multi-member control plane: its load balancer (preferring the
    apiserver ``spread`` picks for it), then the kubelet and the proxy (cluster.node.WorkerNode)."""

    def start(self) -> None:
        topology = load_topology(self.config.data_dir)
        self.config.log_dir.mkdir(parents=True, exist_ok=True)
        balancer = lb_component(self.config, spread(topology["apiServers"], self.config.node_name),
                                topology["loadBalancerPort"], Path(self.config.kubeconfig_of("proxy")))
        self.log("starting loadbalancer")
        try:
            balancer.start(timeout=60)
        except (ComponentError, OSError) as err:
            raise ClusterError(f"loadbalancer: {err}") from err
        self.components.append(balancer)
        super().start()


def member_command(data_dir: Path, verb: str, name: str = "") -> str:
    """`pkube etcd member list|remove NAME` on a member's data dir: what to print. Raises
    ClusterError (not a member of a control plane of several, etcd refuses)."""
    from pkube.cluster import etcdmembers
    topology = load_topology(data_dir)
    if topology is None:
        raise ClusterError(f"{data_dir} is not a member of a control plane of several "
                           f"(pkube up --control-plane N): no {TOPOLOGY_FILE}")
    tls = etcdpki.tls_of(data_dir / "pki", etcdpki.ADMIN_CLIENT)
    if verb == "remove":
        gone = etcdmembers.remove(topology["etcdServers"], name, tls)
        return f"member {gone.name} ({gone.id}) removed from etcd"
    rows = [(m.name or "(not started)", m.id, ",".join(m.peer_urls), ",".join(m.client_urls))
            for m in etcdmembers.members(topology["etcdServers"], tls)]
    widths = [max(len(r[i]) for r in [("NAME", "ID", "PEER URLS", "CLIENT URLS"), *rows]) for i in range(4)]
    return "\n".join("   ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip()
                     for r in [("NAME", "ID", "PEER URLS", "CLIENT URLS"), *rows])
