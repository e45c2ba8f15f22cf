"""Registry auth (Docker Hub style bearer tokens, basic) and OCI indexes, against an in-test
HTTP registry on loopback that serves a real busybox image."""

from __future__ import annotations

import base64
import gzip
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest

from pkube.runtime.archive import MT_OCI_CONFIG, MT_OCI_INDEX, MT_OCI_LAYER_GZIP, MT_OCI_MANIFEST
from pkube.runtime.imagestore import ImageStore, canonical_json, sha256_bytes
from pkube.runtime.registry import AuthError, RegistryClient, RemoteRef, login, logout, pull

TOKEN = "t0ken"
USER, PASSWORD = "alice", "s3cret"


class FakeRegistry(BaseHTTPRequestHandler):
    """Serves blobs/manifests of one repository "test/bb"; auth mode set on the server."""

    def log_message(self, *args):
        pass

    def do_GET(self):
        server = self.server
        url = urlparse(self.path)
        if url.path == "/token":
            return self._token(parse_qs(url.query))
        if not self._authorized():
            return self._challenge()
        if url.path == "/v2/":
            return self._send(200, b"{}", "application/json")
        kind, _, ref = url.path.removeprefix("/v2/test/bb/").partition("/")
        blob = server.blobs.get(ref if ref.startswith("sha256:") else server.tags.get(ref, ""))
        if kind not in ("manifests", "blobs") or blob is None:
            return self._send(404, b'{"errors":[{"code":"NOT_FOUND"}]}', "application/json")
        data, media_type = blob
        self._send(200, data, media_type)

    def _authorized(self) -> bool:
        header = self.headers.get("Authorization", "")
        if self.server.mode == "bearer":
            return header == f"Bearer {TOKEN}"
        return header == "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()

    def _challenge(self):
        host = f"http://127.0.0.1:{self.server.server_address[1]}"
        if self.server.mode == "bearer":
            value = f'Bearer realm="{host}/token",service="fake-registry",scope="repository:test/bb:pull"'
        else:
            value = 'Basic realm="fake"'
        self.send_response(401)
        self.send_header("WWW-Authenticate", value)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _token(self, query):
        self.server.token_requests.append((query, self.headers.get("Authorization")))
        if self.server.require_login and self.headers.get("Authorization") is None:
            return self._send(401, b"{}", "application/json")
        self._send(200, json.dumps({"token": TOKEN}).encode(), "application/json")

    def _send(self, code, data, media_type):
        self.send_response(code)
        self.send_header("Content-Type", media_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def serve_busybox(source: ImageStore, mode: str, require_login: bool = False):
    image = source.ensure_busybox()
    layer = gzip.compress(Path(source.layers.tar_path(image.diff_ids[0])).read_bytes())
    config = source.raw_config_bytes(image.id)
    manifest = canonical_json({
        "schemaVersion": 2, "mediaType": MT_OCI_MANIFEST,
        "config": {"mediaType": MT_OCI_CONFIG, "digest": image.id, "size": len(config)},
        "layers": [{"mediaType": MT_OCI_LAYER_GZIP, "digest": sha256_bytes(layer), "size": len(layer)}]})
    index = canonical_json({"schemaVersion": 2, "mediaType": MT_OCI_INDEX, "manifests": [
        {"mediaType": MT_OCI_MANIFEST, "digest": "sha256:" + "e" * 64, "size": 1,
         "platform": {"os": "linux", "architecture": "arm64"}},
        {"mediaType": MT_OCI_MANIFEST, "digest": sha256_bytes(manifest), "size": len(manifest),
         "platform": {"os": "linux", "architecture": "amd64"}}]})
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeRegistry)
    server.mode, server.require_login, server.token_requests = mode, require_login, []
    server.blobs = {sha256_bytes(b): (b, t) for b, t in [
        (layer, MT_OCI_LAYER_GZIP), (config, MT_OCI_CONFIG), (manifest, MT_OCI_MANIFEST),
        (index, MT_OCI_INDEX)]}
    server.tags = {"latest": sha256_bytes(index)}
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, image


@pytest.fixture
def fake_registry(tmp_path, request):
    mode, require_login = request.param
    server, image = serve_busybox(ImageStore(tmp_path / "source"), mode, require_login)
    try:
        yield server, image, f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("fake_registry", [("bearer", False)], indirect=True)
def test_bearer_token_and_index_pull(fake_registry, tmp_path):
    server, image, host = fake_registry
    pulled = pull(ImageStore(tmp_path / "dest"), f"{host}/test/bb")
    assert pulled.id == image.id and pulled.repo_tags == [f"{host}/test/bb:latest"]
    query, auth = server.token_requests[0]
    assert query["scope"] == ["repository:test/bb:pull"] and query["service"] == ["fake-registry"]
    assert auth is None  # anonymous token, like Docker Hub's public images


@pytest.mark.parametrize("fake_registry", [("bearer", True)], indirect=True)
def test_token_endpoint_gets_basic_credentials(fake_registry, tmp_path):
    server, image, host = fake_registry
    with pytest.raises(AuthError, match="token from"):
        pull(ImageStore(tmp_path / "anon"), f"{host}/test/bb")
    with RegistryClient(credentials={host: (USER, PASSWORD)}) as client:
        pulled = pull(ImageStore(tmp_path / "dest"), f"{host}/test/bb", client=client)
    assert pulled.id == image.id
    expected = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    assert server.token_requests[-1][1] == expected


@pytest.mark.parametrize("fake_registry", [("basic", False)], indirect=True)
def test_basic_auth_registry(fake_registry, tmp_path):
    server, image, host = fake_registry
    with pytest.raises(AuthError, match="no credentials"):
        pull(ImageStore(tmp_path / "anon"), f"{host}/test/bb")
    with RegistryClient(credentials={host: (USER, PASSWORD)}) as client:
        assert pull(ImageStore(tmp_path / "dest"), f"{host}/test/bb", client=client).id == image.id


@pytest.mark.parametrize("fake_registry", [("basic", False)], indirect=True)
def test_login_stores_credentials_that_pull_then_uses(fake_registry, tmp_path):
    server, image, host = fake_registry
    with pytest.raises(AuthError, match="wrong credentials"):
        login(host, USER, "wrong")
    login(host, USER, PASSWORD)
    assert pull(ImageStore(tmp_path / "dest"), f"{host}/test/bb").id == image.id
    assert logout(host) and not logout(host)
    with pytest.raises(AuthError, match="no credentials"):
        pull(ImageStore(tmp_path / "again"), f"{host}/test/bb")


def test_plain_http_only_for_localhost():
    assert RemoteRef.parse("localhost:5000/a").base_url == "http://localhost:5000/v2/a"
    assert RemoteRef.parse("127.0.0.1:5000/a:1").base_url == "http://127.0.0.1:5000/v2/a"
    assert RemoteRef.parse("registry.example.com/a").base_url == "https://registry.example.com/v2/a"
    hub = RemoteRef.parse("busybox")
    assert hub.base_url == "https://registry-1.docker.io/v2/library/busybox" and hub.tag == "latest"
