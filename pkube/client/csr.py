"""A node's own client certificate through a CertificateSigningRequest (what ``pkube join``
does with a bootstrap token, and what a kubelet renewing its certificate does with its own).

``request_node_certificate(client, node)`` makes a key (EC P-256) and a CSR for
``CN=system:node:<node>, O=system:nodes``, creates it for the signer
``kubernetes.io/kube-apiserver-client-kubelet`` with usages {digital signature, client auth},
and waits until the controller-manager's approver and signer have answered: it returns the
PEM certificate and key, or raises CertificateRefused (Denied or Failed) or TimeoutError.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
from typing import Optional

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from pkube.client.aio import AsyncApiClient
from pkube.client.kubeconfig import ClientConfig
from pkube.client.resources import CERTIFICATESIGNINGREQUESTS

KUBELET_CLIENT_SIGNER = "kubernetes.io/kube-apiserver-client-kubelet"
KUBELET_SERVING_SIGNER = "kubernetes.io/kubelet-serving"
NODE_USAGES = ["digital signature", "client auth"]
SERVING_USAGES = ["digital signature", "server auth"]


class CertificateRefused(RuntimeError):
    """The CSR was denied or its signer failed it (the message says which and why)."""


def node_csr(node: str, key, dns_names=(), ips=()) -> bytes:
    """The PEM request of ``system:node:<node>`` in ``system:nodes`` for ``key`` (with these
    subjectAltNames, for a serving certificate)."""
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:nodes"),
                         x509.NameAttribute(NameOID.COMMON_NAME, f"system:node:{node}")])
    builder = x509.CertificateSigningRequestBuilder().subject_name(subject)
    sans = [x509.DNSName(d) for d in dns_names] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def csr_object(request_pem: bytes, signer: str = KUBELET_CLIENT_SIGNER, usages=tuple(NODE_USAGES),
               generate_name: str = "node-csr-") -> dict:
    return {"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
            "metadata": {"generateName": generate_name},
            "spec": {"request": base64.b64encode(request_pem).decode(), "signerName": signer,
                     "usages": list(usages)}}


def answer_of(csr: dict) -> Optional[bytes]:
    """The PEM certificate of a signed CSR; None while it waits; CertificateRefused when it
    was denied or failed."""
    status = csr.get("status") or {}
    for condition in status.get("conditions") or []:
        if condition.get("type") in ("Denied", "Failed") and condition.get("status", "True") == "True":
            raise CertificateRefused(f"certificatesigningrequest {csr['metadata']['name']} "
                                     f"{condition['type'].lower()}: {condition.get('message') or condition.get('reason')}")
    certificate = status.get("certificate")
    return base64.b64decode(certificate) if certificate else None


async def request_node_certificate(client, node: str, timeout: float = 300.0,
                                   poll: float = 0.5) -> tuple[bytes, bytes]:
    """(certificate PEM, private key PEM) of a new client certificate for ``node``; see the
    module docstring. ``client`` is an AsyncApiClient authenticated as the requester."""
    key = ec.generate_private_key(ec.SECP256R1())
    return await _answered(client, csr_object(node_csr(node, key)), key, timeout, poll)


async def request_serving_certificate(client, node: str, dns_names, ips, timeout: float = 300.0,
                                      poll: float = 0.5) -> tuple[bytes, bytes]:
    """(certificate PEM, private key PEM) of a kubelet serving certificate for ``node`` covering
    ``dns_names`` and ``ips``, requested as the node itself (``client`` authenticated as
    system:node:<node>, which the approver requires); raises as request_node_certificate."""
    key = ec.generate_private_key(ec.SECP256R1())
    body = csr_object(node_csr(node, key, dns_names, ips), KUBELET_SERVING_SIGNER, SERVING_USAGES, "csr-")
    return await _answered(client, body, key, timeout, poll)


async def _answered(client, body: dict, key, timeout: float, poll: float) -> tuple[bytes, bytes]:
    """Create CSR `body` (made for `key`) and wait for its certificate; (cert PEM, key PEM)."""
    created = await client.create(CERTIFICATESIGNINGREQUESTS, body)
    name = created["metadata"]["name"]
    async with asyncio.timeout(timeout):
        csr = created
        while (certificate := answer_of(csr)) is None:
            await asyncio.sleep(poll)
            csr = await client.get(CERTIFICATESIGNINGREQUESTS, name)
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return certificate, key_pem


def bootstrap_node_certificate(server: str, ca_pem: str, token: str, node: str,
                               timeout: float = 300.0) -> tuple[bytes, bytes]:
    """``request_node_certificate`` with a bootstrap token, from synchronous code (pkube join):
    ``server`` the apiserver's URL, ``ca_pem`` the cluster CA that must have signed its
    serving certificate."""
    async def run() -> tuple[bytes, bytes]:
        async with AsyncApiClient(ClientConfig(server, ca=ca_pem, token=token)) as client:
            return await request_node_certificate(client, node, timeout)
    return asyncio.run(run())
