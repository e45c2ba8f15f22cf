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
from pkube.cluster import certs, controlplanecerts, etcdpki, secrets, serviceaccountkey
from pkube.cluster.etcd import free_port
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
