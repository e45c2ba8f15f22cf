"""kube-system/extension-apiserver-authentication's content (apiserver.authenticationinfo) and
the bootstrap Role extensions read it with (apiserver.auth.policy), as Kubernetes writes them."""

from __future__ import annotations

import datetime

import pytest
from cryptography import x509

from pkube.apiserver import authenticationinfo as info
from pkube.apiserver.auth import policy
from pkube.apiserver.auth.requestheader import RequestHeaderConfig
from pkube.cluster import pki


@pytest.fixture(scope="module")
def cas(tmp_path_factory):
    """PEM of three CAs: cluster, front-proxy, another front-proxy (a rotated one)."""
    directory = tmp_path_factory.mktemp("pki")
    made = [pki.CertificateAuthority.load_or_create(directory, cn, name)
            for cn, name in (("kubernetes", "ca"), ("front-proxy-ca", "front-proxy-ca"), ("rotated", "rotated"))]
    return [ca.cert_pem().decode() for ca in made]


def required(client_ca: str, front_proxy_ca: str) -> info.AuthenticationInfo:
    return info.AuthenticationInfo(client_ca, front_proxy_ca, ("X-Remote-User",), (), ("X-Remote-Group",),
                                   ("X-Remote-Extra-",), ("front-proxy-client",))


def test_the_data_is_keyed_and_encoded_as_kube_apiserver_writes_it(cas):
    data = info.config_map_data(info.combined(info.AuthenticationInfo(), required(cas[0], cas[1])))
    assert data == {"client-ca-file": cas[0], "requestheader-client-ca-file": cas[1],
                    "requestheader-allowed-names": '["front-proxy-client"]',
                    "requestheader-username-headers": '["X-Remote-User"]',
                    "requestheader-uid-headers": "[]",
                    "requestheader-group-headers": '["X-Remote-Group"]',
                    "requestheader-extra-headers-prefix": '["X-Remote-Extra-"]'}
    assert info.info_of(data) == required(cas[0], cas[1])


def test_without_a_requestheader_ca_only_the_client_ca_is_published(cas):
    assert info.config_map_data(info.AuthenticationInfo(cas[0], "", ("X-Remote-User",))) == {"client-ca-file": cas[0]}


def test_what_is_there_is_kept_and_what_is_needed_added_once(cas):
    existing = info.info_of(info.config_map_data(required(cas[0], cas[1])))
    other = info.AuthenticationInfo(cas[0], cas[2], ("X-Other-User", "X-Remote-User"), (), ("X-Remote-Group",),
                                    (), ("front-proxy-client", "proxy-2"))
    merged = info.combined(existing, other)
    assert merged.request_header_ca == cas[1] + cas[2] and merged.client_ca == cas[0]
    assert merged.username_headers == ("X-Remote-User", "X-Other-User")
    assert merged.allowed_names == ("front-proxy-client", "proxy-2")
    # A second apiserver with the same flags finds nothing to add (so it writes nothing).
    assert info.combined(merged, other) == merged


def test_certificates_expired_more_than_five_minutes_ago_are_dropped_and_repeats_kept_once(cas):
    expiry = x509.load_pem_x509_certificate(cas[1].encode()).not_valid_after_utc
    assert info.combined_bundle(cas[1], "", now=expiry + datetime.timedelta(minutes=6)) == ""
    assert info.combined_bundle("", cas[1], now=expiry + datetime.timedelta(minutes=4)) == cas[1]
    assert info.combined_bundle(cas[0] + cas[1], cas[1] + cas[0]) == cas[0] + cas[1]


def test_a_list_that_is_not_a_json_array_of_strings_is_refused():
    with pytest.raises(ValueError, match="requestheader-group-headers"):
        info.info_of({"requestheader-group-headers": '{"a": 1}'})


def test_the_requestheader_flags_are_what_is_required(tmp_path, cas):
    (tmp_path / "ca.crt").write_text(cas[0])
    (tmp_path / "fp.crt").write_text(cas[1])
    config = RequestHeaderConfig(str(tmp_path / "fp.crt"), ("front-proxy-client",), ("X-Remote-User",), (),
                                 ("X-Remote-Group",), ("X-Remote-Extra-",))
    assert info.required_from(str(tmp_path / "ca.crt"), config)() == required(cas[0], cas[1])


def test_the_reader_role_and_its_binding_are_kubernetes_bootstrap_ones():
    objects = dict(policy.bootstrap_objects())
    role = objects["/registry/roles/kube-system/extension-apiserver-authentication-reader"]
    assert role["metadata"]["namespace"] == "kube-system"
    assert role["rules"] == [{"verbs": ["get", "list", "watch"], "apiGroups": [""], "resources": ["configmaps"],
                              "resourceNames": ["extension-apiserver-authentication"]}]
    binding = objects["/registry/rolebindings/kube-system/system::extension-apiserver-authentication-reader"]
    assert binding["roleRef"]["name"] == "extension-apiserver-authentication-reader"
    assert [s["name"] for s in binding["subjects"]] == ["system:kube-controller-manager", "system:kube-scheduler"]
