"""CertificateSigningRequests (certificates.k8s.io/v1) in the apiserver: an admission plugin
doing what Kubernetes' CSR strategy and validation do.

- create: ``spec.username``/``uid``/``groups``/``extra`` are the caller's (client values are
  ignored; without authentication the client's stay); the status is cleared; the request must be
  a PEM ``CERTIFICATE REQUEST`` whose signature verifies, ``signerName`` a qualified name,
  ``usages`` known ones without repeats, ``expirationSeconds`` at least 600.
- update of the main resource: the spec cannot change (the stored one is kept).
- ``/status``: the Approved and Denied conditions are kept as stored (only ``/approval``
  changes them); the certificate, once set, cannot change.
- ``/approval``: only the conditions change (the certificate is kept as stored).
- Approved and Denied exclude each other, and neither can be removed once set.
"""

from __future__ import annotations

import re
from typing import Optional

from cryptography import x509

from pkube.apiserver import errors
from pkube.apiserver.admission import CREATE, UPDATE, AdmissionRequest

KIND = "CertificateSigningRequest"
APPROVAL_TYPES = ("Approved", "Denied")
KNOWN_USAGES = frozenset((
    "signing", "digital signature", "content commitment", "key encipherment", "key agreement",
    "data encipherment", "cert sign", "crl sign", "encipher only", "decipher only", "any",
    "server auth", "client auth", "code signing", "email protection", "s/mime", "ipsec end system",
    "ipsec tunnel", "ipsec user", "timestamping", "ocsp signing", "microsoft sgc", "netscape sgc"))
SIGNER_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)+/[^/]+$")
MIN_EXPIRATION = 600


def _invalid(name: str, field: str, message: str, reason: str = "FieldValueInvalid") -> errors.ApiError:
    return errors.ApiError(422, "Invalid", f'{KIND}.certificates.k8s.io "{name}" is invalid: {field}: {message}',
                           {"name": name, "group": "certificates.k8s.io", "kind": KIND,
                            "causes": [{"reason": reason, "field": field, "message": message}]})


def parse_request(pem) -> x509.CertificateSigningRequest:
    """The CSR of ``spec.request`` (PEM; base64 on the wire, decoded by the caller);
    ValueError with the reason otherwise."""
    if not isinstance(pem, (bytes, str)):
        raise ValueError("PEM block type must be CERTIFICATE REQUEST")
    data = pem.encode() if isinstance(pem, str) else pem
    if b"-----BEGIN CERTIFICATE REQUEST-----" not in data:
        raise ValueError("PEM block type must be CERTIFICATE REQUEST")
    csr = x509.load_pem_x509_csr(data)
    if not csr.is_signature_valid:
        raise ValueError("x509: invalid signature on certificate request")
    return csr


def decoded(value) -> bytes:
    """``spec.request`` / ``status.certificate`` as bytes (base64 on the wire)."""
    import base64
    import binascii
    try:
        return base64.b64decode(value or "", validate=True)
    except (binascii.Error, ValueError, TypeError):
        return b""


def conditions(csr: dict) -> list[dict]:
    return [c for c in ((csr.get("status") or {}).get("conditions") or []) if isinstance(c, dict)]


def has_condition(csr: dict, kind: str) -> bool:
    return any(c.get("type") == kind and c.get("status", "True") == "True" for c in conditions(csr))


class CertificateSigningRequests:
    """The admission plugin (no cache: it only looks at the request)."""

    name = "CertificateSigningRequest"

    def mutate(self, request: AdmissionRequest) -> None:
        if request.kind != KIND or request.obj is None:
            return
        csr, old = request.obj, request.old
        if request.operation == CREATE:
            self._stamp_requester(csr, request)
            csr.pop("status", None)
        elif request.operation == UPDATE and old is not None:
            csr["spec"] = old.get("spec")
            if request.subresource == "status":
                _keep_approval_conditions(csr, old)
            elif request.subresource == "approval":
                _keep_certificate(csr, old)

    @staticmethod
    def _stamp_requester(csr: dict, request: AdmissionRequest) -> None:
        spec = csr.setdefault("spec", {})
        if request.user is None:
            return
        for field in ("username", "uid", "groups", "extra"):
            spec.pop(field, None)
        spec["username"] = request.user.name
        if request.user.uid:
            spec["uid"] = request.user.uid
        if request.user.groups:
            spec["groups"] = list(request.user.groups)
        if request.user.extra:
            spec["extra"] = {k: list(v) for k, v in request.user.extra.items()}

    def validate(self, request: AdmissionRequest) -> None:
        if request.kind != KIND or request.obj is None:
            return
        name = (request.obj.get("metadata") or {}).get("name", "")
        if request.operation == CREATE:
            validate_spec(name, request.obj.get("spec") or {})
        elif request.operation == UPDATE and request.old is not None:
            validate_status_change(name, request.obj, request.old)


