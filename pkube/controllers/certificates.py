"""The CertificateSigningRequest signer, as Kubernetes' csrsigning controller.

**The signer** (``csrsigning``) signs approved CSRs of the built-in signers on the cluster CA
(--cluster-signing-cert-file/--cluster-signing-key-file) and writes ``status.certificate``:

- ``kubernetes.io/kube-apiserver-client``: usages within {client auth, digital signature, key
  encipherment}, client auth among them;
- ``kubernetes.io/kube-apiserver-client-kubelet``: subject ``O=system:nodes``,
  ``CN=system:node:<name>``, no subject alternative names, usages {client auth, digital
  signature} (and key encipherment);
- ``kubernetes.io/kubelet-serving``: the same subject, at least one DNS name or IP address and
  no e-mail or URI, usages {server auth, digital signature} (and key encipherment).

A request its signer refuses gets the condition Failed (reason SignerValidationFailure). The
certificate lasts ``spec.expirationSeconds`` (at least 600 s) or a year (kube-controller-manager's
--cluster-signing-duration default), never past the CA, and is backdated 5 minutes against clock skew.

The approver is pkube/controllers/csrapproving.py.
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import logging
from dataclasses import dataclass
from typing import Optional

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from pkube.client.errors import Conflict, NotFound
from pkube.client.resources import CERTIFICATESIGNINGREQUESTS
from pkube.client.timefmt import rfc3339
from pkube.controllers.base import Controller, ControllerContext

log = logging.getLogger(__name__)

KUBE_APISERVER_CLIENT = "kubernetes.io/kube-apiserver-client"
KUBELET_CLIENT = "kubernetes.io/kube-apiserver-client-kubelet"
KUBELET_SERVING = "kubernetes.io/kubelet-serving"
NODES_GROUP = "system:nodes"
NODE_PREFIX = "system:node:"
BOOTSTRAPPERS = "system:bootstrappers"
DEFAULT_DURATION = 365 * 24 * 3600.0
BACKDATE = datetime.timedelta(minutes=5)
CLIENT_USAGES = frozenset({"client auth", "digital signature", "key encipherment"})
KUBELET_CLIENT_USAGES = (frozenset({"client auth", "digital signature"}),
                         frozenset({"client auth", "digital signature", "key encipherment"}))
KUBELET_SERVING_USAGES = (frozenset({"server auth", "digital signature"}),
                          frozenset({"server auth", "digital signature", "key encipherment"}))


def conditions(csr: dict) -> list[dict]:
    return list((csr.get("status") or {}).get("conditions") or [])


def has(csr: dict, kind: str) -> bool:
    return any(c.get("type") == kind and c.get("status", "True") == "True" for c in conditions(csr))


def parse(csr: dict) -> x509.CertificateSigningRequest:
    """The x509 request of a CSR object; ValueError when it is not one."""
    return x509.load_pem_x509_csr(base64.b64decode((csr.get("spec") or {}).get("request") or ""))


def _names(request: x509.CertificateSigningRequest) -> tuple[list[str], list[str], list[str], list[str]]:
    """(DNS names, IP addresses, e-mails, URIs) of the request's subjectAltName."""
    try:
        san = request.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return [], [], [], []
    return (san.get_values_for_type(x509.DNSName), [str(a) for a in san.get_values_for_type(x509.IPAddress)],
            san.get_values_for_type(x509.RFC822Name), san.get_values_for_type(x509.UniformResourceIdentifier))


