"""The cluster's CA and certificates (cluster.pki, cluster.certs) and join tokens
(cluster.tokens): files, identities, names, renewal — against a temporary directory."""

from __future__ import annotations

import base64
import datetime
import hashlib
import ipaddress
import stat

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from pkube.cluster import certs, pki, tokens


def subject(cert: x509.Certificate) -> tuple[str, tuple[str, ...]]:
    cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    return cn, tuple(a.value for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME))


def cert_of(pki_dir, name) -> x509.Certificate:
    return pki.load_certificate(pki_dir / f"{name}.crt")


@pytest.fixture
def data_dir(tmp_path):
    certs.prepare(tmp_path, "https://127.0.0.1:6443", "node-a")
    return tmp_path


def test_the_ca_and_every_key_are_private_and_every_certificate_is_signed_by_the_ca(data_dir):
    pki_dir = certs.pki_dir(data_dir)
    ca = pki.CertificateAuthority.load(pki_dir)
    assert ca.cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    for key in pki_dir.glob("*.key"):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600, key
    front_proxy = pki.CertificateAuthority.load(pki_dir, pki.FRONT_PROXY_CA)
    for name in pki.certificate_names(pki_dir):
        issuer = front_proxy if name == "front-proxy-client" else ca
        cert_of(pki_dir, name).verify_directly_issued_by(issuer.cert)


def test_the_front_proxy_client_is_signed_by_a_ca_of_its_own_as_kubeadm_makes_it(data_dir):
    pki_dir = certs.pki_dir(data_dir)
    front_proxy_ca, cluster_ca = cert_of(pki_dir, "front-proxy-ca"), cert_of(pki_dir, "ca")
    client = cert_of(pki_dir, "front-proxy-client")
    assert subject(front_proxy_ca) == ("front-proxy-ca", ()) and front_proxy_ca.public_key() != cluster_ca.public_key()
    assert subject(client) == ("front-proxy-client", ())
    client.verify_directly_issued_by(front_proxy_ca)
    with pytest.raises(Exception):
        client.verify_directly_issued_by(cluster_ca)
    assert list(client.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert stat.S_IMODE((pki_dir / "front-proxy-ca.key").stat().st_mode) == 0o600


def test_each_component_has_kubernetes_own_identity(data_dir):
    pki_dir = certs.pki_dir(data_dir)
    assert subject(cert_of(pki_dir, "admin")) == ("kubernetes-admin", ("system:masters",))
    assert subject(cert_of(pki_dir, "scheduler")) == ("system:kube-scheduler", ())
    assert subject(cert_of(pki_dir, "controller-manager")) == ("system:kube-controller-manager", ())
    assert subject(cert_of(pki_dir, "kubelet-client")) == ("system:node:node-a", ("system:nodes",))
    assert subject(cert_of(pki_dir, "proxy")) == ("system:kube-proxy", ())
    assert subject(cert_of(pki_dir, "apiserver-kubelet-client")) == ("kube-apiserver-kubelet-client",
                                                                     ("system:masters",))


def test_the_apiserver_serving_certificate_covers_its_addresses_and_the_kubernetes_service(data_dir):
    cert = cert_of(certs.pki_dir(data_dir), "apiserver")
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    names = set(sans.get_values_for_type(x509.DNSName))
    ips = set(sans.get_values_for_type(x509.IPAddress))
    assert {"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local"} <= names
    assert {ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("10.96.0.1")} <= ips
    usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usages) == [ExtendedKeyUsageOID.SERVER_AUTH]
    kubelet = cert_of(certs.pki_dir(data_dir), "kubelet")
    assert "node-a" in kubelet.extensions.get_extension_for_class(x509.SubjectAlternativeName).value \
        .get_values_for_type(x509.DNSName)


def test_each_component_kubeconfig_carries_the_ca_and_its_own_certificate_never_the_admins(data_dir):
    ca = (certs.pki_dir(data_dir) / "ca.crt").read_bytes()
    expected = {"admin": "kubernetes-admin", "scheduler": "system:kube-scheduler",
                "controllers": "system:kube-controller-manager", "kubelet": "system:node:node-a",
                "proxy": "system:kube-proxy"}
    for component, user in expected.items():
        path = certs.kubeconfig_path(data_dir, component)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        doc = yaml.safe_load(path.read_text())
        assert doc["clusters"][0]["cluster"]["server"] == "https://127.0.0.1:6443"
        assert base64.b64decode(doc["clusters"][0]["cluster"]["certificate-authority-data"]) == ca
        cert = x509.load_pem_x509_certificate(base64.b64decode(doc["users"][0]["user"]["client-certificate-data"]))
        assert subject(cert)[0] == user, component


