"""The requestheader authenticator (apiserver.auth.requestheader) and its place first in the
authentication chain (apiserver.auth.authn): which certificate may name a user in headers,
and how the headers become the user, as k8s.io/apiserver's headerrequest reads them."""

from __future__ import annotations

import argparse
import asyncio

import pytest
from cryptography.hazmat.primitives import serialization
from starlette.requests import Request

from pkube.apiserver import errors
from pkube.apiserver.auth import requestheader
from pkube.apiserver.auth.authn import RequestAuthenticator
from pkube.cluster import pki

CONFIG = requestheader.RequestHeaderConfig("front-proxy-ca.crt", ("front-proxy-client",), ("X-Remote-User",),
                                           (), ("X-Remote-Group",), ("X-Remote-Extra-",))


@pytest.fixture(scope="module")
def cas(tmp_path_factory):
    """(cluster CA, front-proxy CA) in a fresh pki directory."""
    directory = tmp_path_factory.mktemp("pki")
    return (pki.CertificateAuthority.load_or_create(directory),
            pki.CertificateAuthority.load_or_create(directory, "front-proxy-ca", pki.FRONT_PROXY_CA))


def issue(ca: pki.CertificateAuthority, name: str, cn: str, orgs=(), client=True, server=False):
    ca.issue(pki.CertSpec(name, cn, tuple(orgs), client=client, server=server))
    return pki.load_certificate(ca.pki_dir / f"{name}.crt")


def request(cert=None, headers=()) -> Request:
    """A Starlette request over a TLS connection that presented `cert` (as tlsscope puts it)."""
    tls = {}
    if cert is not None:
        pem = cert.public_bytes(serialization.Encoding.PEM).decode()
        tls = {"client_cert_chain": [pem], "client_cert": peer_dict(cert)}
    raw = [(k.lower().encode(), v.encode()) for k, v in headers]
    return Request({"type": "http", "method": "GET", "path": "/api", "headers": raw, "extensions": {"tls": tls}})


def peer_dict(cert) -> dict:
    """getpeercert()'s dict for `cert`: its subject and notAfter."""
    rdns = tuple(((a.oid._name, a.value),) for a in cert.subject)
    return {"subject": rdns, "notAfter": cert.not_valid_after_utc.strftime("%b %d %H:%M:%S %Y GMT")}


def chain(cas, anonymous=False) -> RequestAuthenticator:
    cluster, front = cas
    return RequestAuthenticator(allow_anonymous=anonymous, client_cas=[cluster.cert],
                                request_header=requestheader.RequestHeaderAuthenticator(CONFIG, [front.cert]))


def authenticate(authenticator, req):
    return asyncio.run(authenticator(req))


def test_the_first_non_empty_username_header_wins_and_groups_and_extras_are_read():
    config = requestheader.RequestHeaderConfig("ca", (), ("X-First", "X-Remote-User"), ("X-Remote-Uid",),
                                               ("X-Remote-Group", "X-Other-Group"), ("X-Remote-Extra-", "X-Also-"))
    headers = [("X-First", ""), ("x-remote-user", "alice"), ("X-Remote-Uid", "1001"),
               ("X-Remote-Group", "dev"), ("X-Remote-Group", ""), ("X-Other-Group", "ops"),
               ("X-Remote-Extra-Scopes", "a"), ("x-remote-extra-scopes", "b"),
               ("X-Remote-Extra-authentication.kubernetes.io%2Fpod-name", "web-1"),
               ("X-Remote-Extra-Bad%zz", "kept"), ("X-Also-Reason", "why")]
    user = requestheader.user_from_headers(headers, config)
    assert (user.name, user.uid, user.groups) == ("alice", "1001", ("dev", "ops"))
    assert user.extra == {"scopes": ["a", "b"], "authentication.kubernetes.io/pod-name": ["web-1"],
                          "bad%zz": ["kept"], "reason": ["why"]}


def test_no_username_header_names_nobody():
    assert requestheader.user_from_headers([("X-Remote-Group", "dev"), ("X-Remote-User", "")], CONFIG) is None


