"""kube-apiserver's requestheader authenticator: a front proxy names the user in headers.

The proxy (an aggregating apiserver in front of an extension, or an authenticating proxy in
front of this apiserver) proves what it is with a client certificate of the requestheader CA
(``--requestheader-client-ca-file``) whose CN is in ``--requestheader-allowed-names`` (any CN
when the list is empty). Then the user is the first non-empty value of the username headers,
its UID the first non-empty value of the UID headers, its groups every non-empty value of the
group headers, and its extra every header starting with an extra prefix (case-insensitively):
the key is the rest of the header's name, lower-cased and URL-unescaped (kept as sent when it
does not unescape), the values all the values of such headers. A request without a username
header is left to the next authenticator, as is a certificate of another CA; a certificate of
the requestheader CA whose CN is not allowed fails authentication unless another credential
succeeds (``headerrequest`` and ``x509request`` of k8s.io/apiserver).

The apiserver's TLS layer trusts the client CA and the requestheader CA together, so that
each certificate reaches its authenticator; each authenticator then checks the issuer itself
(`issued_by`), so a front-proxy certificate never passes for a user and a cluster client
certificate never makes the headers count.
"""

from __future__ import annotations

import argparse
import re
import ssl
import urllib.parse
from dataclasses import dataclass
from typing import Iterable, Optional, Sequence

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from pkube.apiserver.auth.user import UserInfo

_MEMO_KEY = "pkube.requestheader"      # the per-connection verdict in the TLS extension dict
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
ALLOWED, NOT_ALLOWED = "allowed", "not-allowed"


@dataclass(frozen=True)
class RequestHeaderConfig:
    """The requestheader flags: the CA file, allowed proxy names and the header names."""

    client_ca_file: str
    allowed_names: tuple[str, ...] = ()
    username_headers: tuple[str, ...] = ()
    uid_headers: tuple[str, ...] = ()
    group_headers: tuple[str, ...] = ()
    extra_prefixes: tuple[str, ...] = ()


def add_flags(parser: argparse.ArgumentParser) -> None:
    """kube-apiserver's --requestheader-* flags (each repeatable and comma-separated)."""
    parser.add_argument("--requestheader-client-ca-file",
                        help="trust the user named in the request headers when the client certificate is "
                             "signed by this CA (a front proxy)")
    for flag, what in (("allowed-names", "the CNs allowed to be a front proxy (empty: any)"),
                       ("username-headers", "headers naming the user, first non-empty wins (X-Remote-User)"),
                       ("uid-headers", "headers naming the user's UID, first non-empty wins"),
                       ("group-headers", "headers naming the user's groups (X-Remote-Group)"),
                       ("extra-headers-prefix", "prefixes of headers carrying user extras (X-Remote-Extra-)")):
        parser.add_argument(f"--requestheader-{flag}", action="append", default=[], help=what)


def string_slice(values: Sequence[str], flag: str, names: bool = False) -> tuple[str, ...]:
    """A pflag string slice: every comma-separated item of every use, trimmed. An empty header
    name is refused with one line (SystemExit); empty names are dropped (`names` True)."""
    items = [item.strip() for value in values for item in value.split(",")]
    if names:
        return tuple(item for item in items if item)
    if any(not item for item in items):
        raise SystemExit(f"apiserver: --requestheader-{flag}: empty header name in {','.join(values)!r}")
    return tuple(items)


def from_args(args: argparse.Namespace) -> Optional[RequestHeaderConfig]:
    """The config the flags give; None without --requestheader-client-ca-file."""
    if not args.requestheader_client_ca_file:
        return None
    return RequestHeaderConfig(
        args.requestheader_client_ca_file,
        string_slice(args.requestheader_allowed_names, "allowed-names", names=True),
        string_slice(args.requestheader_username_headers, "username-headers"),
        string_slice(args.requestheader_uid_headers, "uid-headers"),
        string_slice(args.requestheader_group_headers, "group-headers"),
        string_slice(args.requestheader_extra_headers_prefix, "extra-headers-prefix"))


def load_ca_file(path: str) -> list[x509.Certificate]:
    """The certificates of a PEM bundle; one line and exit when it is unreadable or empty."""
    try:
        with open(path, "rb") as handle:
            certs = x509.load_pem_x509_certificates(handle.read())
    except OSError as err:
        raise SystemExit(f"apiserver: cannot read {path}: {err.strerror}") from None
    except ValueError:
        raise SystemExit(f"apiserver: {path}: no PEM certificate") from None
    return certs


