"""Carrying the control plane's shared secrets to a joining member (pkube/cluster/controlplanecerts.py)
through a real TLS apiserver with Node,RBAC: the admin uploads them sealed with a certificate
key; a bootstrap token reads them back with that key (and nothing else of kube-system); a wrong
key opens nothing and writes nothing."""

from __future__ import annotations

import datetime
import os
import subprocess
import sys

import pytest

from pkube.api import bootstraptoken
from pkube.client.errors import ApiError
from pkube.client.kubeconfig import ClientConfig
from pkube.client.resources import SECRETS
from pkube.client.rest import ApiClient
from pkube.cluster import certs, controlplanecerts, etcdpki, hacluster, secrets, serviceaccountkey
from pkube.cluster.etcd import free_port
from pkube.cluster.up import ClusterConfig
from tests.helpers.waiting import wait_for
from tests.integration.test_apiserver_authn import _ready


@pytest.fixture
def cluster(etcd, tmp_path):
    """(url, data dir with a full control plane's files) of an apiserver with Node,RBAC."""
    data_dir, port = tmp_path / "first", free_port()
    certs.prepare(data_dir, f"https://127.0.0.1:{port}", "node-a")
    serviceaccountkey.ensure_key_pair(certs.pki_dir(data_dir))
    secrets.ensure_encryption_config(secrets.encryption_config_path(data_dir))
    etcdpki.ensure(certs.pki_dir(data_dir), "etcd0", ("127.0.0.1",))
    p = certs.pki_dir(data_dir)
    proc = subprocess.Popen([sys.executable, "-m", "pkube.apiserver", "--etcd-servers", etcd.endpoint, "--port", str(port),
                             "--tls-cert-file", str(p / "apiserver.crt"), "--tls-private-key-file", str(p / "apiserver.key"),
                             "--client-ca-file", str(p / "ca.crt"), "--enable-bootstrap-token-auth",
                             "--authorization-mode", "Node,RBAC", "--log-level", "warning"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"https://127.0.0.1:{port}"
    try:
        wait_for(lambda: proc.poll() is not None or _ready(url, p / "ca.crt"), 30)
        assert proc.poll() is None, proc.stderr.read().decode()
        yield url, data_dir
    finally:
        proc.terminate()
        proc.wait(15)


def _client(url: str, data_dir, **identity) -> ApiClient:
    ca = (certs.pki_dir(data_dir) / "ca.crt").read_text()
    return ApiClient(ClientConfig(url, ca=ca, **identity))


def test_a_bootstrap_token_with_the_key_gets_the_shared_files_and_nothing_else(cluster, tmp_path):
    url, data_dir = cluster
    pki = certs.pki_dir(data_dir)
    token = bootstraptoken.generate(datetime.timedelta(hours=1), "join")
    key = controlplanecerts.new_certificate_key()
    with _client(url, data_dir, cert=(pki / "admin.crt").read_text(), key=(pki / "admin.key").read_text()) as admin:
        admin.create(SECRETS, token.to_secret(), "kube-system")
        controlplanecerts.upload(admin, data_dir, key, token.id)
    joiner_dir = tmp_path / "second"
    with _client(url, data_dir, token=token.token) as joiner:
        with pytest.raises(controlplanecerts.CertificateKeyError, match="does not open"):
            controlplanecerts.download(joiner, controlplanecerts.new_certificate_key(), joiner_dir)
        assert not joiner_dir.exists()
        written = controlplanecerts.download(joiner, key, joiner_dir)
        with pytest.raises(ApiError) as refused:
            joiner.get(SECRETS, f"bootstrap-token-{token.id}", "kube-system")
        assert refused.value.code == 403
    originals = {name: path for name, (path, _) in controlplanecerts.shared_files(data_dir).items()}
    copies = {name: path for name, (path, _) in controlplanecerts.shared_files(joiner_dir).items()}
    assert sorted(written) == sorted(copies.values())
    assert {"ca.key", "front-proxy-ca.crt", "front-proxy-ca.key", "etcd-ca.key"} <= set(copies)
    for name in originals:
        assert copies[name].read_bytes() == originals[name].read_bytes()
        assert os.stat(copies[name]).st_mode & 0o777 == os.stat(originals[name]).st_mode & 0o777


@pytest.mark.parametrize("key, message", [("abc", "64 hex digits"), ("zz" * 32, "64 hex digits")])
def test_a_malformed_key_is_refused_in_one_line(key, message):
    with pytest.raises(controlplanecerts.CertificateKeyError, match=message):
        controlplanecerts.seal(key, "ca.key", b"x")


def test_a_sealed_file_cannot_pass_for_another():
    key = controlplanecerts.new_certificate_key()
    sealed = controlplanecerts.seal(key, "ca.crt", b"public")
    assert controlplanecerts.unseal(key, "ca.crt", sealed) == b"public"
    with pytest.raises(controlplanecerts.CertificateKeyError):
        controlplanecerts.unseal(key, "ca.key", sealed)


def pkube_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pkube.cluster", *args], capture_output=True, text=True, timeout=60)


def test_pkube_certs_upload_prints_a_fresh_key_that_opens_the_upload_for_two_hours(cluster, tmp_path):
    """As kubeadm's `init phase upload-certs --upload-certs`: every run a new key (the old one
    opens nothing any more), the upload owned by a token that authenticates nobody and expires
    in two hours."""
    url, data_dir = cluster
    hacluster.save_topology(data_dir, hacluster.planned_topology(ClusterConfig(port=0), ["127.0.0.1"], 6444))
    hacluster.point_at(data_dir / "admin.kubeconfig", url)
    first = pkube_cli("certs", "upload", "--data-dir", str(data_dir))
    assert first.returncode == 0, first.stderr
    second = pkube_cli("certs", "upload", "--data-dir", str(data_dir))
    assert second.returncode == 0, second.stderr
    old_key, key = first.stdout.strip(), second.stdout.strip()
    assert len(key) == 64 and key != old_key and "sealed with this certificate key" in second.stderr
    pki = certs.pki_dir(data_dir)
    joining = bootstraptoken.generate(datetime.timedelta(hours=1), "join")
    with _client(url, data_dir, cert=(pki / "admin.crt").read_text(), key=(pki / "admin.key").read_text()) as admin:
        admin.create(SECRETS, joining.to_secret(), "kube-system")
        upload = admin.get(SECRETS, controlplanecerts.SECRET, "kube-system")
        owner = bootstraptoken.BootstrapToken.from_secret(
            admin.get(SECRETS, upload["metadata"]["ownerReferences"][0]["name"], "kube-system"))
    left = owner.expiration - datetime.datetime.now(datetime.timezone.utc)
    assert datetime.timedelta(hours=1, minutes=58) < left <= datetime.timedelta(hours=2)
    assert owner.usages == () and upload["metadata"]["annotations"][controlplanecerts.EXPIRES]
    with _client(url, data_dir, token=owner.token) as owner_client, pytest.raises(ApiError) as refused:
        owner_client.get(SECRETS, controlplanecerts.SECRET, "kube-system")
    assert refused.value.code == 401
    with _client(url, data_dir, token=joining.token) as joiner:
        with pytest.raises(controlplanecerts.CertificateKeyError, match="does not open"):
            controlplanecerts.download(joiner, old_key, tmp_path / "stale")
        controlplanecerts.download(joiner, key, tmp_path / "second")
    assert (certs.pki_dir(tmp_path / "second") / "ca.key").read_bytes() == (pki / "ca.key").read_bytes()


def test_an_expired_upload_is_refused_in_one_line(cluster, tmp_path):
    url, data_dir = cluster
    pki = certs.pki_dir(data_dir)
    joining = bootstraptoken.generate(datetime.timedelta(hours=1), "join")
    three_hours_ago = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(hours=3)
    with _client(url, data_dir, cert=(pki / "admin.crt").read_text(), key=(pki / "admin.key").read_text()) as admin:
        admin.create(SECRETS, joining.to_secret(), "kube-system")
        key, expires = controlplanecerts.upload_with_new_key(admin, data_dir, now=three_hours_ago)
    with _client(url, data_dir, token=joining.token) as joiner:
        with pytest.raises(controlplanecerts.CertificateKeyError, match="expired at .*pkube certs upload"):
            controlplanecerts.download(joiner, key, tmp_path / "late")
    assert not (tmp_path / "late").exists()


def test_pkube_certs_upload_outside_a_control_plane_of_several_says_so_in_one_line(tmp_path):
    done = pkube_cli("certs", "upload", "--data-dir", str(tmp_path))
    assert done.returncode != 0 and "not a member of a control plane of several" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
