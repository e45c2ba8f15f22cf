"""`pkube join SERVER --token T --control-plane --certificate-key K`: this machine becomes
another member of a control plane started with `pkube up --control-plane N` (pkube/cluster/hacluster.py).

`prepare` (before anything runs; every refusal is a JoinError and one line):

1. discovery as for a worker (cluster.join): the server must show the CA the token pins;
2. with the bootstrap token, the shared secrets (cluster CA, front-proxy CA, etcd CA,
   ServiceAccount keys, encryption config: pkube/cluster/controlplanecerts.py, opened with the certificate key) and the
   published topology (ConfigMap kube-system/pkube-control-plane);
3. locally, with the downloaded CAs: the apiserver's serving certificate (this node's
   address, 127.0.0.1, 10.96.0.1, the `kubernetes` names), every component's certificate and
   kubeconfig, the front-proxy client certificate (from the shared front-proxy CA, so every
   member's apiserver is the same proxy to extension apiservers), this etcd member's server and peer certificates; the kubelet's, the proxy's
   and the admin's kubeconfigs name the local load balancer.

A machine that joined before (its CA key and DIR/control-plane.json are there, for the CA the
token pins) skips 2 and re-issues only what is missing, so the token may have expired.

`ControlPlaneMember` then runs, as child processes supervised by this join process (restarted
when they exit, as `pkube up` supervises its own): the etcd member (registered first with
`etcdctl member add`, then started with ``--initial-cluster-state existing``; a member whose
data is still there restarts as it was), the apiserver, the load balancer, the scheduler and
the controller-manager (``--leader-elect``), the kubelet and the proxy. On SIGTERM (`pkube
down --data-dir DIR`) it stops them in reverse order, removes its pods and its etcd data.
Before that signal, `pkube down` removes the member from etcd (`leave`, through the others),
so the quorum shrinks before the member goes, as `pkube etcd member remove NAME` does; it
refuses to stop etcd's last member. The member's name is in DIR/etcd-member-name, written
when it starts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

from pkube.cluster import certs, controlplanecerts, dataprotection, etcdmembers, etcdpki, hacluster, join, pki
from pkube.cluster.components import Component, ComponentError
from pkube.cluster.etcd import EtcdError
from pkube.cluster.up import ClusterConfig, ClusterError, remove_pods, remove_proxy_rules

MEMBER_NAME_FILE = "etcd-member-name"


class LastMemberError(ClusterError):
    """The member is etcd's last: `pkube down` refuses to stop it."""


def member_name(data_dir: Path, file: str = MEMBER_NAME_FILE) -> Optional[str]:
    """The etcd member name of the joined control-plane member in `data_dir` (or with `file`
    hacluster.FIRST_MEMBER_FILE, of a `pkube up --cluster-init`), or None (a worker, the
    first member of `pkube up --control-plane N`, or nothing there)."""
    try:
        return (data_dir / file).read_text().strip() or None
    except OSError:
        return None


def leave(data_dir: Path, log: Callable[[str], None]) -> None:
    """Remove the member of `data_dir` (joined, or made by `pkube up --cluster-init`) from
    etcd, through every member's client URL, before its processes stop. When it is etcd's last
    member, the first member stops and keeps its data (`pkube up --cluster-init` restarts on
    it), and a joined member refuses with ClusterError (stopping it would delete every object).
    Any other failure (etcd without quorum, unreachable) is logged with the command that
    finishes the job, and the caller stops the member anyway."""
    first = member_name(data_dir, hacluster.FIRST_MEMBER_FILE)
    name, topology = first or member_name(data_dir), hacluster.load_topology(data_dir)
    if name is None or topology is None:
        return
    tls = etcdpki.tls_of(data_dir / "pki", etcdpki.ADMIN_CLIENT)
    try:
        current = etcdmembers.members(topology["etcdServers"], tls)
        if [m.name for m in current] == [name] and first:
            return
        if [m.name for m in current] == [name]:
            raise LastMemberError(f"{name} is etcd's last member: stopping it would lose every object "
                               f"(save them first: pkube etcd snapshot save FILE --data-dir {data_dir})")
        if any(m.name == name for m in current):
            gone = etcdmembers.remove(topology["etcdServers"], name, tls)
            log(f"member {gone.name} ({gone.id}) removed from etcd")
        (data_dir / hacluster.FIRST_MEMBER_FILE).unlink(missing_ok=True)   # its data goes when it stops
    except LastMemberError:
        raise
    except ClusterError as err:
        log(f"could not remove etcd member {name} ({err}); on another member: pkube etcd member remove {name}")


def prepare(config: ClusterConfig, server: str, token: str, certificate_key: str,
            log: Callable[[str], None]) -> dict:
    """Steps 1-3 of the module docstring; the topology. Raises JoinError, ClusterError, PKIError."""
    from pkube.cluster.tokens import TokenError, parse_join_token
    try:
        ca_hash, secret = parse_join_token(token)
    except TokenError as err:
        raise ClusterError(str(err)) from None
    host, port = join.server_address(server)
    ca = join.discover_ca(host, port, ca_hash)
    config.port = port
    topology = hacluster.load_topology(config.data_dir)
    if topology is None or not _holds_ca(config, ca_hash):
        topology = _download(config, server, ca, secret, certificate_key)
    else:
        log(f"member {config.node_name}: using its certificates in {config.pki_dir}")
    dataprotection.prepare(config.data_dir)
    issued = certs.prepare(config.data_dir, f"https://127.0.0.1:{port}", config.node_name,
                           node_ips=(config.node_ip,))
    issued += etcdpki.ensure(config.pki_dir, config.node_name, (config.node_ip,))
    if issued:
        log(f"certificates issued with the cluster's CAs: {', '.join(issued)}")
    hacluster.point_node_at_balancer(config, topology["loadBalancerPort"])
    hacluster.save_topology(config.data_dir, topology)
    return topology


