"""`pkube up` / `pkube down`: a local cluster from one command.

One supervisor process per data directory holds ``DIR/pkube.lock`` (an
exclusive flock) for as long as the cluster runs and writes its pid to
``DIR/pkube.pid``. It writes ``DIR/admin.kubeconfig`` and, with static pods
(kubeadm style), the control plane's manifests into the kubelet's manifests
directory and starts only the kubelet, which runs them (cluster.controlplane);
without (``--no-kubelet``, or ``--no-static-pods``) it starts etcd, then the
apiserver, then the other components as child processes. It restarts children
that die, and on SIGTERM or SIGINT stops everything in reverse order.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import yaml

from pkube.cluster import certs
from pkube.cluster import dataprotection
from pkube.cluster import serviceaccountkey
from pkube.client.errors import ApiError
from pkube.client.kubeconfig import KubeconfigError
from pkube.cluster.addons import cluster_dns_ip, ensure_kube_dns_service, ensure_node_proxier_binding
from pkube.cluster.components import Component, ComponentError, http_ok, python_module, tail, watch_components
from pkube.cluster.controlplane import ControlPlaneError, StaticControlPlane
from pkube.cluster.etcd import EtcdError, EtcdProcess, free_port, port_in_use
from pkube.cluster.kubeconfig import merge_into_user_config, user_kubeconfig_path
from pkube.cluster.pki import PKIError
from pkube.cluster.storageclass import ensure_local_path_class

DEFAULT_DATA_DIR = Path("/var/lib/pkube")
DEFAULT_PORT = 6443
POD_CGROUP = "kubepods"        # the kubelet's --cgroup-root and --bridge defaults
POD_BRIDGE = "pkube-pods"


class ClusterError(RuntimeError):
    """A user-facing failure of up/down: its message is printed as one line."""


@dataclass
class ClusterConfig:
    """Where a local cluster keeps its state and where it listens."""

    data_dir: Path = DEFAULT_DATA_DIR
    port: int = DEFAULT_PORT
    etcd_port: int = 0
    components: tuple[str, ...] = ("scheduler", "controllers")
    merge_user_kubeconfig: bool = False
    kubelet: bool = True
    node_name: str = field(default_factory=lambda: socket.gethostname().lower())
    kubelet_port: int = 10250
    manifests_dir: Optional[Path] = None
    static_pods: bool = True
    node_ip: str = ""                  # the kubelet's and proxy's --node-ip ("": the kubelet picks)
    cgroup_root: str = POD_CGROUP      # the kubelet's --cgroup-root (cgroups are host-wide)
    pod_network: str = "host-gw"       # the proxy's --pod-network (pkube/proxy/podnetwork.py)
    nodes: int = 1                     # with the local node, how many (the others: cluster.netnodes)
    control_plane: int = 1             # control-plane members (the first nodes): cluster.hacluster
    cluster_init: bool = False         # one member that other machines join (pkube join --control-plane)
    extra_args: dict[str, list[str]] = field(default_factory=dict)   # by static pod name: flags to add (k3s's --kube-*-arg)

    @property
    def joinable(self) -> bool:
        """The control plane runs as members others join (cluster.hacluster): etcd over TLS on
        the node address, the local balancer, the published topology; --control-plane N > 1
        or --cluster-init."""
        return self.control_plane > 1 or self.cluster_init

    @property
    def static_control_plane(self) -> bool:
        """The control plane runs as static pods of the local kubelet (there must be one)."""
        return self.kubelet and self.static_pods

    @property
    def kubelet_manifests_dir(self) -> Path:
        """The static pods' directory: /etc/kubernetes/manifests for the default data dir,
        DIR/manifests otherwise (so a test cluster never reads the host's)."""
        if self.manifests_dir is not None:
            return self.manifests_dir
        return Path("/etc/kubernetes/manifests") if self.data_dir == DEFAULT_DATA_DIR else self.data_dir / "manifests"

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def kubeconfig_path(self) -> Path:
        return self.data_dir / "admin.kubeconfig"

    @property
    def pki_dir(self) -> Path:
        return certs.pki_dir(self.data_dir)

    @property
    def ca_file(self) -> Path:
        return self.pki_dir / "ca.crt"

    def kubeconfig_of(self, component: str) -> str:
        """The component's own kubeconfig (scheduler, controllers, kubelet, proxy)."""
        return str(certs.kubeconfig_path(self.data_dir, component))

    @property
    def lock_path(self) -> Path:
        return self.data_dir / "pkube.lock"

    @property
    def pid_path(self) -> Path:
        return self.data_dir / "pkube.pid"

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "logs"


def acquire_lock(config: ClusterConfig) -> int:
    """Take the data directory's lock; raise ClusterError when a cluster holds it.

    Returns the lock's file descriptor, which must stay open while running."""
    config.data_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(config.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise ClusterError(f"a cluster is already running in {config.data_dir} "
                           f"(pid {running_pid(config) or '?'}); stop it with: pkube down --data-dir {config.data_dir}")
    return fd


def running_pid(config: ClusterConfig) -> Optional[int]:
    """The pid of the supervisor running ``config.data_dir``, or None."""
    try:
        pid = int(config.pid_path.read_text().strip())
    except (OSError, ValueError):
        return None
    if not lock_held(config):
        return None
    return pid


def lock_held(config: ClusterConfig) -> bool:
    """True when some process holds the data directory's lock."""
    try:
        fd = os.open(config.lock_path, os.O_RDWR)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def etcd_ports_for(config: ClusterConfig) -> tuple[int, int]:
    """etcd's (client, peer) ports: remembered in DIR/etcd.ports so restarts reuse
    them, never the apiserver's port, fresh ones when the old ones are taken."""
    path = config.data_dir / "etcd.ports"
    try:
        ports = tuple(int(p) for p in path.read_text().split())
        if len(ports) == 2 and config.port not in ports and not any(port_in_use(p) for p in ports):
            return ports
    except (OSError, ValueError):
        pass
    ports = (config.etcd_port or free_port_except(config.port), free_port_except(config.port))
    path.write_text(f"{ports[0]} {ports[1]}")
    return ports


def free_port_except(*taken: int) -> int:
    """A free loopback port that is none of ``taken``."""
    while True:
        port = free_port()
        if port not in taken:
            return port


STATIC_POD_NAMES = {"apiserver": "kube-apiserver", "scheduler": "kube-scheduler",
                    "controllers": "kube-controller-manager"}   # a component's name as a static pod, in --kube-*-arg


def extra_flags(arg_values: list[str]) -> list[str]:
    """k3s's --kube-*-arg values (``FLAG=VALUE`` or ``FLAG``, with or without the leading
    dashes) as the component's own flags (``--FLAG=VALUE``)."""
    return ["--" + value.lstrip("-") for value in arg_values]


def control_plane(config: ClusterConfig, etcd_endpoint: str) -> list[Component]:
    """The components after etcd, in start order."""
    logs = config.log_dir
    extra = {name: extra_flags(config.extra_args.get(pod, [])) for name, pod in STATIC_POD_NAMES.items()}
    apiserver = Component(
        "apiserver",
        python_module("pkube.apiserver", "--etcd-servers", etcd_endpoint, "--bind-address", "0.0.0.0",
                      *dataprotection.apiserver_flags(config.data_dir),
                      "--port", str(config.port), *apiserver_security_flags(config.pki_dir),
                      *serviceaccountkey.apiserver_flags(config.pki_dir), *extra["apiserver"]),
        logs / "apiserver.log", health_url=f"{config.server}/readyz", health_ca=str(config.ca_file))
    others = [Component(name, python_module(f"pkube.{name}", "--kubeconfig", config.kubeconfig_of(name),
                                            "--leader-elect", *component_flags(config, name), *extra.get(name, [])),
                        logs / f"{name}.log") for name in config.components]
    if config.kubelet:
        others += [kubelet_component(config), proxy_component(config)]
    return [apiserver, *others]


def component_flags(config: ClusterConfig, name: str) -> list[str]:
    """A control-plane component's own flags (the controller-manager's CA files)."""
    return serviceaccountkey.controller_manager_flags(config.pki_dir) if name == "controllers" else []


def apiserver_security_flags(pki_dir: Path) -> list[str]:
    """The apiserver's TLS, authentication and authorization flags for the certificates of `pki_dir`: HTTPS
    only, client certificates of the cluster CA, bootstrap tokens, Node and RBAC authorization, and kubelets verified with
    the CA and shown the apiserver's kubelet client certificate; towards extension apiservers, the front-proxy client
    certificate, and kube-apiserver's requestheader flags as kubeadm sets them (the front-proxy CA, its one allowed name,
    the X-Remote-* headers)."""
    pki = lambda name: str(pki_dir / name)   # noqa: E731
    return ["--tls-cert-file", pki("apiserver.crt"), "--tls-private-key-file", pki("apiserver.key"),
            "--client-ca-file", pki("ca.crt"), "--enable-bootstrap-token-auth", "--authorization-mode", "Node,RBAC",
            "--kubelet-certificate-authority", pki("ca.crt"),
            "--kubelet-client-certificate", pki("apiserver-kubelet-client.crt"),
            "--kubelet-client-key", pki("apiserver-kubelet-client.key"),
            "--proxy-client-cert-file", pki("front-proxy-client.crt"),
            "--proxy-client-key-file", pki("front-proxy-client.key"),
            "--requestheader-client-ca-file", pki("front-proxy-ca.crt"),
            "--requestheader-allowed-names", "front-proxy-client",
            "--requestheader-username-headers", "X-Remote-User",
            "--requestheader-group-headers", "X-Remote-Group",
            "--requestheader-extra-headers-prefix", "X-Remote-Extra-"]


def kubelet_component(config: ClusterConfig) -> Component:
    """The local node's kubelet (state in DIR/kubelet), as system:node:NODE, serving its API
    with the CA-signed certificate to callers the apiserver authorizes (Webhook: kubelet.auth)."""
    pki = config.pki_dir
    return Component(
        "kubelet",
        python_module("pkube.kubelet", "--kubeconfig", config.kubeconfig_of("kubelet"), "--node-name", config.node_name,
                      "--root-dir", str(config.data_dir / "kubelet"),
                      "--manifests-dir", str(config.kubelet_manifests_dir), "--port", str(config.kubelet_port),
                      "--tls-cert-file", str(pki / "kubelet.crt"), "--tls-private-key-file", str(pki / "kubelet.key"),
                      "--client-ca-file", str(config.ca_file), "--authorization-mode", "Webhook",
                      "--cluster-dns", cluster_dns_ip(), "--cgroup-root", config.cgroup_root,
                      *(["--node-ip", config.node_ip] if config.node_ip else [])),
        config.log_dir / "kubelet.log", health_url=None)


def proxy_component(config: ClusterConfig) -> Component:
    """The local node's Service proxy (its nftables table: ip pkube-proxy)."""
    return Component(
        "proxy",
        python_module("pkube.proxy", "--kubeconfig", config.kubeconfig_of("proxy"), "--node-name", config.node_name,
                      "--cluster-dns-ip", cluster_dns_ip(), *(["--node-ip", config.node_ip] if config.node_ip else []),
                      "--pod-network", config.pod_network),
        config.log_dir / "proxy.log", health_url=None)



def remove_proxy_rules(log: Callable[[str], None]) -> None:
    """The proxy's nftables table (`python -m pkube.proxy --cleanup`)."""
    done = subprocess.run(python_module("pkube.proxy", "--cleanup", "--cluster-dns-ip", cluster_dns_ip()),
                          capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        log(f"could not remove the Service rules: {(done.stderr or done.stdout).strip()}")


class Cluster:
    """A running local cluster owned by this process."""

    def __init__(self, config: ClusterConfig, log: Callable[[str], None]):
        self.config = config
        self.log = log
        self.etcd: Optional[EtcdProcess] = None
        self.static: Optional[StaticControlPlane] = None
        self.components: list[Component] = []
        self.netnodes = None     # cluster.netnodes.NetNodes with --nodes > 1
        self._stopping = False

    def start(self) -> None:
        """Start etcd and every component, then the other nodes (--nodes); on failure stop
        what started and raise."""
        cfg = self.config
        if port_in_use(cfg.port):
            raise ClusterError(f"port {cfg.port} is already in use: choose another with --port")
        cfg.log_dir.mkdir(parents=True, exist_ok=True)
        try:
            self.prepare_nodes()
            made = dataprotection.prepare(cfg.data_dir)
            if made:
                self.log(f"made the apiserver's {' and '.join(made)} in {cfg.data_dir / 'apiserver'}")
            if cfg.static_control_plane:
                self.start_static()
            else:
                self.start_processes()
        except (EtcdError, ComponentError, ControlPlaneError, PKIError, ValueError, OSError) as err:
            self.stop()
            raise ClusterError(str(err)) from err
        self.add_addons()
        self.start_nodes()

    def prepare_nodes(self) -> None:
        """With --nodes > 1: the nodes' bridge, whose address becomes the local node's."""
        if self.config.nodes <= 1:
            return
        from pkube.cluster.hacluster import HANetNodes
        from pkube.cluster.netnodes import HOST_ADDRESS, NetNodes
        netnodes = (HANetNodes if self.config.joinable else NetNodes)(self.config, self.log)
        netnodes.setup_host()
        self.netnodes = netnodes          # from here on, stop() removes them
        self.config.node_ip = self.config.node_ip or HOST_ADDRESS

    def start_nodes(self) -> None:
        """The other nodes (cluster.netnodes); on failure stop everything and raise."""
        if self.netnodes is None:
            return
        try:
            self.netnodes.start(self.components)
        except (ClusterError, ApiError, OSError, KubeconfigError) as err:
            self.stop()
            raise ClusterError(str(err)) from err

    def add_addons(self) -> None:
        """The kube-dns Service (cluster.addons); a failure is logged, the cluster runs on."""
        try:
            ensure_kube_dns_service(self.config.kubeconfig_path, cluster_dns_ip())
        except (ApiError, OSError, KubeconfigError) as err:
            self.log(f"could not create the kube-dns Service: {err}")
        try:
            ensure_node_proxier_binding(self.config.kubeconfig_path)
        except (ApiError, OSError, KubeconfigError) as err:
            self.log(f"could not create the ClusterRoleBinding pkube-node-proxier: {err}")
        try:
            ensure_local_path_class(self.config.kubeconfig_path, self.config.data_dir)
        except (ApiError, OSError, KubeconfigError) as err:
            self.log(f"could not create the local-path StorageClass: {err}")

    def start_processes(self) -> None:
        """etcd, the apiserver, the other components (and the kubelet) as child processes."""
        cfg = self.config
        if cfg.joinable:
            from pkube.cluster.hacluster import start_first_member
            start_first_member(self, self.log)
            return
        client_port, peer_port = etcd_ports_for(cfg)
        self.etcd = EtcdProcess(cfg.data_dir / "etcd", client_port=client_port, peer_port=peer_port,
                                log_path=cfg.log_dir / "etcd.log").start()
        self.write_kubeconfigs()
        for comp in control_plane(cfg, self.etcd.endpoint):
            self.log(f"starting {comp.name}")
            comp.start()
            self.components.append(comp)

    def start_static(self) -> None:
        """The kubelet as the only child; the control plane as its static pods. Raises
        ControlPlaneError, ComponentError, ValueError (manifests, image), OSError."""
        cfg = self.config
        self.static = StaticControlPlane(cfg.data_dir / "kubelet", cfg.kubelet_manifests_dir, cfg.node_name, self.log,
                                         extra_flags={pod: extra_flags(v) for pod, v in cfg.extra_args.items()})
        self.write_kubeconfigs()
        values = self.static.prepare(cfg.data_dir, cfg.port, etcd_ports_for(cfg))
        kubelet = kubelet_component(cfg)
        self.components.append(kubelet)
        self.static.start(values, kubelet, stopping=lambda: self._stopping)
        proxy = proxy_component(cfg)
        self.log("starting proxy")
        proxy.start()
        self.components.append(proxy)

    def write_kubeconfigs(self) -> None:
        """The CA and the certificates (made or renewed as needed: cluster.certs), each
        component's kubeconfig and DIR/admin.kubeconfig; the user's kubeconfig only when asked.
        Raises PKIError, OSError."""
        node_ips = (self.config.node_ip,) if self.config.node_ip else ()
        issued = certs.prepare(self.config.data_dir, self.config.server, self.config.node_name, node_ips=node_ips)
        if serviceaccountkey.ensure_key_pair(self.config.pki_dir):
            self.log(f"ServiceAccount token key made: {self.config.pki_dir / serviceaccountkey.PRIVATE_KEY}")
        if issued:
            self.log(f"certificates issued: {', '.join(issued)} (CA: {self.config.ca_file})")
        config = yaml.safe_load(self.config.kubeconfig_path.read_text())
        if self.config.merge_user_kubeconfig:
            try:
                backup = merge_into_user_config(config)
            except (ValueError, OSError, yaml.YAMLError) as err:
                self.log(f"kubeconfig not merged: {err}")
                return
            self.log(f"context 'pkube' merged into {user_kubeconfig_path()}"
                     + (f" (backup: {backup})" if backup else ""))

    def supervise(self) -> None:
        """Keep components running until stop is requested."""
        watch_components(self.components, lambda: self._stopping, self.log)

    def request_stop(self, *_args) -> None:
        self._stopping = True

    def stop(self) -> None:
        """Stop the other nodes, components in reverse order, then etcd; remove the nodes'
        namespaces last, and a member's etcd data (not that of a `--cluster-init` member that
        did not leave etcd: it restarts on it). Idempotent."""
        self._stopping = True
        joins = {id(j) for j in self.netnodes.stop()} if self.netnodes is not None else set()
        for comp in reversed(self.components):
            if id(comp) not in joins:        # they stop meanwhile, each on its own
                comp.stop()
        if self.static is not None:
            self.static.stop()
        if self.config.kubelet:
            remove_proxy_rules(self.log)
            remove_pods(self.config.data_dir / "kubelet", self.log, self.config.cgroup_root)
        if self.etcd:
            self.etcd.stop()
        if self.config.joinable:
            from pkube.cluster.hacluster import kept_member_data, remove_member_data
            if not (self.config.cluster_init and kept_member_data(self.config.data_dir)):
                remove_member_data(self.config.data_dir)
        if self.netnodes is not None:
            self.netnodes.teardown()


def remove_pods(kubelet_dir: Path, log: Callable[[str], None], cgroup_root: str = POD_CGROUP,
                network: bool = True) -> None:
    """Stop and remove every pod container the local kubelet left (they outlive it by
    design), then its cgroup root and (unless not `network`: a network namespace that goes
    takes it along) the pod network: what `pkube down` must not leave behind. The cgroup and
    the bridge are shared by name with any other kubelet on the host
    (there should be none): while another's pods are in them they are left, with a line."""
    from pkube.runtime.runtime import Runtime
    root = kubelet_dir / "runtime"
    if not root.is_dir():
        return
    runtime = Runtime(root)
    cidr_file = kubelet_dir / "pod-cidr"
    subnet = cidr_file.read_text().strip() if cidr_file.exists() else ""
    if subnet:     # the sandboxes' addresses go back to the kubelet's network, not the runtime's default one
        runtime.set_network(_pod_network(root / "network", subnet))
    for record in runtime.list(all=True, kind="sandbox"):
        _try(log, f"remove pod sandbox {record.name}", runtime.remove_sandbox, record.id)
    for record in runtime.list(all=True):
        _try(log, f"remove container {record.name}", runtime.remove, record.id, force=True)
    kubepods = runtime.cgroups.open(cgroup_root)
    if kubepods.pids():
        log(f"left the {cgroup_root} cgroup: processes of another kubelet's pods run in it")
    else:
        _try(log, f"remove the {cgroup_root} cgroup", kubepods.destroy)
    _unmount_pod_volumes(kubelet_dir / "pods", log)
    if network and subnet:
        _remove_pod_network(root / "network", subnet, log)


def _pod_network(state_dir: Path, subnet: str):
    """The kubelet's pod network (runtime.network.BridgeNetwork) on `subnet`, not ensured."""
    from pkube.runtime.network import BridgeNetwork
    return BridgeNetwork(state_dir, bridge=POD_BRIDGE, subnet=subnet, nft_table="pkubelet")


def _unmount_pod_volumes(pods_dir: Path, log: Callable[[str], None]) -> None:
    """The kubelet mounts some volumes on the host (tmpfs for Secrets and memory emptyDirs) and
    unmounts them when a pod is deleted; pods still there at `pkube down` leave theirs: unmount
    them, deepest first, then remove the pods' directories."""
    from pkube.runtime import syscalls
    prefix = str(pods_dir) + "/"
    with open("/proc/self/mountinfo") as f:
        targets = [line.split()[4] for line in f if line.split()[4].startswith(prefix)]
    for target in sorted(targets, key=len, reverse=True):
        _try(log, f"unmount {target}", syscalls.umount2, target, syscalls.MNT_DETACH)
    shutil.rmtree(pods_dir, ignore_errors=True)


def _remove_pod_network(state_dir: Path, subnet: str, log: Callable[[str], None]) -> None:
    """The pods' bridge and its nftables table, unless another kubelet's pods hang on it."""
    if _has_ports(POD_BRIDGE):
        log(f"left the bridge {POD_BRIDGE}: another kubelet's pods are attached to it")
        return
    try:
        _pod_network(state_dir, subnet).teardown()
    except Exception as err:   # noqa: BLE001
        log(f"could not remove the pod network: {err}")


def _has_ports(bridge: str) -> bool:
    """True when interfaces are attached to `bridge` in this process's network namespace
    (`ip link show master`: netlink, unlike /sys/class/net, which shows the namespace sysfs
    was mounted in, the host's for a node under `nsenter --net`)."""
    done = subprocess.run(["ip", "-o", "link", "show", "master", bridge], capture_output=True, text=True, timeout=10)
    return done.returncode == 0 and bool(done.stdout.strip())


def _try(log: Callable[[str], None], what: str, fn, *args, **kwargs) -> None:
    """Best effort: a failure is logged and the caller goes on with the rest."""
    try:
        fn(*args, **kwargs)
    except Exception as err:   # noqa: BLE001
        log(f"could not {what}: {err}")


def usage_text(config: ClusterConfig) -> str:
    """What to tell the user once the cluster is up."""
    logs = (f"logs: {config.log_dir} (the kubelet), kubectl logs -n kube-system kube-apiserver-{config.node_name} ..."
            if config.static_control_plane else f"logs: {config.log_dir}")
    text = (f"pkube is running at {config.server}\n"
            f"  export KUBECONFIG={config.kubeconfig_path}\n"
            f"  kubectl get nodes\n"
            f"{logs}")
    if config.joinable:
        where = f"--data-dir {config.data_dir}"
        text += (f"\nanother machine joins this control plane as a member with a token and a certificate key "
                 f"made here (pkube token create {where}; pkube certs upload {where}):\n"
                 f"  pkube join https://{config.node_ip}:{config.port} --token TOKEN --control-plane "
                 f"--certificate-key KEY")
    return text


def run_foreground(config: ClusterConfig, log: Callable[[str], None], on_ready: Callable[[], None],
                   runner=None) -> None:
    """Run a cluster (or `runner(config, log)`, e.g. a joined node: anything with start,
    supervise, request_stop and stop) in this process until SIGINT/SIGTERM, holding the data
    dir's lock and pid file; raise ClusterError."""
    lock_fd = acquire_lock(config)
    config.pid_path.write_text(str(os.getpid()))
    cluster = (runner or Cluster)(config, log)
    signal.signal(signal.SIGTERM, cluster.request_stop)
    signal.signal(signal.SIGINT, cluster.request_stop)
    try:
        cluster.start()
        on_ready()
        cluster.supervise()
    finally:
        cluster.stop()
        config.pid_path.unlink(missing_ok=True)
        os.close(lock_fd)


def start_detached(config: ClusterConfig, argv: list[str], timeout: float = 150.0,
                   healthy: Optional[Callable[[], bool]] = None) -> int:
    """Start ``argv`` (a foreground `pkube up` or `pkube join`) in the background; return its
    pid once DIR/ready exists and ``healthy()`` (default: the apiserver answers /readyz), or
    raise ClusterError with its log's tail."""
    healthy = healthy or (lambda: http_ok(config.server + "/readyz", str(config.ca_file)))
    if lock_held(config):
        acquire_lock(config)  # raises the "already running" error
    config.data_dir.mkdir(parents=True, exist_ok=True)
    log_path = config.data_dir / "pkube.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    ready = config.data_dir / "ready"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ClusterError(f"pkube {argv[3] if len(argv) > 3 else 'up'} failed: {last_error_line(log_path)}")
        if ready.exists() and healthy():
            return proc.pid
        time.sleep(0.1)
    proc.terminate()
    raise ClusterError(f"cluster not ready after {timeout:.0f}s; see {log_path}")


def last_error_line(log_path: Path) -> str:
    """The last non-empty line of a log, stripped of the 'pkube: ' prefix."""
    lines = [l for l in tail(log_path, 5).splitlines() if l.strip()]
    return lines[-1].removeprefix("pkube: ") if lines else f"see {log_path}"


def stop_detached(config: ClusterConfig, timeout: float = 60.0) -> int:
    """Stop the cluster running in ``config.data_dir``; return its pid."""
    pid = running_pid(config)
    if pid is None:
        raise ClusterError(f"no cluster is running in {config.data_dir}")
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not lock_held(config):
            return pid
        time.sleep(0.1)
    raise ClusterError(f"cluster (pid {pid}) did not stop within {timeout:.0f}s")
