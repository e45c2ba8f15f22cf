"""`pkube`: start and stop a local cluster.

Errors are one line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pkube.cluster.pki import PKIError
from pkube.cluster.up import (DEFAULT_DATA_DIR, DEFAULT_PORT, POD_CGROUP, STATIC_POD_NAMES, ClusterConfig,
                        ClusterError, acquire_lock, lock_held, run_foreground, running_pid, start_detached,
                        stop_detached, usage_text)

POD_NETWORKS = ("host-gw", "vxlan", "none")
DEFAULT_ROUTE_PROBE = "198.51.100.1"   # TEST-NET-2: its route is looked up, no packet is sent
EXAMPLE_ARGS = {"kube-apiserver": "max-requests-inflight=800", "kube-scheduler": "percentage-of-nodes-to-score=50",
                "kube-controller-manager": "node-monitor-grace-period=20"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pkube", description="A small but real Kubernetes.")
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start a local cluster (foreground unless -d)")
    up.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    up.add_argument("--port", type=int, default=DEFAULT_PORT, help="apiserver port (default 6443)")
    up.add_argument("-d", "--detach", action="store_true", help="run in the background")
    up.add_argument("--no-kubelet", action="store_true", help="a control plane without a node")
    up.add_argument("--node-name", default=None, help="the local node's name (default: the host name)")
    up.add_argument("--kubelet-port", type=int, default=10250, help="the local kubelet's API port")
    up.add_argument("--static-pods", action=argparse.BooleanOptionalAction, default=True,
                    help="run the control plane as static pods of the kubelet, kubeadm style (the default); "
                         "--no-static-pods: as child processes, as --no-kubelet does")
    up.add_argument("--nodes", type=int, default=1,
                    help="nodes in all: N-1 more on this machine, each in a network namespace, joined with "
                         "pkube join (docs/multi-node.md)")
    up.add_argument("--control-plane", type=int, default=1, metavar="N",
                    help="control-plane members (odd; the first N nodes, joined with pkube join --control-plane): "
                         "etcd, apiserver, scheduler and controller-manager on each (docs/multi-node.md)")
    up.add_argument("--cluster-init", action="store_true",
                    help="a control plane of one member that other machines join with pkube join --control-plane "
                         "(k3s's --cluster-init; docs/multi-node.md)")
    up.add_argument("--node-ip", default="",
                    help="the local node's address (default: the one the default route leaves from; with --nodes "
                         "N > 1, the nodes' bridge's)")
    up.add_argument("--pod-network", choices=POD_NETWORKS, default="host-gw",
                    help="how pods reach pods on other nodes (default host-gw)")
    for pod in STATIC_POD_NAMES.values():
        component = "the " + pod.removeprefix("kube-")
        up.add_argument(f"--{pod}-arg", action="append", default=[], metavar="FLAG=VALUE",
                        help=f"a flag for {component} (repeatable; k3s's --{pod}-arg), e.g. "
                             f"{EXAMPLE_ARGS[pod]}")
    _add_join_parser(sub)
    down = sub.add_parser("down", help="stop a cluster started with `pkube up -d` (or a node: pkube join -d)")
    down.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    hollow = sub.add_parser("hollow", help="simulate N nodes (kubemark style) on a running cluster",
                            description="Runs in the foreground; other options go to cluster.hollow "
                                        "(--name-prefix, --cpu, --memory, --max-pods, ...).")
    hollow.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    hollow.add_argument("--kubeconfig", type=Path, default=None,
                        help="a cluster's kubeconfig instead of --data-dir (any pkube or other apiserver)")
    hollow.add_argument("--nodes", type=int, required=True, help="how many nodes to simulate")
    secrets = sub.add_parser("secrets", help="Secrets at rest")
    secrets_verbs = secrets.add_subparsers(dest="secrets_command", required=True)
    rotate = secrets_verbs.add_parser("rotate-key", help="a new encryption key; every Secret re-encrypted "
                                                         "with it, then the old key dropped (safe to re-run)")
    rotate.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    _add_certs_parser(sub)
    _add_token_parser(sub)
    _add_etcd_parser(sub)
    return parser


def _add_etcd_parser(sub) -> None:
    etcd = sub.add_parser("etcd", help="the cluster's etcd: snapshots (backup and restore), defragmentation")
    verbs = etcd.add_subparsers(dest="etcd_command", required=True)
    snapshot = verbs.add_parser("snapshot", help="back up etcd to a file, restore it from one")
    actions = snapshot.add_subparsers(dest="snapshot_command", required=True)
    save = actions.add_parser("save", help="write a snapshot of the running cluster's etcd to FILE")
    restore = actions.add_parser("restore", help="make DIR/etcd from FILE (the cluster must be down; "
                                                 "an existing DIR/etcd is kept aside)")
    status = actions.add_parser("status", help="check a snapshot file: its revision, keys and size")
    for action in (save, restore, status):
        action.add_argument("file", type=Path)
    for verb in (save, restore, verbs.add_parser("defrag", help="compact, defragment and disarm the space "
                                                               "alarm of the running cluster's etcd")):
        verb.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    member = verbs.add_parser("member", help="the members of a control plane of several (pkube up --control-plane)")
    member_verbs = member.add_subparsers(dest="member_command", required=True)
    remove = member_verbs.add_parser("remove", help="remove member NAME from etcd (the quorum shrinks first)")
    remove.add_argument("name")
    for verb in (member_verbs.add_parser("list", help="etcd's members"), remove):
        verb.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)


def _add_join_parser(sub) -> None:
    join = sub.add_parser("join", help="add this machine to a cluster as a node (foreground unless -d)",
                          description="SERVER is the apiserver's URL (https://HOST:6443); the token comes from "
                                      "`pkube token create` on the control plane.")
    join.add_argument("server")
    join.add_argument("--token", required=True, help="K10<CA hash>::<id>.<secret>")
    join.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    join.add_argument("--node-name", default=None, help="the node's name (default: the host name)")
    join.add_argument("--node-ip", default="", help="the node's address (default: the one the route to SERVER uses)")
    join.add_argument("--kubelet-port", type=int, default=10250)
    join.add_argument("--cgroup-root", default=POD_CGROUP, help="the kubelet's cgroup root (default kubepods)")
    join.add_argument("--pod-network", choices=POD_NETWORKS, default="host-gw")
    join.add_argument("-d", "--detach", action="store_true", help="run in the background")
    join.add_argument("--control-plane", action="store_true",
                      help="join as another control-plane member (with --certificate-key)")
    join.add_argument("--certificate-key", default="",
                      help="the key the control plane's shared secrets were uploaded with (hex)")


def _add_certs_parser(sub) -> None:
    certs = sub.add_parser("certs", help="the cluster's certificates (DIR/pki)")
    verbs = certs.add_subparsers(dest="certs_command", required=True)
    check = verbs.add_parser("check-expiration", help="when each certificate expires")
    renew = verbs.add_parser("renew", help="re-issue certificates with the same CA")
    renew.add_argument("name", help="all, or one certificate's name (see check-expiration)")
    upload = verbs.add_parser("upload", help="(re)upload the control plane's shared secrets, sealed with a fresh "
                                             "certificate key (printed), for pkube join --control-plane; 2 h")
    for verb in (check, renew, upload):
        verb.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)


def _add_token_parser(sub) -> None:
    token = sub.add_parser("token", help="bootstrap tokens for joining machines")
    verbs = token.add_subparsers(dest="token_command", required=True)
    create = verbs.add_parser("create", help="make a join token (printed on stdout)")
    create.add_argument("--ttl", default="24h", help="how long it is valid (0: forever; default 24h)")
    create.add_argument("--description", default="")
    verbs.add_parser("list", help="the bootstrap tokens (expired ones are removed)")
    delete = verbs.add_parser("delete", help="delete a bootstrap token")
    delete.add_argument("id", help="the token's id (or the whole token)")
    for verb in verbs.choices.values():
        verb.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
        verb.add_argument("--kubeconfig", type=Path, default=None,
                          help="an admin kubeconfig instead of DIR/admin.kubeconfig")


def log(message: str) -> None:
    print(f"pkube: {message}", file=sys.stderr, flush=True)


def cmd_up(args) -> int:
    data_dir = args.data_dir.resolve()
    config = ClusterConfig(data_dir=data_dir, port=args.port,
                           merge_user_kubeconfig=data_dir == DEFAULT_DATA_DIR, kubelet=not args.no_kubelet,
                           kubelet_port=args.kubelet_port, static_pods=args.static_pods,
                           nodes=args.nodes, pod_network=args.pod_network)
    if args.node_name:
        config.node_name = args.node_name
    if args.nodes < 1 or (args.nodes > 1 and args.no_kubelet):
        raise ClusterError(f"--nodes {args.nodes}: want 1 or more, and a local kubelet (no --no-kubelet)")
    if args.control_plane > 1 or args.cluster_init:
        check_control_plane(args)
        config.control_plane, config.nodes, config.static_pods = args.control_plane, args.nodes, False
        config.cluster_init = args.cluster_init
    config.node_ip = node_ip_of(args)
    config.extra_args = extra_args_of(args)
    if args.detach:
        argv = [sys.executable, "-m", "pkube.cluster", "up", "--data-dir", str(config.data_dir),
                "--port", str(config.port), "--kubelet-port", str(config.kubelet_port),
                "--node-name", config.node_name, *(["--no-kubelet"] if args.no_kubelet else []),
                "--static-pods" if args.static_pods else "--no-static-pods",
                "--nodes", str(args.nodes), "--pod-network", args.pod_network,
                "--control-plane", str(args.control_plane), *(["--cluster-init"] if args.cluster_init else []),
                *(["--node-ip", args.node_ip] if args.node_ip else []),
                *(f"--{pod}-arg={value}" for pod, values in config.extra_args.items() for value in values)]
        pid = start_detached(config, argv, timeout=150.0 + 60.0 * args.control_plane)
        print(usage_text(config))
        print(f"running in the background (pid {pid}); stop it with: pkube down --data-dir {config.data_dir}")
        return 0
    ready_marker = config.data_dir / "ready"

    def on_ready() -> None:
        ready_marker.write_text("")
        print(usage_text(config), flush=True)
        print("press Ctrl-C to stop", flush=True)

    try:
        run_foreground(config, log, on_ready)
    finally:
        ready_marker.unlink(missing_ok=True)
    log("stopped")
    return 0


def extra_args_of(args) -> dict[str, list[str]]:
    """--kube-apiserver-arg, --kube-scheduler-arg, --kube-controller-manager-arg by static pod
    name (those given)."""
    given = {pod: getattr(args, f"{pod.replace('-', '_')}_arg") or [] for pod in STATIC_POD_NAMES.values()}
    return {pod: values for pod, values in given.items() if values}


def node_ip_of(args) -> str:
    """The local node's --node-ip: as given; with --nodes N > 1, the nodes' bridge's (a given
    one is refused); for --cluster-init, the address the default route leaves from, which the
    machines that join must reach; else none (the kubelet picks)."""
    from pkube.cluster import join, netnodes
    if args.node_ip and args.nodes > 1:
        raise ClusterError(f"--node-ip with --nodes {args.nodes}: the host's node takes the nodes' bridge's address")
    if args.nodes > 1:
        return netnodes.HOST_ADDRESS
    if args.node_ip or not args.cluster_init:
        return args.node_ip
    try:
        return join.route_source(DEFAULT_ROUTE_PROBE, 53)
    except join.JoinError:
        raise ClusterError("--cluster-init: no default route to take this node's address from; "
                           "give the one the other machines reach with --node-ip") from None


def check_control_plane(args) -> None:
    """--control-plane N: odd (an even count adds no failure tolerance), and that many nodes
    (--nodes defaults to N); the control plane runs as processes, not static pods (so does
    --cluster-init's)."""
    if args.control_plane % 2 == 0:
        raise ClusterError(f"--control-plane {args.control_plane}: want an odd number (etcd's quorum)")
    if args.no_kubelet:
        raise ClusterError("--control-plane needs the local kubelet (no --no-kubelet)")
    args.nodes = max(args.nodes, args.control_plane) if args.nodes == 1 else args.nodes
    if args.nodes < args.control_plane:
        raise ClusterError(f"--control-plane {args.control_plane} needs as many nodes (--nodes {args.nodes})")
    args.static_pods = False


def cmd_join(args) -> int:
    """`pkube join`: the credentials first (every refusal happens here, before anything is
    written), then the kubelet and the proxy, here or in the background."""
    from pkube.cluster import join, node
    from pkube.cluster.tokens import TokenError
    host, port = join.server_address(args.server)
    config = ClusterConfig(data_dir=args.data_dir.resolve(), kubelet_port=args.kubelet_port, static_pods=False,
                           node_ip=args.node_ip or join.route_source(host, port), cgroup_root=args.cgroup_root,
                           pod_network=args.pod_network)
    if args.node_name:
        config.node_name = args.node_name
    if lock_held(config):
        acquire_lock(config)   # raises the "already running" error
    runner = node.WorkerNode
    if args.control_plane:
        from pkube.cluster import controlplanejoin
        if not args.certificate_key:
            raise ClusterError("--control-plane needs --certificate-key (the key the control plane's "
                               "secrets were uploaded with)")
        config.port = port
        controlplanejoin.prepare(config, args.server, args.token, args.certificate_key, log)
        runner = controlplanejoin.ControlPlaneMember
    else:
        try:
            join.ensure_credentials(config, args.server, args.token, log)
        except TokenError as err:
            raise ClusterError(str(err)) from None
        from pkube.cluster import hacluster
        if hacluster.prepare_worker(config, args.server, log):
            runner = hacluster.HAWorker
    if args.detach:
        pid = start_detached(config, join_argv(args, config), healthy=lambda: True)
        print(f"node {config.node_name} runs in the background (pid {pid}); stop it with: "
              f"pkube down --data-dir {config.data_dir}")
        return 0
    ready_marker = config.data_dir / "ready"

    def on_ready() -> None:
        ready_marker.write_text("")
        print(f"node {config.node_name} is running (logs: {config.log_dir}); press Ctrl-C to stop", flush=True)

    try:
        run_foreground(config, log, on_ready, runner=runner)
    finally:
        ready_marker.unlink(missing_ok=True)
    log("stopped")
    return 0


def join_argv(args, config: ClusterConfig) -> list[str]:
    """The foreground `pkube join` that `pkube join -d` runs in the background."""
    return [sys.executable, "-m", "pkube.cluster", "join", args.server, "--token", args.token,
            "--data-dir", str(config.data_dir), "--node-name", config.node_name, "--node-ip", config.node_ip,
            "--kubelet-port", str(config.kubelet_port), "--cgroup-root", config.cgroup_root,
            "--pod-network", config.pod_network,
            *(["--control-plane", "--certificate-key", args.certificate_key] if args.control_plane else [])]


def cmd_down(args) -> int:
    """Stop what runs in DIR; a joined control-plane member first leaves etcd
    (controlplanejoin.leave: refused for etcd's last member)."""
    config = ClusterConfig(data_dir=args.data_dir.resolve())
    if running_pid(config) is None:
        raise ClusterError(f"no cluster is running in {config.data_dir}")
    from pkube.cluster import controlplanejoin
    controlplanejoin.leave(config.data_dir, log)
    pid = stop_detached(config)
    print(f"stopped the cluster in {config.data_dir} (pid {pid})")
    return 0


def cmd_hollow(args, extra: list[str]) -> int:
    kubeconfig = args.kubeconfig
    if kubeconfig is None:
        config = ClusterConfig(data_dir=args.data_dir.resolve())
        if running_pid(config) is None:
            raise ClusterError(f"no cluster is running in {config.data_dir}: start one with pkube up -d")
        kubeconfig = config.kubeconfig_path
    elif not kubeconfig.is_file():
        raise ClusterError(f"no kubeconfig at {kubeconfig}")
    from pkube.cluster.hollow import main as hollow_main
    return hollow_main(["--kubeconfig", str(kubeconfig), "--nodes", str(args.nodes), *extra])


def cmd_certs(args) -> int:
    from pkube.cluster import certs
    data_dir = args.data_dir.resolve()
    if args.certs_command == "check-expiration":
        print(certs.expiration_table(data_dir))
        return 0
    if args.certs_command == "upload":
        return cmd_certs_upload(data_dir)
    for name in certs.renew(data_dir, args.name):
        print(f"certificate {name} renewed")
    print(f"Done renewing certificates: {certs.RESTART_HINT}.")
    return 0


def cmd_certs_upload(data_dir: Path) -> int:
    """`pkube certs upload` on a member of a control plane of several: the key on stdout."""
    from pkube.client.errors import ApiError, Unavailable
    from pkube.client.kubeconfig import KubeconfigError, load_kubeconfig
    from pkube.client.rest import ApiClient
    from pkube.cluster import controlplanecerts, hacluster
    if hacluster.load_topology(data_dir) is None:
        raise ClusterError(f"{data_dir} is not a member of a control plane of several (pkube up --control-plane N): "
                           f"no {hacluster.TOPOLOGY_FILE}, so no member can join it")
    kubeconfig = ClusterConfig(data_dir=data_dir).kubeconfig_path
    try:
        with ApiClient(load_kubeconfig(str(kubeconfig)), timeout=15) as client:
            key, expires = controlplanecerts.upload_with_new_key(client, data_dir)
    except KubeconfigError as err:
        raise ClusterError(str(err)) from None
    except OSError as err:
        raise ClusterError(f"cannot read the shared secrets: {err}") from None
    except Unavailable as err:
        raise ClusterError(f"cannot reach the apiserver ({kubeconfig}): {err.message or err}") from None
    except ApiError as err:
        raise ClusterError(f"the apiserver refused: {err.message or err}") from None
    log(f"the control plane's shared secrets are in the Secret {controlplanecerts.NAMESPACE}/{controlplanecerts.SECRET}, "
        f"sealed with this certificate key, until {expires:%Y-%m-%d %H:%M:%S} UTC; join with: pkube join SERVER "
        f"--token T --control-plane --certificate-key KEY")
    print(key)
    return 0


def cmd_token(args) -> int:
    from pkube.client.errors import ApiError, Unavailable
    from pkube.client.kubeconfig import KubeconfigError, load_kubeconfig
    from pkube.client.rest import ApiClient
    from pkube.cluster import tokens
    kubeconfig = args.kubeconfig or ClusterConfig(data_dir=args.data_dir.resolve()).kubeconfig_path
    try:
        config = load_kubeconfig(str(kubeconfig))
        with ApiClient(config, timeout=15) as client:
            if args.token_command == "create":
                if not config.ca:
                    raise ClusterError(f"{kubeconfig} carries no CA: a join token pins the cluster's CA")
                token = tokens.create(client, tokens.parse_ttl(args.ttl), args.description)
                print(tokens.join_token(config.ca.encode(), token.token))
            elif args.token_command == "list":
                tokens.remove_expired(client)
                print(tokens.table(tokens.tokens(client)))
            else:
                tokens.delete(client, args.id)
                print(f"bootstrap token {args.id.split('.')[0]!r} deleted")
    except (KubeconfigError, tokens.TokenError) as err:
        raise ClusterError(str(err)) from None
    except Unavailable as err:
        raise ClusterError(f"cannot reach the apiserver ({kubeconfig}): {err.message or err}") from None
    except ApiError as err:
        raise ClusterError(f"the apiserver refused: {err.message or err}") from None
    return 0


def cmd_secrets(args) -> int:
    """`pkube secrets rotate-key` on the running cluster of --data-dir."""
    from pkube.client.errors import ApiError, Unavailable
    from pkube.client.kubeconfig import KubeconfigError, load_kubeconfig
    from pkube.client.rest import ApiClient
    from pkube.cluster import secrets
    config = ClusterConfig(data_dir=args.data_dir.resolve())
    endpoint = secrets.etcd_endpoint(config.data_dir)
    if running_pid(config) is None or endpoint is None:
        raise ClusterError(f"no cluster is running in {config.data_dir}: start one with pkube up -d")
    try:
        with ApiClient(load_kubeconfig(str(config.kubeconfig_path)), timeout=30) as client:
            count, key = secrets.rotate_key(secrets.encryption_config_path(config.data_dir), client,
                                            secrets.EtcdReader(endpoint), log)
    except (KubeconfigError, secrets.SecretsError) as err:
        raise ClusterError(str(err)) from None
    except Unavailable as err:
        raise ClusterError(f"cannot reach the apiserver ({config.kubeconfig_path}): {err.message or err}") from None
    except ApiError as err:
        raise ClusterError(f"the apiserver refused: {err.message or err}") from None
    print(f"{count} secrets re-encrypted with {key}")
    return 0


def cmd_etcd(args) -> int:
    """`pkube etcd snapshot save|restore|status FILE` and `pkube etcd defrag`."""
    from pkube.cluster import etcdbackup
    if args.etcd_command == "member":
        from pkube.cluster import hacluster
        print(hacluster.member_command(args.data_dir.resolve(), args.member_command, getattr(args, "name", "")))
        return 0
    if args.etcd_command == "defrag":
        before, after, revision = etcdbackup.defrag(args.data_dir.resolve())
        print(f"etcd compacted at revision {revision} and defragmented: {before} -> {after} bytes; alarms disarmed")
        return 0
    action, path = args.snapshot_command, args.file.resolve()
    if action == "save":
        found = etcdbackup.save(path, args.data_dir.resolve())
    elif action == "restore":
        found, kept = etcdbackup.restore(path, args.data_dir.resolve())
        if kept is not None:
            print(f"the previous etcd data is kept in {kept}")
    else:
        found = etcdbackup.status(path)
    verb = {"save": "saved", "restore": "restored into " + str(args.data_dir.resolve() / "etcd"),
            "status": "is usable"}[action]
    print(f"snapshot {path} {verb}: revision {found.revision}, {found.keys} keys, {found.size} bytes")
    return 0


def main(argv: list[str] | None = None) -> int:
    args, extra = build_parser().parse_known_args(argv)
    if extra and args.command != "hollow":
        build_parser().parse_args(argv)   # exits with argparse's usage error
    try:
        if args.command == "hollow":
            return cmd_hollow(args, extra)
        if args.command == "secrets":
            return cmd_secrets(args)
        return {"up": cmd_up, "down": cmd_down, "join": cmd_join, "certs": cmd_certs, "token": cmd_token,
                "etcd": cmd_etcd}[args.command](args)
    except ClusterError as err:
        log(str(err))
        return 1
    except PKIError as err:
        log(str(err))
        return 1
    except KeyboardInterrupt:
        return 130
    except PermissionError as err:
        log(f"{err.filename or 'data dir'}: permission denied (run as root or choose --data-dir)")
        return 1


if __name__ == "__main__":
    sys.exit(main())