def test_the_flags_are_string_slices_and_an_empty_header_name_is_refused():
    parser = argparse.ArgumentParser()
    requestheader.add_flags(parser)
    args = parser.parse_args(["--requestheader-client-ca-file", "ca.crt", "--requestheader-username-headers",
                              "X-Remote-User, X-Other", "--requestheader-username-headers", "X-Third",
                              "--requestheader-allowed-names", ""])
    config = requestheader.from_args(args)
    assert config.username_headers == ("X-Remote-User", "X-Other", "X-Third") and config.allowed_names == ()
    assert requestheader.from_args(parser.parse_args([])) is None
    with pytest.raises(SystemExit, match="--requestheader-group-headers: empty header name"):
        requestheader.from_args(parser.parse_args(["--requestheader-client-ca-file", "x",
                                                   "--requestheader-group-headers", "X-A,,X-B"]))


def test_only_an_allowed_certificate_of_the_requestheader_ca_is_a_proxy(cas):
    cluster, front = cas
    proxy = issue(front, "proxy-ok", "front-proxy-client")
    stranger = issue(front, "proxy-stranger", "somebody-else")
    admin = issue(cluster, "admin-cert", "kubernetes-admin", ["system:masters"])
    serving = issue(front, "proxy-serving", "front-proxy-client", client=False, server=True)
    allowed = ("front-proxy-client",)
    assert requestheader.proxy_verdict(proxy, [front.cert], allowed) == requestheader.ALLOWED
    assert requestheader.proxy_verdict(stranger, [front.cert], allowed) == requestheader.NOT_ALLOWED
    assert requestheader.proxy_verdict(stranger, [front.cert], ()) == requestheader.ALLOWED
    assert requestheader.proxy_verdict(admin, [front.cert], allowed) is None
    assert requestheader.proxy_verdict(serving, [front.cert], allowed) is None     # no client auth usage


def test_an_allowed_proxy_authenticates_the_user_in_the_headers(cas):
    proxy = issue(cas[1], "proxy-ok", "front-proxy-client")
    user = authenticate(chain(cas), request(proxy, [("X-Remote-User", "bob"), ("X-Remote-Group", "devs"),
                                                    ("X-Remote-Extra-Team", "blue")]))
    assert (user.name, user.groups, user.extra) == ("bob", ("devs", "system:authenticated"), {"team": ["blue"]})


def test_a_proxy_that_is_not_allowed_or_names_nobody_is_401_even_with_anonymous_allowed(cas):
    stranger = issue(cas[1], "proxy-stranger", "somebody-else")
    proxy = issue(cas[1], "proxy-ok", "front-proxy-client")
    for req in (request(stranger, [("X-Remote-User", "bob")]), request(proxy)):
        with pytest.raises(errors.ApiError) as refused:
            authenticate(chain(cas, anonymous=True), req)
        assert refused.value.code == 401


def test_a_cluster_certificate_with_the_headers_stays_its_own_user(cas):
    admin = issue(cas[0], "admin-cert", "kubernetes-admin", ["system:masters"])
    user = authenticate(chain(cas), request(admin, [("X-Remote-User", "mallory"), ("X-Remote-Group", "evil")]))
    assert (user.name, user.groups) == ("kubernetes-admin", ("system:masters", "system:authenticated"))


def test_a_front_proxy_certificate_never_passes_for_the_user_it_names_itself(cas):
    masters = issue(cas[1], "proxy-masters", "front-proxy-client", ["system:masters"])
    with pytest.raises(errors.ApiError) as refused:
        authenticate(chain(cas), request(masters))             # no headers: not a user either
    assert refused.value.code == 401


def test_an_unreadable_or_empty_ca_file_is_refused_in_one_line(tmp_path):
    with pytest.raises(SystemExit, match="cannot read .*nope: No such file"):
        requestheader.load_ca_file(str(tmp_path / "nope"))
    (tmp_path / "empty.crt").write_text("")
    with pytest.raises(SystemExit, match="empty.crt: no PEM certificate"):
        requestheader.load_ca_file(str(tmp_path / "empty.crt"))
