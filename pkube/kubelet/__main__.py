"""python -m pkube.kubelet --kubeconfig F [--node-name N] [--root-dir D] [--manifests-dir M] ..."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import socket
import sys
from dataclasses import replace

from pkube.api.quantity import memory_bytes
from pkube.client.aio import AsyncApiClient
from pkube.client.component import run_main
from pkube.client.kubeconfig import load_kubeconfig
from pkube.kubelet.kubelet import Kubelet, KubeletConfig

USER_AGENT = "kubelet/v1.32.0 pkube"  # the manager name of the kubelet's writes in managedFields


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m pkube.kubelet", description="pkube kubelet: runs the pods of one node")
    p.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config)")
    p.add_argument("--context", help="kubeconfig context")
    p.add_argument("--node-name", default=socket.gethostname().lower(), help="the Node's name (default: hostname)")
    p.add_argument("--root-dir", default="/var/lib/pkube/kubelet", help="the kubelet's state (pods, runtime)")
    p.add_argument("--manifests-dir", default="/etc/kubernetes/manifests", help="static pod manifests")
    p.add_argument("--port", type=int, default=10250, help="the kubelet's HTTPS API")
    p.add_argument("--node-ip", default="", help="the node's InternalIP (default: the default route's source)")
    p.add_argument("--pod-cidr", default="", help="the node's pod network when no node IPAM assigns one")
    p.add_argument("--cgroup-root", default="kubepods", help="cgroup under which pods are created")
    p.add_argument("--bridge", default="pkube-pods", help="the pods' bridge")
    p.add_argument("--cluster-cidr", default="10.244.0.0/16",
                   help="the cluster's pod network: pods reach it with their own address, the rest of "
                        "their egress is masqueraded (\"\" masquerades all)")
    p.add_argument("--cluster-dns", default="", help="comma-separated DNS server IPs for ClusterFirst pods "
                   "(none: such pods use the host's resolvers, as Kubernetes does)")
    p.add_argument("--cluster-domain", default="cluster.local")
    p.add_argument("--image-gc-high-threshold", type=int, default=85,
                   help="disk usage %% of the images' file system that starts image garbage collection")
    p.add_argument("--image-gc-low-threshold", type=int, default=80,
                   help="disk usage %% image garbage collection brings it down to")
    p.add_argument("--container-log-max-size", default="10Mi", help="a container's log is rotated past this size")
    p.add_argument("--container-log-max-files", type=int, default=5, help="log files kept per container")
    p.add_argument("--node-labels", default="", help="k=v,k2=v2 added to the Node's labels")
    p.add_argument("--tls-cert-file", default="", help="serving certificate of the HTTPS API (default: self-signed)")
    p.add_argument("--tls-private-key-file", default="", help="its private key")
    p.add_argument("--authorization-mode", default="AlwaysAllow", choices=("AlwaysAllow", "Webhook"),
                   help="Webhook: every caller of the API is authenticated (certificate or token) and authorized "
                        "by the apiserver (SubjectAccessReview on nodes/proxy, nodes/log, nodes/stats)")
    p.add_argument("--client-ca-file", default="",
                   help="accept only callers presenting a certificate signed by this CA (the apiserver's)")
    p.add_argument("--no-serve", action="store_true", help="no HTTPS API (logs and exec then fail)")
    p.add_argument("-v", "--verbose", action="store_true")
    return p.parse_args(argv)


def config_from(args: argparse.Namespace) -> KubeletConfig:
    labels = dict(item.split("=", 1) for item in args.node_labels.split(",") if "=" in item)
    return KubeletConfig(node_name=args.node_name, root_dir=args.root_dir, manifests_dir=args.manifests_dir,
                         port=args.port, address=args.node_ip, pod_cidr=args.pod_cidr,
                         cgroup_root=args.cgroup_root, bridge=args.bridge, serve=not args.no_serve,
                         cluster_cidr=args.cluster_cidr,
                         tls_cert_file=args.tls_cert_file, tls_private_key_file=args.tls_private_key_file,
                         client_ca_file=args.client_ca_file, authorization_mode=args.authorization_mode,
                         labels=labels, cluster_dns=tuple(filter(None, args.cluster_dns.split(","))),
                         cluster_domain=args.cluster_domain, image_gc_high_percent=args.image_gc_high_threshold,
                         image_gc_low_percent=args.image_gc_low_threshold,
                         container_log_max_bytes=memory_bytes(args.container_log_max_size),
                         container_log_max_files=max(1, args.container_log_max_files))


async def serve(args: argparse.Namespace) -> int:
    from pkube.runtime.runtime import Runtime
    config = config_from(args)
    client_config = replace(load_kubeconfig(args.kubeconfig, args.context), user_agent=USER_AGENT)
    task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    async with AsyncApiClient(client_config) as client:
        kubelet = Kubelet(config, client, Runtime(config.runtime_root))
        try:
            await kubelet.run()
        except asyncio.CancelledError:
            return 0
    return 0


def main(argv=None) -> int:
    args = parse_args(argv)
    if not args.verbose:   # one line per probe request otherwise
        logging.getLogger("httpx").setLevel(logging.WARNING)
    return run_main("kubelet", args.verbose, lambda: serve(args))


if __name__ == "__main__":
    sys.exit(main())