def _holds_ca(config: ClusterConfig, ca_hash: str) -> bool:
    try:
        return (config.pki_dir / "ca.key").exists() and pki.ca_hash((config.pki_dir / "ca.crt").read_bytes()) == ca_hash
    except (OSError, ValueError):
        return False


def _download(config: ClusterConfig, server: str, ca: bytes, secret: str, certificate_key: str) -> dict:
    """The shared secrets and the topology, with the bootstrap token; JoinError when refused."""
    from pkube.client.errors import ApiError, Unavailable
    from pkube.client.kubeconfig import ClientConfig
    from pkube.client.rest import ApiClient
    try:
        with ApiClient(ClientConfig(server, ca=ca.decode(), token=secret), timeout=15) as client:
            topology = hacluster.read_topology(client)
            if topology is None:
                raise join.JoinError(f"{server} publishes no control-plane topology (kube-system/"
                                     f"{hacluster.TOPOLOGY}): start it with pkube up --control-plane N")
            controlplanecerts.download(client, certificate_key, config.data_dir)
    except controlplanecerts.CertificateKeyError as err:
        raise join.JoinError(str(err)) from None
    except ApiError as err:
        if err.code == 401:
            raise join.JoinError(f"{server} refused the token (401 Unauthorized): it is wrong or has expired") from None
        raise join.JoinError(f"{server} refused the join: {err.message or err}") from None
    except Unavailable as err:
        raise join.JoinError(f"cannot reach the apiserver at {server}: {err.message or err}") from None
    return topology


class ControlPlaneMember:
    """The processes of one joined control-plane member (see the module docstring); run by
    cluster.up.run_foreground after `prepare`."""

    def __init__(self, config: ClusterConfig, log: Callable[[str], None]):
        self.config = config
        self.log = log
        self.topology = hacluster.load_topology(config.data_dir)
        self.components: list[Component] = []
        self._stopping = False

    @property
    def address(self) -> str:
        return self.config.node_ip

    def start(self) -> None:
        """etcd, then the member's components; ClusterError (after stopping what started)."""
        cfg = self.config
        cfg.log_dir.mkdir(parents=True, exist_ok=True)
        own_etcd, own_api = hacluster.etcd_url(self.address), f"https://{self.address}:{cfg.port}"
        try:
            (cfg.data_dir / MEMBER_NAME_FILE).write_text(cfg.node_name)
            self.components.append(hacluster.etcd_component(self.start_etcd(own_etcd)))
            etcd_servers = list(dict.fromkeys([own_etcd, *self.topology["etcdServers"]]))
            apiservers = list(dict.fromkeys([own_api, *self.topology["apiServers"]]))
            for comp in hacluster.member_components(cfg, self.address, etcd_servers,
                                                    self.topology["loadBalancerPort"], apiservers):
                self.log(f"starting {comp.name}")
                comp.start(timeout=60)
                self.components.append(comp)
                if comp.name == "apiserver":
                    self.record(own_etcd, own_api)
        except (EtcdError, ComponentError, ClusterError, OSError) as err:
            self.stop()
            raise ClusterError(f"member {cfg.node_name}: {err}") from err

    def start_etcd(self, own_url: str):
        """This member's etcd: restarted on its data when there is some, else registered with
        the others (a stale registration of the same name replaced) and started as a newcomer."""
        cfg = self.config
        tls = hacluster.admin_tls(cfg)
        if (hacluster.etcd_data_dir(cfg.data_dir) / "member").is_dir():
            self.log(f"restarting etcd member {cfg.node_name} on its data")
            return hacluster.etcd_member(cfg, self.address, existing=True).start(timeout=60)
        others = [u for u in self.topology["etcdServers"] if u != own_url]
        member = hacluster.etcd_member(cfg, self.address)
        if any(m.name == cfg.node_name for m in etcdmembers.members(others, tls)):
            self.log(f"etcd member {cfg.node_name} was registered before: replacing it")
            etcdmembers.remove(others, cfg.node_name, tls)
        self.log(f"adding etcd member {cfg.node_name} ({member.peer_url})")
        member.initial_cluster = etcdmembers.add(others, cfg.node_name, member.peer_url, tls)
        member.existing = True
        return member.start(timeout=60)

    def record(self, own_etcd: str, own_api: str) -> None:
        """This member's URLs into the published topology (through its own apiserver)."""
        from pkube.client.errors import ApiError
        try:
            with hacluster.admin_client(self.config, self.config.server) as client:
                self.topology = hacluster.add_member_to_topology(client, own_etcd, own_api)
            hacluster.save_topology(self.config.data_dir, self.topology)
        except ApiError as err:
            self.log(f"could not record this member in kube-system/{hacluster.TOPOLOGY}: {err}")

    def supervise(self) -> None:
        from pkube.cluster.components import watch_components
        watch_components(self.components, lambda: self._stopping, self.log)

    def request_stop(self, *_args) -> None:
        self._stopping = True

    def stop(self) -> None:
        """Every component in reverse order (etcd last), then the pods, the proxy's rules and
        the member's etcd data. Idempotent."""
        self._stopping = True
        for comp in reversed(self.components):
            comp.stop()
        self.components = []
        remove_proxy_rules(self.log)
        remove_pods(self.config.data_dir / "kubelet", self.log, self.config.cgroup_root)
        hacluster.remove_member_data(self.config.data_dir)
        (self.config.data_dir / MEMBER_NAME_FILE).unlink(missing_ok=True)
