"""The files the kubelet writes for a pod's containers: /etc/hosts (with hostAliases, and
the pod's hostname/subdomain FQDN) and /etc/resolv.conf (by dnsPolicy and dnsConfig).
Pure functions of the pod; the pod worker writes them into the pod's directory and each
container gets them bind-mounted, as Kubernetes does."""

from __future__ import annotations

HOSTS_HEADER = "# Kubernetes-managed hosts file.\n"
DEFAULT_NDOTS = 5


def hosts_file(pod: dict, pod_ip: str, cluster_domain: str = "cluster.local") -> str:
    """/etc/hosts of a (non-hostNetwork) pod."""
    meta, spec = pod["metadata"], pod.get("spec") or {}
    hostname = spec.get("hostname") or meta["name"]
    lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback", "fe00::0\tip6-localnet",
             "fe00::0\tip6-mcastprefix", "fe00::1\tip6-allnodes", "fe00::2\tip6-allrouters"]
    if pod_ip:
        subdomain = spec.get("subdomain")
        if subdomain:
            namespace = meta.get("namespace") or "default"
            lines.append(f"{pod_ip}\t{hostname}.{subdomain}.{namespace}.svc.{cluster_domain}\t{hostname}")
        else:
            lines.append(f"{pod_ip}\t{hostname}")
    aliases = spec.get("hostAliases") or []
    if aliases:
        lines.append("\n# Entries added by HostAliases.")
        lines += [f"{a['ip']}\t" + "\t".join(a.get("hostnames") or []) for a in aliases if a.get("ip")]
    return HOSTS_HEADER + "\n".join(lines) + "\n"


def parse_resolv_conf(text: str) -> tuple[list[str], list[str], list[str]]:
    """(nameservers, search domains, options) of a resolv.conf."""
    servers, search, options = [], [], []
    for line in text.splitlines():
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        if words[0] == "nameserver" and len(words) > 1:
            servers.append(words[1])
        elif words[0] in ("search", "domain"):
            search = words[1:]
        elif words[0] == "options":
            options += words[1:]
    return servers, search, options


def resolv_conf(pod: dict, host_resolv: str, cluster_dns: list[str], cluster_domain: str = "cluster.local") -> str:
    """/etc/resolv.conf by the pod's dnsPolicy: ClusterFirst (the cluster DNS with Kubernetes'
    search path and ndots:5; the host's resolvers while the kubelet has no --cluster-dns, as
    Kubernetes does), Default (the host's), None (dnsConfig only); dnsConfig is merged in."""
    spec = pod.get("spec") or {}
    policy = spec.get("dnsPolicy") or "ClusterFirst"
    if policy == "ClusterFirstWithHostNet" or (policy == "ClusterFirst" and not spec.get("hostNetwork")):
        policy = "ClusterFirst"
    elif policy == "ClusterFirst":
        policy = "Default"
    host_servers, host_search, host_options = parse_resolv_conf(host_resolv)
    if policy == "ClusterFirst" and cluster_dns:
        namespace = pod["metadata"].get("namespace") or "default"
        servers = list(cluster_dns)
        search = [f"{namespace}.svc.{cluster_domain}", f"svc.{cluster_domain}", cluster_domain, *host_search]
        options = [f"ndots:{DEFAULT_NDOTS}"]
    elif policy == "None":
        servers, search, options = [], [], []
    else:
        servers, search, options = host_servers, host_search, host_options
    config = spec.get("dnsConfig") or {}
    servers += [s for s in config.get("nameservers") or [] if s not in servers]
    search += [s for s in config.get("searches") or [] if s not in search]
    options = _merge_options(options, config.get("options") or [])
    out = [f"nameserver {s}" for s in servers[:3]]
    if search:
        out.append("search " + " ".join(search[:32]))
    if options:
        out.append("options " + " ".join(options))
    return "\n".join(out) + "\n"


def _merge_options(options: list[str], extra: list[dict]) -> list[str]:
    merged = {o.split(":", 1)[0]: o for o in options}
    for item in extra:
        name = item.get("name")
        if name:
            merged[name] = f"{name}:{item['value']}" if item.get("value") is not None else name
    return list(merged.values())