def _node_subject_problem(request: x509.CertificateSigningRequest) -> str:
    organizations = [a.value for a in request.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]
    common = [a.value for a in request.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    if organizations != [NODES_GROUP]:
        return f"subject organization is not {NODES_GROUP}"
    if len(common) != 1 or not common[0].startswith(NODE_PREFIX) or common[0] == NODE_PREFIX:
        return f'subject common name does not begin with "{NODE_PREFIX}"'
    return ""


def signer_problem(signer: str, request: x509.CertificateSigningRequest, usages: list[str]) -> str:
    """Why ``signer`` refuses this request ("": it signs it)."""
    used = frozenset(usages)
    if signer == KUBE_APISERVER_CLIENT:
        if not used <= CLIENT_USAGES or "client auth" not in used:
            return f"invalid usage for client certificate: {sorted(used - CLIENT_USAGES) or 'no client auth'}"
        return ""
    problem = _node_subject_problem(request)
    if problem:
        return problem
    dns, ips, emails, uris = _names(request)
    if signer == KUBELET_CLIENT:
        if dns or ips or emails or uris:
            return "subjectAltNames are not allowed"
        return "" if used in KUBELET_CLIENT_USAGES else f"usages did not match {sorted(KUBELET_CLIENT_USAGES[0])}"
    if emails or uris:
        return "email and URI subjectAltNames are not allowed"
    if not dns and not ips:
        return "DNS or IP subjectAltName is required"
    return "" if used in KUBELET_SERVING_USAGES else f"usages did not match {sorted(KUBELET_SERVING_USAGES[0])}"


@dataclass
class ClusterCA:
    """The signing CA: its certificate and private key."""

    certificate: x509.Certificate
    key: object

    @classmethod
    def load(cls, cert_file: str, key_file: str) -> "ClusterCA":
        """Raises OSError or ValueError."""
        with open(cert_file, "rb") as f:
            certificate = x509.load_pem_x509_certificate(f.read())
        with open(key_file, "rb") as f:
            key = serialization.load_pem_private_key(f.read(), password=None)
        return cls(certificate, key)

    def sign(self, request: x509.CertificateSigningRequest, usages: list[str], seconds: float,
             now: datetime.datetime) -> bytes:
        """The PEM certificate for ``request``: its subject, public key and subjectAltNames."""
        not_after = min(now + datetime.timedelta(seconds=seconds), self.certificate.not_valid_after_utc)
        builder = (x509.CertificateBuilder().subject_name(request.subject).issuer_name(self.certificate.subject)
                   .public_key(request.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - BACKDATE).not_valid_after(not_after)
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                   .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                                  critical=False))
        if {"digital signature", "key encipherment"} & set(usages):      # an empty KeyUsage is invalid
            builder = builder.add_extension(_key_usage(usages), critical=True)
        extended = [oid for usage, oid in (("client auth", ExtendedKeyUsageOID.CLIENT_AUTH),
                                           ("server auth", ExtendedKeyUsageOID.SERVER_AUTH)) if usage in usages]
        if extended:
            builder = builder.add_extension(x509.ExtendedKeyUsage(extended), critical=False)
        dns, ips, _, _ = _names(request)
        if dns or ips:
            builder = builder.add_extension(x509.SubjectAlternativeName(
                [x509.DNSName(d) for d in dns] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]), critical=False)
        return builder.sign(self.key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def _key_usage(usages: list[str]) -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature="digital signature" in usages, content_commitment=False,
                         key_encipherment="key encipherment" in usages, data_encipherment=False,
                         key_agreement=False, key_cert_sign=False, crl_sign=False,
                         encipher_only=False, decipher_only=False)


def condition(kind: str, reason: str, message: str, now: str) -> dict:
    return {"type": kind, "status": "True", "reason": reason, "message": message,
            "lastUpdateTime": now, "lastTransitionTime": now}


class CSRSigner(Controller):
    """Signs approved CSRs of the built-in signers (see the module docstring)."""

    name = "csrsigning"
    SIGNERS = (KUBE_APISERVER_CLIENT, KUBELET_CLIENT, KUBELET_SERVING)

    def __init__(self, ctx: ControllerContext, ca: Optional[ClusterCA], duration: float = DEFAULT_DURATION,
                 workers: int = 2):
        super().__init__(ctx, workers)
        self.ca, self.duration = ca, duration
        self.csrs = ctx.informers.informer(CERTIFICATESIGNINGREQUESTS)
        if ca is not None:
            self.csrs.add_handlers(self.enqueue, lambda old, new: self.enqueue(new))

    def _wanted(self, csr: Optional[dict]) -> bool:
        return (csr is not None and (csr.get("spec") or {}).get("signerName") in self.SIGNERS
                and has(csr, "Approved") and not has(csr, "Denied") and not has(csr, "Failed")
                and not (csr.get("status") or {}).get("certificate"))

    async def reconcile(self, key: str) -> None:
        csr = self.csrs.store.get(key)
        if not self._wanted(csr):
            return
        spec = csr["spec"]
        now = self.clock.wall()
        try:
            request = parse(csr)
            problem = signer_problem(spec["signerName"], request, list(spec.get("usages") or []))
        except ValueError as err:
            problem = f"unable to parse csr: {err}"
        status = dict(csr.get("status") or {})
        if problem:
            status["conditions"] = conditions(csr) + [condition("Failed", "SignerValidationFailure", problem,
                                                                 rfc3339(now))]
        else:
            seconds = min(float(spec.get("expirationSeconds") or self.duration), self.duration)
            status["certificate"] = base64.b64encode(self.ca.sign(request, spec.get("usages") or [], seconds,
                                                                  now)).decode()
        await self._write_status(csr, status)

    async def _write_status(self, csr: dict, status: dict) -> None:
        body = {**csr, "status": status}
        try:
            await self.client.replace(CERTIFICATESIGNINGREQUESTS, body, subresource="status")
        except NotFound:
            pass                      # deleted meanwhile
        except Conflict:
            self.enqueue(csr)         # changed meanwhile: the update event brings it back anyway


def new_controller(ctx: ControllerContext) -> CSRSigner:
    cert, key = ctx.options.get("cluster_signing_cert_file"), ctx.options.get("cluster_signing_key_file")
    if not cert or not key:
        log.info("csrsigning: no --cluster-signing-cert-file/--cluster-signing-key-file, not signing")
        return CSRSigner(ctx, None)
    try:
        return CSRSigner(ctx, ClusterCA.load(cert, key))
    except (OSError, ValueError) as err:
        log.error("csrsigning: cannot load the cluster CA (%s, %s): %s; not signing", cert, key,
                  getattr(err, "strerror", None) or err)
        return CSRSigner(ctx, None)
