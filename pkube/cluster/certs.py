"""A local cluster's certificates and kubeconfigs: what `pkube up` makes before it starts
anything, and what `pkube certs check-expiration|renew` show and re-issue.

DIR/pki holds the CA, the front-proxy CA and the certificates (cluster.pki); each component gets its own
kubeconfig in DIR carrying the CA and its own client certificate (embedded), never the
admin's: admin.kubeconfig, scheduler.kubeconfig, controller-manager.kubeconfig,
kubelet.kubeconfig and proxy.kubeconfig.
"""

from __future__ import annotations

import base64
import datetime
from pathlib import Path
from typing import Optional

import yaml

from pkube.cluster import pki
from pkube.cluster.kubeconfig import admin_kubeconfig, write_private

KUBECONFIGS = {
    pki.ADMIN: "admin.kubeconfig",
    pki.SCHEDULER: "scheduler.kubeconfig",
    pki.CONTROLLER_MANAGER: "controller-manager.kubeconfig",
    pki.KUBELET_CLIENT: "kubelet.kubeconfig",
    pki.PROXY: "proxy.kubeconfig",
}
COMPONENT_CERT = {"scheduler": pki.SCHEDULER, "controllers": pki.CONTROLLER_MANAGER,
                  "kubelet": pki.KUBELET_CLIENT, "proxy": pki.PROXY, "admin": pki.ADMIN}
RESTART_HINT = ("the components read their certificates at start: restart the cluster "
                "(pkube down, then pkube up) to use the renewed ones")


def pki_dir(data_dir: Path) -> Path:
    return data_dir / "pki"


def kubeconfig_path(data_dir: Path, component: str) -> Path:
    """DIR/<component>.kubeconfig of a component name (scheduler, controllers, kubelet, proxy,
    admin)."""
    return data_dir / KUBECONFIGS[COMPONENT_CERT[component]]


def prepare(data_dir: Path, server: str, node_name: str,
            listen_addresses: tuple[str, ...] = ("127.0.0.1",), node_ips: tuple[str, ...] = ()) -> list[str]:
    """Make the CAs (cluster and front-proxy) and every certificate the cluster needs (those
    missing, changed or within 30 days of expiry are issued again), then write each component's kubeconfig for
    `server`. `node_ips`: more addresses of this machine (the apiserver's and the kubelet's
    certificates cover them). Returns the names of the certificates issued. Raises
    pki.PKIError, OSError."""
    directory = pki_dir(data_dir)
    specs = pki.cluster_certificates(node_name, listen_addresses, node_ips=node_ips)
    issued = pki.ensure_certificates(directory, specs)
    issued += pki.ensure_certificates(directory, pki.front_proxy_certificates(),
                                      ca_common_name=pki.FRONT_PROXY_CA, ca_name=pki.FRONT_PROXY_CA)
    for name in KUBECONFIGS:
        write_kubeconfig(data_dir, name, server)
    return issued


def write_kubeconfig(data_dir: Path, name: str, server: str) -> Path:
    """DIR/<kubeconfig of certificate `name`> for `server`, with the CA and that certificate."""
    directory = pki_dir(data_dir)
    ca = (directory / "ca.crt").read_bytes()
    config = admin_kubeconfig(server, ca_data=base64.b64encode(ca).decode(),
                              client_cert=(directory / f"{name}.crt").read_bytes(),
                              client_key=(directory / f"{name}.key").read_bytes())
    path = data_dir / KUBECONFIGS[name]
    write_private(path, config)
    return path


def renew(data_dir: Path, which: str) -> list[str]:
    """Re-issue `which` ("all" or a certificate's name) with the CA that issued it, and rewrite the
    kubeconfigs that carry a renewed certificate. Returns the names renewed. Raises
    pki.PKIError (no CA, unknown name)."""
    directory = pki_dir(data_dir)
    names = pki.certificate_names(directory) if which == "all" else [which]
    if not (directory / "ca.crt").exists():
        raise pki.PKIError(f"no cluster CA in {directory}: start the cluster once with pkube up")
    renewed = pki.renew(directory, names)
    for name in renewed:
        server = _kubeconfig_server(data_dir, name)
        if server is not None:
            write_kubeconfig(data_dir, name, server)
    return renewed


def _kubeconfig_server(data_dir: Path, name: str) -> Optional[str]:
    """The server of certificate `name`'s existing kubeconfig, or None (no kubeconfig)."""
    if name not in KUBECONFIGS:
        return None
    try:
        doc = yaml.safe_load((data_dir / KUBECONFIGS[name]).read_text()) or {}
        return doc["clusters"][0]["cluster"]["server"]
    except (OSError, yaml.YAMLError, KeyError, IndexError, TypeError):
        return None


def expiration_table(data_dir: Path, now: Optional[datetime.datetime] = None) -> str:
    """kubeadm's `certs check-expiration` table: each certificate, its expiry, the time left
    and its CA; then the CAs themselves. Raises pki.PKIError."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    rows, cas = pki.expirations(pki_dir(data_dir))
    certs = [(r.name, _date(r.not_after), residual(r.not_after - now), r.authority or "(other)") for r in rows]
    lines = _table(("CERTIFICATE", "EXPIRES", "RESIDUAL TIME", "CERTIFICATE AUTHORITY"), certs)
    lines += [""] + _table(("CERTIFICATE AUTHORITY", "EXPIRES", "RESIDUAL TIME"),
                           [(ca.name, _date(ca.not_after), residual(ca.not_after - now)) for ca in cas])
    return "\n".join(lines)


def _date(when: datetime.datetime) -> str:
    return when.strftime("%b %d, %Y %H:%M UTC")


def residual(left: datetime.timedelta) -> str:
    """kubeadm's residual time: `364d`, `9y`, `5h`, `<invalid>` once expired."""
    seconds = left.total_seconds()
    if seconds <= 0:
        return "<invalid>"
    days = int(seconds // 86400)
    if days >= 365 * 2:
        return f"{days // 365}y"
    if days >= 1:
        return f"{days}d"
    hours = int(seconds // 3600)
    return f"{hours}h" if hours else f"{int(seconds // 60)}m"


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(str(x)) for x in column) for column in zip(header, *rows)]
    return ["   ".join(str(x).ljust(w) for x, w in zip(row, widths)).rstrip() for row in (header, *rows)]
