"""Table columns of CertificateSigningRequests, as kubectl prints them (Kubernetes'
printers.go: NAME, AGE, SIGNERNAME, REQUESTOR, REQUESTEDDURATION, CONDITION). Imported at the
end of ``apiserver.tables``; registers itself in its ``PRINTERS``."""

from __future__ import annotations

import datetime

from pkube.apiserver import tables
from pkube.apiserver.tables import AGE, NAME, NONE, Column, _meta, age_since, human_duration

CSR_COLUMNS = (
    NAME,
    AGE,
    Column("SignerName", description="signerName indicates the requested signer, and is a qualified name."),
    Column("Requestor", description="username contains the name of the user that created the "
                                    "CertificateSigningRequest."),
    Column("RequestedDuration", description="expirationSeconds is the requested duration of validity of the "
                                            "issued certificate."),
    Column("Condition", description="conditions applied to the request. Known conditions are \"Approved\", "
                                    "\"Denied\", and \"Failed\"."),
)


def condition_text(csr: dict) -> str:
    """kubectl's CONDITION: Denied, Approved or Pending, then ",Failed" and ",Issued"."""
    status = csr.get("status") or {}
    kinds = {c.get("type") for c in status.get("conditions") or [] if isinstance(c, dict)}
    text = "Denied" if "Denied" in kinds else "Approved" if "Approved" in kinds else "Pending"
    if "Failed" in kinds:
        text += ",Failed"
    if status.get("certificate"):
        text += ",Issued"
    return text


def _csr_cells(obj: dict, now: datetime.datetime) -> list:
    spec = obj.get("spec") or {}
    seconds = spec.get("expirationSeconds")
    return [_meta(obj).get("name", ""), age_since(_meta(obj).get("creationTimestamp"), now),
            spec.get("signerName") or NONE, spec.get("username", ""),
            human_duration(seconds) if isinstance(seconds, int) else NONE, condition_text(obj)]


tables.PRINTERS["certificatesigningrequests"] = (CSR_COLUMNS, _csr_cells)