def validate_spec(name: str, spec: dict) -> None:
    """422 for a bad request, signer name, usages or expiration."""
    raw = spec.get("request")
    if not raw:
        raise _invalid(name, "spec.request", "Required value", "FieldValueRequired")
    try:
        parse_request(decoded(raw))
    except ValueError as err:
        raise _invalid(name, "spec.request", f"Invalid value: []byte{{...}}: {err}") from None
    signer = spec.get("signerName")
    if not signer:
        raise _invalid(name, "spec.signerName", "Required value", "FieldValueRequired")
    if not isinstance(signer, str) or not SIGNER_NAME.match(signer):
        raise _invalid(name, "spec.signerName", f'Invalid value: "{signer}": must be a fully qualified domain '
                       "and path of the form 'example.com/signer-name'")
    usages = spec.get("usages")
    if not usages:
        raise _invalid(name, "spec.usages", "Required value", "FieldValueRequired")
    for index, usage in enumerate(usages):
        if usage not in KNOWN_USAGES:
            raise _invalid(name, f"spec.usages[{index}]", f'Unsupported value: "{usage}"', "FieldValueNotSupported")
        if usage in usages[:index]:
            raise _invalid(name, f"spec.usages[{index}]", f'Duplicate value: "{usage}"', "FieldValueDuplicate")
    seconds = spec.get("expirationSeconds")
    if seconds is not None and (not isinstance(seconds, int) or seconds < MIN_EXPIRATION):
        raise _invalid(name, "spec.expirationSeconds", f"Invalid value: {seconds}: may not specify a duration "
                       "less than 600 seconds (10 minutes)")


def validate_status_change(name: str, new: dict, old: dict) -> None:
    """422 when Approved and Denied are both set, one is removed, or the certificate changes
    once set or is not PEM certificates."""
    if has_condition(new, "Approved") and has_condition(new, "Denied"):
        raise _invalid(name, "status.conditions", "Invalid value: Approved and Denied conditions are "
                       "mutually exclusive")
    for kind in APPROVAL_TYPES:
        if has_condition(old, kind) and not has_condition(new, kind):
            raise _invalid(name, "status.conditions", f"Forbidden: updates may not remove a condition of type "
                           f'"{kind}"', "FieldValueForbidden")
    old_cert = (old.get("status") or {}).get("certificate")
    new_cert = (new.get("status") or {}).get("certificate")
    if old_cert and new_cert != old_cert:
        raise _invalid(name, "status.certificate", "Forbidden: updates may not modify existing certificate "
                       "content", "FieldValueForbidden")
    if new_cert and not old_cert:
        try:
            x509.load_pem_x509_certificates(decoded(new_cert))
        except ValueError:
            raise _invalid(name, "status.certificate", "Invalid value: \"<certificate data>\": must contain at "
                           "least one CERTIFICATE PEM block") from None


def _keep_approval_conditions(csr: dict, old: dict) -> None:
    """A /status write: Approved and Denied conditions stay as stored."""
    status = csr.setdefault("status", {}) if isinstance(csr.get("status"), dict) or csr.get("status") is None else {}
    others = [c for c in conditions(csr) if c.get("type") not in APPROVAL_TYPES]
    status["conditions"] = [c for c in conditions(old) if c.get("type") in APPROVAL_TYPES] + others
    if not status["conditions"]:
        status.pop("conditions")


def _keep_certificate(csr: dict, old: dict) -> None:
    """An /approval write: the certificate stays as stored."""
    status = csr.setdefault("status", {})
    certificate: Optional[str] = (old.get("status") or {}).get("certificate")
    if certificate:
        status["certificate"] = certificate
    else:
        status.pop("certificate", None)
