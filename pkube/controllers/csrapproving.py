"""The CertificateSigningRequest approver, as Kubernetes' csrapproving controller.

It approves ``kubernetes.io/kube-apiserver-client-kubelet`` requests for a node client
certificate (subject ``O=system:nodes``, ``CN=system:node:<name>``, no subjectAltNames, usages
{client auth, digital signature} and optionally key encipherment) made with a bootstrap token
(the requester is in ``system:bootstrappers``: nodeclient) or by the node itself
(``system:node:<name>`` in ``system:nodes`` renewing: selfnodeclient); and
``kubernetes.io/kubelet-serving`` requests a node makes for itself (the requester is the very
``system:node:<name>`` of the subject), which Kubernetes leaves to a person or an external
approver: pkube approves them so that `pkube join` gives the kubelet a serving certificate
the apiserver verifies (k3s's server hands its agents one the same way, on the node's own
credentials; the addresses a node claims are not checked). Kubernetes asks a
SubjectAccessReview for ``certificatesigningrequests/nodeclient`` (or ``selfnodeclient``)
first; we check the requester's group and name directly. Anything else is left for a person
(``kubectl certificate approve``). The signer (pkube/controllers/certificates.py) does the rest.
"""

from __future__ import annotations

from cryptography.x509.oid import NameOID

from pkube.client.errors import NotFound
from pkube.client.resources import CERTIFICATESIGNINGREQUESTS
from pkube.client.timefmt import rfc3339
from pkube.controllers.base import Controller, ControllerContext
from pkube.controllers.certificates import (
    BOOTSTRAPPERS, KUBELET_CLIENT, KUBELET_SERVING, NODES_GROUP, condition, conditions, has, parse, signer_problem,
)

APPROVED_SIGNERS = (KUBELET_CLIENT, KUBELET_SERVING)


class CSRApprover(Controller):
    """Approves node client certificates requested with a bootstrap token or by the node itself."""

    name = "csrapproving"

    def __init__(self, ctx: ControllerContext, workers: int = 1):
        super().__init__(ctx, workers)
        self.csrs = ctx.informers.informer(CERTIFICATESIGNINGREQUESTS)
        self.csrs.add_handlers(self.enqueue, lambda old, new: self.enqueue(new))

    async def reconcile(self, key: str) -> None:
        csr = self.csrs.store.get(key)
        if csr is None or (csr.get("spec") or {}).get("signerName") not in APPROVED_SIGNERS \
                or has(csr, "Approved") or has(csr, "Denied"):
            return
        message = approval_message(csr)
        if not message:
            return
        now = rfc3339(self.clock.wall())
        body = {**csr, "status": {**(csr.get("status") or {}),
                                  "conditions": conditions(csr) + [condition("Approved", "AutoApproved", message, now)]}}
        try:
            await self.client.replace(CERTIFICATESIGNINGREQUESTS, body, subresource="approval")
        except NotFound:
            pass


def approval_message(csr: dict) -> str:
    """The Approved message for a node client or self-serving CSR the approver recognises
    ("": not one)."""
    spec = csr.get("spec") or {}
    signer = spec.get("signerName") or KUBELET_CLIENT
    try:
        request = parse(csr)
    except ValueError:
        return ""
    if signer_problem(signer, request, list(spec.get("usages") or [])):
        return ""
    common = request.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    if spec.get("username") == common and NODES_GROUP in (spec.get("groups") or []):
        return ("Auto approving self kubelet serving certificate." if signer == KUBELET_SERVING
                else "Auto approving self kubelet client certificate after SubjectAccessReview.")
    if signer == KUBELET_SERVING:
        return ""
    if BOOTSTRAPPERS in (spec.get("groups") or []):
        return "Auto approving kubelet client certificate after SubjectAccessReview."
    return ""


def new_controller(ctx: ControllerContext) -> CSRApprover:
    return CSRApprover(ctx)