def issued_by(cert: x509.Certificate, cas: Iterable[x509.Certificate]) -> bool:
    """True when one of `cas` signed `cert` directly and its extended key usage (if any)
    allows client authentication."""
    try:
        usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        if ExtendedKeyUsageOID.CLIENT_AUTH not in usages and ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE not in usages:
            return False
    except x509.ExtensionNotFound:
        pass
    for ca in cas:
        try:
            cert.verify_directly_issued_by(ca)
            return True
        except Exception:   # noqa: BLE001 - InvalidSignature, ValueError, TypeError: not this CA's
            continue
    return False


def peer_certificate(tls: dict) -> Optional[x509.Certificate]:
    """The connection's verified client certificate (apiserver.tlsscope), parsed; None without one."""
    chain = tls.get("client_cert_chain") or []
    return x509.load_pem_x509_certificate(chain[0].encode()) if chain else None


def common_name(cert: x509.Certificate) -> str:
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else ""


def proxy_verdict(cert: x509.Certificate, cas: Sequence[x509.Certificate], allowed: Sequence[str]) -> Optional[str]:
    """ALLOWED for a certificate of `cas` whose CN is allowed (any CN when `allowed` is
    empty), NOT_ALLOWED for one of `cas` with another CN, None for a certificate of another CA."""
    if not issued_by(cert, cas):
        return None
    return ALLOWED if not allowed or common_name(cert) in allowed else NOT_ALLOWED


def user_from_headers(headers: Sequence[tuple[str, str]], config: RequestHeaderConfig) -> Optional[UserInfo]:
    """The user the headers (name, value pairs, any case) name; None without a username."""
    values: dict[str, list[str]] = {}
    for name, value in headers:
        values.setdefault(name.lower(), []).append(value)
    name = _first(values, config.username_headers)
    if not name:
        return None
    groups = tuple(v for header in config.group_headers for v in values.get(header.lower(), ()) if v)
    return UserInfo(name, _first(values, config.uid_headers), groups, extra_of(values, config.extra_prefixes))


def _first(values: dict[str, list[str]], headers: Sequence[str]) -> str:
    """The first value of the first of `headers` that has a non-empty one."""
    for header in headers:
        found = values.get(header.lower())
        if found and found[0]:
            return found[0]
    return ""


def extra_of(values: dict[str, list[str]], prefixes: Sequence[str]) -> dict[str, list[str]]:
    """User extras from the headers (lower-cased name -> values) starting with a prefix."""
    extra: dict[str, list[str]] = {}
    for prefix in prefixes:
        lowered = prefix.lower()
        for name, found in values.items():
            if name.startswith(lowered):
                extra.setdefault(unescape_key(name[len(lowered):]), []).extend(found)
    return extra


def unescape_key(key: str) -> str:
    """Go's url.PathUnescape of an extra key; the key as sent when it has a bad escape."""
    return key if _BAD_ESCAPE.search(key) else urllib.parse.unquote(key)


class RequestHeaderAuthenticator:
    """The requestheader authenticator of one config and its CA certificates."""

    def __init__(self, config: RequestHeaderConfig, cas: Sequence[x509.Certificate]):
        self.config, self.cas = config, list(cas)

    @classmethod
    def from_config(cls, config: RequestHeaderConfig) -> "RequestHeaderAuthenticator":
        return cls(config, load_ca_file(config.client_ca_file))

    def verdict(self, scope, now: float) -> Optional[str]:
        """ALLOWED, NOT_ALLOWED (see `proxy_verdict`; also for an expired certificate) or None
        (no client certificate, or another CA's), worked out once per connection."""
        tls = (scope.get("extensions") or {}).get("tls")
        if not tls or not tls.get("client_cert_chain"):
            return None
        memo = tls.get(_MEMO_KEY)
        if memo is None:
            cert = peer_certificate(tls)
            memo = tls[_MEMO_KEY] = (proxy_verdict(cert, self.cas, self.config.allowed_names),
                                     cert.not_valid_after_utc.timestamp())
        verdict, not_after = memo
        return NOT_ALLOWED if verdict == ALLOWED and now >= not_after else verdict

    def user(self, request) -> Optional[UserInfo]:
        """The user a request from an allowed proxy names (None: no username header)."""
        return user_from_headers(list(request.headers.items()), self.config)


def trust_both(context: ssl.SSLContext, extra_ca_file: Optional[str]) -> None:
    """Add `extra_ca_file` to the CAs a server's TLS context accepts client certificates of."""
    if extra_ca_file:
        context.load_verify_locations(cafile=extra_ca_file)
