"""The signer's rules per signer name, the approver's recognition of node client requests and
kubectl's CONDITION column: pure tables, no apiserver."""

from __future__ import annotations

import base64
import ipaddress

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from pkube.apiserver.tables_certificates import condition_text
from pkube.controllers.certificates import KUBE_APISERVER_CLIENT, KUBELET_CLIENT, KUBELET_SERVING, signer_problem
from pkube.controllers.csrapproving import approval_message

KEY = ec.generate_private_key(ec.SECP256R1())


def request(cn: str, orgs=("system:nodes",), dns=(), ips=()) -> x509.CertificateSigningRequest:
    names = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs] + [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(names))
    sans = [x509.DNSName(d) for d in dns] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(KEY, hashes.SHA256())


NODE = request("system:node:n1")
CLIENT = ["digital signature", "client auth"]
SERVING = ["digital signature", "server auth"]
SERVING_N1 = request("system:node:n1", dns=("n1",), ips=("10.0.0.1",))


@pytest.mark.parametrize("signer, req, usages, refused", [
    (KUBE_APISERVER_CLIENT, request("alice", ()), ["client auth"], False),
    (KUBE_APISERVER_CLIENT, request("alice", ()), ["client auth", "server auth"], True),
    (KUBE_APISERVER_CLIENT, request("alice", ()), ["digital signature"], True),
    (KUBELET_CLIENT, NODE, CLIENT, False),
    (KUBELET_CLIENT, NODE, CLIENT + ["key encipherment"], False),
    (KUBELET_CLIENT, NODE, ["client auth"], True),
    (KUBELET_CLIENT, request("system:node:n1", ("system:masters",)), CLIENT, True),
    (KUBELET_CLIENT, request("alice"), CLIENT, True),
    (KUBELET_CLIENT, request("system:node:n1", dns=("n1",)), CLIENT, True),
    (KUBELET_SERVING, request("system:node:n1", dns=("n1",), ips=("10.0.0.1",)), SERVING, False),
    (KUBELET_SERVING, NODE, SERVING, True),
    (KUBELET_SERVING, request("system:node:n1", dns=("n1",)), CLIENT, True),
])
def test_signer_rules(signer, req, usages, refused):
    assert bool(signer_problem(signer, req, usages)) is refused


def csr(req: x509.CertificateSigningRequest, username: str, groups: list[str], usages=CLIENT,
        signer=KUBELET_CLIENT) -> dict:
    pem = req.public_bytes(serialization.Encoding.PEM)
    return {"spec": {"request": base64.b64encode(pem).decode(), "signerName": signer,
                     "username": username, "groups": groups, "usages": usages}}


@pytest.mark.parametrize("obj, approved", [
    (csr(NODE, "system:bootstrap:abcdef", ["system:bootstrappers", "system:authenticated"]), "kubelet client"),
    (csr(NODE, "system:node:n1", ["system:nodes", "system:authenticated"]), "self kubelet client"),
    (csr(NODE, "system:node:n2", ["system:nodes", "system:authenticated"]), ""),
    (csr(NODE, "alice", ["system:authenticated"]), ""),
    (csr(NODE, "system:bootstrap:abcdef", ["system:bootstrappers"], ["client auth", "server auth"]), ""),
    (csr(SERVING_N1, "system:node:n1", ["system:nodes"], SERVING, KUBELET_SERVING), "self kubelet serving"),
    (csr(SERVING_N1, "system:node:n2", ["system:nodes"], SERVING, KUBELET_SERVING), ""),
    (csr(SERVING_N1, "system:bootstrap:abcdef", ["system:bootstrappers"], SERVING, KUBELET_SERVING), ""),
    (csr(NODE, "system:node:n1", ["system:nodes"], SERVING, KUBELET_SERVING), ""),
])
def test_the_approver_recognises_node_client_and_self_serving_requests(obj, approved):
    message = approval_message(obj)
    assert (approved in message and bool(message)) if approved else message == ""


@pytest.mark.parametrize("status, text", [
    ({}, "Pending"),
    ({"conditions": [{"type": "Approved"}]}, "Approved"),
    ({"conditions": [{"type": "Approved"}], "certificate": "Y2VydA=="}, "Approved,Issued"),
    ({"conditions": [{"type": "Approved"}, {"type": "Failed"}]}, "Approved,Failed"),
    ({"conditions": [{"type": "Denied"}]}, "Denied"),
])
def test_the_condition_column(status, text):
    assert condition_text({"status": status}) == text
