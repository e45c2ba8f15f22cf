"""The TLS peer certificate in the ASGI scope.

uvicorn does not put what the TLS handshake learnt into the scope, and an ASGI app cannot
reach the transport. These protocol classes (uvicorn's own, given to ``uvicorn.Config`` as
``http=`` and ``ws=``) read the SSL object once per connection, right after the handshake, and
add ASGI's TLS extension to the scope of every request and WebSocket on that connection::

    scope["extensions"]["tls"] = {"client_cert_chain": [PEM] or [], "client_cert_name": "CN=...",
                                  "client_cert_error": None, "tls_version": ..., "cipher_suite": ...,
                                  "client_cert": getpeercert() dict or None}

``client_cert`` (not in the ASGI spec) is ``ssl.SSLSocket.getpeercert()``'s parsed subject and
validity, so identity needs no certificate parsing. A certificate is only there when the
server's SSL context verified it against its CA (``ssl_cert_reqs`` OPTIONAL or REQUIRED with
``ssl_ca_certs``): one that does not verify fails the handshake. The extension dict is shared by
the connection's requests, so a reader may memoise per-connection results in it.
"""

from __future__ import annotations

import ssl
from typing import Optional

from uvicorn.protocols.http.auto import AutoHTTPProtocol
from uvicorn.protocols.websockets.wsproto_impl import WSProtocol


def tls_extension(transport) -> Optional[dict]:
    """ASGI's TLS extension of a connection (None for plain TCP)."""
    ssl_object = transport.get_extra_info("ssl_object")
    if ssl_object is None:
        return None
    der = ssl_object.getpeercert(binary_form=True)
    peer = ssl_object.getpeercert() if der else None
    cipher = ssl_object.cipher()
    return {"server_cert": None, "client_cert_chain": [ssl.DER_cert_to_PEM_cert(der)] if der else [],
            "client_cert_name": _rfc4514(peer) if peer else None, "client_cert_error": None,
            "tls_version": ssl_object.version(), "cipher_suite": cipher[0] if cipher else None,
            "client_cert": peer}


def _rfc4514(peer: dict) -> str:
    return ",".join("+".join(f"{_SHORT.get(k, k)}={v}" for k, v in rdn) for rdn in reversed(peer.get("subject", ())))


_SHORT = {"commonName": "CN", "organizationName": "O", "organizationalUnitName": "OU", "countryName": "C"}


def _with_tls(app, tls: dict):
    """`app` with the connection's TLS extension added to each scope."""
    async def asgi(scope, receive, send):
        scope.setdefault("extensions", {})["tls"] = tls
        return await app(scope, receive, send)
    return asgi


class TLSScopeMixin:
    """For a uvicorn protocol class: wrap its app, per TLS connection, in `_with_tls`."""

    def connection_made(self, transport) -> None:
        tls = tls_extension(transport)
        if tls is not None:
            self.app = _with_tls(self.app, tls)
        super().connection_made(transport)


class TLSHttpProtocol(TLSScopeMixin, AutoHTTPProtocol):
    """uvicorn's HTTP protocol (httptools when installed) with the TLS extension."""


class TLSWebSocketProtocol(TLSScopeMixin, WSProtocol):
    """uvicorn's wsproto WebSocket protocol with the TLS extension (an upgraded connection
    gets a new protocol object, handed the same transport)."""