def test_a_second_start_reuses_everything_and_a_new_node_name_reissues_the_kubelets(data_dir):
    names = ("ca", "apiserver", "kubelet", "front-proxy-ca", "front-proxy-client")
    before = {n: cert_of(certs.pki_dir(data_dir), n).serial_number for n in names}
    assert certs.prepare(data_dir, "https://127.0.0.1:6443", "node-a") == []
    assert certs.prepare(data_dir, "https://127.0.0.1:6443", "node-b") == ["kubelet-client", "kubelet"]
    after = {n: cert_of(certs.pki_dir(data_dir), n).serial_number for n in names}
    assert all(after[n] == before[n] for n in names if n != "kubelet")
    assert after["kubelet"] != before["kubelet"]


def test_a_certificate_within_30_days_of_expiry_is_renewed_at_start(data_dir):
    pki_dir = certs.pki_dir(data_dir)
    ca = pki.CertificateAuthority.load(pki_dir)
    spec = pki.spec_of("scheduler", cert_of(pki_dir, "scheduler"))
    ca.issue(spec, validity=datetime.timedelta(days=29))
    assert certs.prepare(data_dir, "https://127.0.0.1:6443", "node-a") == ["scheduler"]
    left = cert_of(pki_dir, "scheduler").not_valid_after_utc - datetime.datetime.now(datetime.timezone.utc)
    assert left > datetime.timedelta(days=300)


def test_renew_reissues_with_the_same_ca_subject_and_names_and_rewrites_the_kubeconfig(data_dir):
    pki_dir = certs.pki_dir(data_dir)
    old = cert_of(pki_dir, "admin")
    old_ca = cert_of(pki_dir, "ca")
    assert certs.renew(data_dir, "admin") == ["admin"]
    new = cert_of(pki_dir, "admin")
    assert new.serial_number != old.serial_number and subject(new) == subject(old)
    assert cert_of(pki_dir, "ca").serial_number == old_ca.serial_number
    doc = yaml.safe_load(certs.kubeconfig_path(data_dir, "admin").read_text())
    assert base64.b64decode(doc["users"][0]["user"]["client-certificate-data"]) == (pki_dir / "admin.crt").read_bytes()
    front_proxy_ca = cert_of(pki_dir, "front-proxy-ca")
    assert sorted(certs.renew(data_dir, "all")) == pki.certificate_names(pki_dir)
    cert_of(pki_dir, "front-proxy-client").verify_directly_issued_by(front_proxy_ca)
    assert cert_of(pki_dir, "front-proxy-ca").serial_number == front_proxy_ca.serial_number
    with pytest.raises(pki.PKIError, match="no certificate 'nope'"):
        certs.renew(data_dir, "nope")


def test_renew_without_a_ca_says_so(tmp_path):
    with pytest.raises(pki.PKIError, match="no cluster CA"):
        certs.renew(tmp_path, "all")


def test_the_expiration_table_is_kubeadms(data_dir):
    table = certs.expiration_table(data_dir)
    lines = table.splitlines()
    assert lines[0].split() == ["CERTIFICATE", "EXPIRES", "RESIDUAL", "TIME", "CERTIFICATE", "AUTHORITY"]
    assert any(line.startswith("apiserver ") and "364d" in line and line.endswith("ca") for line in lines)
    assert any(line.startswith("ca ") and line.endswith("9y") for line in lines)
    assert any(line.startswith("front-proxy-client ") and line.endswith("front-proxy-ca") for line in lines)
    assert any(line.startswith("front-proxy-ca ") and line.endswith("9y") for line in lines)


@pytest.mark.parametrize("left, shown", [(datetime.timedelta(days=400), "400d"), (datetime.timedelta(days=800), "2y"),
                                         (datetime.timedelta(hours=5), "5h"), (datetime.timedelta(minutes=7), "7m"),
                                         (datetime.timedelta(seconds=-1), "<invalid>")])
def test_residual_time(left, shown):
    assert certs.residual(left) == shown


def test_the_join_token_pins_the_ca_public_key_as_kubeadm_hashes_it(data_dir):
    ca_pem = (certs.pki_dir(data_dir) / "ca.crt").read_bytes()
    spki = x509.load_pem_x509_certificate(ca_pem).public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    joined = tokens.join_token(ca_pem, "abcdef.0123456789abcdef")
    assert joined == f"K10{hashlib.sha256(spki).hexdigest()}::abcdef.0123456789abcdef"
    assert tokens.parse_join_token(joined) == (f"sha256:{hashlib.sha256(spki).hexdigest()}",
                                               "abcdef.0123456789abcdef")
    with pytest.raises(tokens.TokenError):
        tokens.parse_join_token("abcdef.0123456789abcdef")


@pytest.mark.parametrize("text, seconds", [("24h", 86400), ("1h30m", 5400), ("90s", 90), ("0", None)])
def test_ttl_durations(text, seconds):
    ttl = tokens.parse_ttl(text)
    assert (ttl.total_seconds() if ttl else None) == seconds


@pytest.mark.parametrize("text", ["", "1d", "h", "24h junk", "-5m"])
def test_bad_ttls_are_refused(text):
    with pytest.raises(tokens.TokenError):
        tokens.parse_ttl(text)
