"""Registry client: OCI distribution API v2 pull and push (httpx).

Manifests: Docker v2 schema 2, OCI manifests, and indexes / manifest lists (the host's
linux/<arch> entry is picked). Auth: bearer tokens from the realm a 401's WWW-Authenticate
names (Docker Hub style), or basic auth; credentials come from the caller or from
``~/.docker/config.json``. Plain HTTP is used only for localhost / 127.0.0.1 / [::1]
registries, HTTPS for every other host. Layers are uploaded gzip-compressed (the compressed
digest is computed on push) with a monolithic POST + PUT.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import os
import re
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Iterator

import httpx

from pkube.runtime.archive import (INDEX_TYPES, MT_DOCKER_CONFIG, MT_DOCKER_LAYER_GZIP, MT_DOCKER_LIST,
                             MT_DOCKER_MANIFEST, MT_OCI_INDEX, MT_OCI_MANIFEST, pick_platform)
from pkube.runtime.errors import ImageError
from pkube.runtime.imagestore import Image, ImageStore, sha256_bytes
from pkube.runtime.reference import normalize_ref, split_ref

DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"
LOCAL_HOSTS = ("localhost", "127.0.0.1", "[::1]", "::1")
MANIFEST_ACCEPT = ", ".join([MT_OCI_INDEX, MT_DOCKER_LIST, MT_OCI_MANIFEST, MT_DOCKER_MANIFEST])
CHUNK = 1 << 20
PARALLEL_DOWNLOADS = 3
_CHALLENGE_RE = re.compile(r'(\w+)="([^"]*)"')


class RegistryError(ImageError):
    """A registry answered with an error or something invalid; the message names the URL."""


class AuthError(RegistryError):
    pass


@dataclass(frozen=True)
class Progress:
    """One progress report: ``id`` is a layer's short digest (or "config"/"manifest")."""

    id: str
    status: str  # Waiting, Downloading, Pull complete, Already exists, Pushing, Pushed, ...
    current: int = 0
    total: int = 0


ProgressFn = Callable[[Progress], None]


@dataclass(frozen=True)
class RemoteRef:
    registry: str      # host[:port] as the user wrote it ("docker.io" by default)
    repository: str    # "library/busybox"
    tag: str | None
    digest: str | None

    @classmethod
    def parse(cls, ref: str) -> "RemoteRef":
        name, tag, digest = split_ref(normalize_ref(ref))
        first, _, rest = name.partition("/")
        if rest and ("." in first or ":" in first or first == "localhost" or first.startswith("[")):
            registry, repository = first, rest
        else:
            registry, repository = DOCKER_HUB, name
        if registry == DOCKER_HUB and "/" not in repository:
            repository = "library/" + repository
        return cls(registry, repository, tag if tag or digest else "latest", digest)

    @property
    def reference(self) -> str:
        """The tag or digest used in the manifest URL."""
        return self.digest or self.tag or "latest"

    @property
    def base_url(self) -> str:
        host = DOCKER_HUB_API if self.registry == DOCKER_HUB else self.registry
        return f"{'http' if is_local(self.registry) else 'https'}://{host}/v2/{self.repository}"


def is_local(registry: str) -> bool:
    host = registry.rsplit(":", 1)[0] if not registry.endswith("]") else registry
    return host in LOCAL_HOSTS or registry in LOCAL_HOSTS


def docker_config_credentials(registry: str) -> tuple[str, str] | None:
    """(user, password) for a registry from $DOCKER_CONFIG or ~/.docker/config.json."""
    try:
        with open(docker_config_path()) as f:
            auths = json.load(f).get("auths", {})
    except (OSError, ValueError):
        return None
    keys = [registry, f"https://{registry}", f"http://{registry}"]
    if registry == DOCKER_HUB:
        keys.append("https://index.docker.io/v1/")
    for key in keys:
        encoded = (auths.get(key) or {}).get("auth")
        if encoded:
            user, _, password = base64.b64decode(encoded).decode().partition(":")
            return user, password
    return None


def docker_config_path() -> str:
    """$DOCKER_CONFIG/config.json, or ~/.docker/config.json."""
    directory = os.environ.get("DOCKER_CONFIG") or os.path.join(os.path.expanduser("~"), ".docker")
    return os.path.join(directory, "config.json")


def login(registry: str, username: str, password: str) -> None:
    """``docker login``: check the credentials against the registry's /v2/ endpoint, then
    store them (base64, as Docker does) in the Docker config file. Raises AuthError."""
    registry = registry or DOCKER_HUB
    remote = RemoteRef(registry, "", None, None)
    url = remote.base_url.rsplit("/", 1)[0] + "/"
    with RegistryClient(credentials={registry: (username, password)}) as client:
        resp = client.request("GET", url, remote, "pull")
    if resp.status_code != 200:
        raise AuthError(f"login to {registry}: HTTP {resp.status_code} (wrong credentials?)")
    _update_docker_config(registry, base64.b64encode(f"{username}:{password}".encode()).decode())


def logout(registry: str) -> bool:
    """Forget stored credentials; False when there were none."""
    return _update_docker_config(registry or DOCKER_HUB, None)


def _update_docker_config(registry: str, auth: str | None) -> bool:
    path = docker_config_path()
    try:
        with open(path) as f:
            config = json.load(f)
    except (OSError, ValueError):
        config = {}
    auths = config.setdefault("auths", {})
    had = auths.pop(registry, None) is not None
    if auth is not None:
        auths[registry] = {"auth": auth}
    directory, name = os.path.split(path)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    tmp = os.path.join(directory, f".{name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(config, f, indent=1)
    os.replace(tmp, path)
    return had


# ---------------------------------------------------------------------------------------------
# HTTP with auth


class RegistryClient:
    """One registry session; answers 401 challenges (bearer or basic) and retries once."""

    def __init__(self, credentials: dict[str, tuple[str, str]] | None = None,
                 timeout: float = 60.0, transport: httpx.BaseTransport | None = None):
        self._credentials = credentials or {}
        self._http = httpx.Client(timeout=timeout, follow_redirects=True, transport=transport)
        self._auth: dict[tuple[str, str], str] = {}

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "RegistryClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def credentials(self, registry: str) -> tuple[str, str] | None:
        return self._credentials.get(registry) or docker_config_credentials(registry)

    def request(self, method: str, url: str, remote: RemoteRef, actions: str,
                stream: bool = False, **kwargs) -> httpx.Response:
        """Send with the cached credentials for (registry, scope); on 401, authenticate and
        retry once. The caller closes a streamed response."""
        scope = f"repository:{remote.repository}:{actions}" if remote.repository else ""
        key = (remote.registry, scope)
        for attempt in (1, 2):
            headers = dict(kwargs.pop("headers", None) or {})
            if key in self._auth:
                headers["Authorization"] = self._auth[key]
            req = self._http.build_request(method, url, headers=headers, **kwargs)
            try:
                resp = self._http.send(req, stream=stream)
            except httpx.HTTPError as e:
                raise RegistryError(f"{method} {url}: {e}") from e
            if resp.status_code != 401 or attempt == 2:
                return resp
            challenge = resp.headers.get("WWW-Authenticate", "")
            resp.close()
            self._auth[key] = self._answer(challenge, remote, scope)
            kwargs["headers"] = headers
        raise AssertionError("unreachable")

    def _answer(self, challenge: str, remote: RemoteRef, scope: str) -> str:
        kind = challenge.split(" ", 1)[0].lower()
        creds = self.credentials(remote.registry)
        if kind == "basic":
            if not creds:
                raise AuthError(f"{remote.registry}: authentication required (no credentials)")
            token = base64.b64encode(f"{creds[0]}:{creds[1]}".encode()).decode()
            return f"Basic {token}"
        if kind != "bearer":
            raise AuthError(f"{remote.registry}: unsupported auth challenge {challenge!r}")
        return "Bearer " + self._fetch_token(dict(_CHALLENGE_RE.findall(challenge)), scope, creds)

    def _fetch_token(self, params: dict, scope: str, creds) -> str:
        realm = params.get("realm")
        if not realm:
            raise AuthError("bearer challenge without a realm")
        query = {"scope": scope} if scope else {}
        if params.get("service"):
            query["service"] = params["service"]
        try:
            resp = self._http.get(realm, params=query, auth=creds)
        except httpx.HTTPError as e:
            raise AuthError(f"token from {realm}: {e}") from e
        if resp.status_code != 200:
            raise AuthError(f"token from {realm}: HTTP {resp.status_code} {resp.text[:200]}")
        body = resp.json()
        token = body.get("token") or body.get("access_token")
        if not token:
            raise AuthError(f"token from {realm}: no token in the answer")
        return token


def _check(resp: httpx.Response, what: str, *ok: int) -> httpx.Response:
    if resp.status_code not in (ok or (200,)):
        try:
            body = resp.read()[:300].decode(errors="replace")
        except httpx.HTTPError:
            body = ""
        resp.close()
        if resp.status_code in (401, 403):
            raise AuthError(f"{what}: access denied (HTTP {resp.status_code}) {body}")
        if resp.status_code == 404:
            raise RegistryError(f"{what}: not found")
        raise RegistryError(f"{what}: HTTP {resp.status_code} {body}")
    return resp


# ---------------------------------------------------------------------------------------------
# Pull


def pull(store: ImageStore, ref: str, progress: ProgressFn | None = None,
         client: RegistryClient | None = None) -> Image:
    """Fetch an image (the host platform's, from an index) into the store and tag it ``ref``."""
    progress = progress or (lambda p: None)
    remote = RemoteRef.parse(ref)
    own = client is None
    client = client or RegistryClient()
    try:
        manifest, digest = _fetch_manifest(client, remote, remote.reference, progress)
        config_bytes = _fetch_config(client, remote, manifest["config"]["digest"])
        _fetch_layers(client, store, remote, manifest, json.loads(config_bytes), progress)
    finally:
        if own:
            client.close()
    local = None if remote.digest and not remote.tag else normalize_ref(ref)
    image = store.add_config(config_bytes, ref=local)
    store.add_repo_digest(ref, digest, image.id)
    progress(Progress("manifest", f"Digest: {digest}"))
    return store.get(image.id)


def _fetch_manifest(client, remote: RemoteRef, reference: str, progress) -> tuple[dict, str]:
    """(platform manifest, digest of what ``reference`` names: the index for a list)."""
    url = f"{remote.base_url}/manifests/{reference}"
    resp = _check(client.request("GET", url, remote, "pull", headers={"Accept": MANIFEST_ACCEPT}),
                  f"manifest {remote.repository}:{reference}")
    body = resp.content
    digest = sha256_bytes(body)
    if reference.startswith("sha256:") and digest != reference:
        raise RegistryError(f"manifest {reference}: digest mismatch")
    doc = json.loads(body)
    media_type = doc.get("mediaType") or resp.headers.get("Content-Type", "").split(";")[0]
    if media_type in INDEX_TYPES or "manifests" in doc:
        chosen = pick_platform(doc)["digest"]
        progress(Progress("manifest", f"Resolved index to {chosen[7:19]}"))
        return _fetch_manifest(client, remote, chosen, progress)[0], digest
    if doc.get("schemaVersion") != 2 or "config" not in doc:
        raise RegistryError(f"manifest {remote.repository}:{reference}: unsupported manifest "
                            f"(schema {doc.get('schemaVersion')}, type {media_type})")
    return doc, digest


def _fetch_config(client, remote: RemoteRef, digest: str) -> bytes:
    resp = _check(client.request("GET", f"{remote.base_url}/blobs/{digest}", remote, "pull"),
                  f"config {digest}")
    if sha256_bytes(resp.content) != digest:
        raise RegistryError(f"config {digest}: digest mismatch")
    return resp.content


def _fetch_layers(client, store: ImageStore, remote: RemoteRef, manifest: dict, config: dict,
                  progress) -> None:
    """Download and unpack the missing layers, ``PARALLEL_DOWNLOADS`` at a time (as Docker)."""
    diff_ids = (config.get("rootfs") or {}).get("diff_ids") or []
    layers = manifest.get("layers") or []
    if len(diff_ids) != len(layers):
        raise RegistryError(f"{remote.repository}: manifest has {len(layers)} layers, config "
                            f"{len(diff_ids)}")
    missing = []
    for desc, diff_id in zip(layers, diff_ids):
        if store.layers.claim(diff_id):
            progress(Progress(desc["digest"][7:19], "Already exists"))
        else:
            progress(Progress(desc["digest"][7:19], "Waiting"))
            missing.append((desc, diff_id))
    os.makedirs(store.root, exist_ok=True)
    with ThreadPoolExecutor(PARALLEL_DOWNLOADS) as pool:
        futures = [pool.submit(_fetch_layer, client, store, remote, desc, diff_id, progress)
                   for desc, diff_id in missing]
        for future in futures:
            future.result()


def _fetch_layer(client, store: ImageStore, remote: RemoteRef, desc: dict, diff_id: str,
                 progress) -> None:
    short, size = desc["digest"][7:19], int(desc.get("size") or 0)
    with tempfile.NamedTemporaryFile(dir=store.root, prefix=".pull-") as spool:
        _download_blob(client, remote, desc, spool, progress)
        spool.flush()
        progress(Progress(short, "Extracting", size, size))
        store.layers.import_file(spool.name, expected_diff_id=diff_id)
    progress(Progress(short, "Pull complete", size, size))


def _download_blob(client, remote: RemoteRef, desc: dict, out, progress) -> None:
    digest, total = desc["digest"], int(desc.get("size") or 0)
    short = digest[7:19]
    resp = _check(client.request("GET", f"{remote.base_url}/blobs/{digest}", remote, "pull",
                                 stream=True), f"layer {digest}")
    sha, done = hashlib.sha256(), 0
    try:
        for chunk in resp.iter_bytes(CHUNK):
            sha.update(chunk)
            out.write(chunk)
            done += len(chunk)
            progress(Progress(short, "Downloading", done, total))
    except httpx.HTTPError as e:
        raise RegistryError(f"layer {digest}: {e}") from e
    finally:
        resp.close()
    if "sha256:" + sha.hexdigest() != digest:
        raise RegistryError(f"layer {digest}: digest mismatch (download corrupted)")


# ---------------------------------------------------------------------------------------------
# Push


def push(store: ImageStore, ref: str, progress: ProgressFn | None = None,
         client: RegistryClient | None = None) -> str:
    """Upload the image tagged ``ref`` to the registry its name says; returns the manifest
    digest. Layers the registry already has are skipped."""
    progress = progress or (lambda p: None)
    image = store.get(ref)
    remote = RemoteRef.parse(ref)
    if remote.digest:
        raise RegistryError(f"cannot push to a digest reference: {ref}")
    own = client is None
    client = client or RegistryClient()
    try:
        with tempfile.TemporaryDirectory(dir=store.root, prefix=".push-") as tmp:
            layers = [_push_layer(client, store, remote, d, tmp, progress)
                      for d in image.diff_ids]
        config_bytes = store.raw_config_bytes(image.id)
        _upload_if_missing(client, remote, config_bytes, image.id, "config", progress)
        digest = _put_manifest(client, remote, image, config_bytes, layers)
    finally:
        if own:
            client.close()
    store.add_repo_digest(ref, digest, image.id)
    return digest


def _push_layer(client, store: ImageStore, remote: RemoteRef, diff_id: str, tmp: str,
                progress) -> dict:
    gz = os.path.join(tmp, diff_id[7:] + ".tar.gz")
    digest = _gzip_deterministic(store.layers.tar_path(diff_id), gz)
    size = os.stat(gz).st_size
    _upload_if_missing(client, remote, gz, digest, digest[7:19], progress)
    return {"mediaType": MT_DOCKER_LAYER_GZIP, "size": size, "digest": digest}


def _gzip_deterministic(src: str, dst: str) -> str:
    """gzip with a zero mtime and no file name, so the same layer always has the same digest."""
    with open(src, "rb") as fin, open(dst, "wb") as raw:
        with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=6) as gz:
            shutil.copyfileobj(fin, gz, CHUNK)
    sha = hashlib.sha256()
    with open(dst, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            sha.update(chunk)
    return "sha256:" + sha.hexdigest()


def _upload_if_missing(client, remote: RemoteRef, blob: str | bytes, digest: str, label: str,
                       progress) -> None:
    """Upload a blob (bytes, or the path of a file holding it) unless the registry has it."""
    size = len(blob) if isinstance(blob, bytes) else os.stat(blob).st_size
    head = client.request("HEAD", f"{remote.base_url}/blobs/{digest}", remote, "pull,push")
    if head.status_code == 200:
        progress(Progress(label, "Layer already exists", size, size))
        return
    start = _check(client.request("POST", f"{remote.base_url}/blobs/uploads/", remote, "pull,push"),
                   f"start upload of {digest}", 202)
    location = _absolute(remote, start.headers.get("Location", ""))
    url = location + ("&" if "?" in location else "?") + f"digest={digest}"
    body = _chunks(blob, label, size, progress)
    done = client.request("PUT", url, remote, "pull,push", content=body,
                          headers={"Content-Type": "application/octet-stream",
                                   "Content-Length": str(size)})
    _check(done, f"upload of {digest}", 201, 204)
    progress(Progress(label, "Pushed", size, size))


def _absolute(remote: RemoteRef, location: str) -> str:
    if not location:
        raise RegistryError(f"{remote.registry}: upload started without a Location")
    if location.startswith("http://") or location.startswith("https://"):
        return location
    origin = remote.base_url.split("/v2/", 1)[0]
    return origin + location


def _chunks(blob: str | bytes, label: str, size: int, progress) -> Iterator[bytes]:
    if isinstance(blob, bytes):
        yield blob
        return
    done = 0
    with open(blob, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            done += len(chunk)
            progress(Progress(label, "Pushing", done, size))
            yield chunk


def _put_manifest(client, remote: RemoteRef, image: Image, config_bytes: bytes,
                  layers: list[dict]) -> str:
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": MT_DOCKER_MANIFEST,
        "config": {"mediaType": MT_DOCKER_CONFIG, "size": len(config_bytes), "digest": image.id},
        "layers": layers}, indent=3).encode()
    resp = client.request("PUT", f"{remote.base_url}/manifests/{remote.reference}", remote,
                          "pull,push", content=manifest,
                          headers={"Content-Type": MT_DOCKER_MANIFEST})
    _check(resp, f"manifest {remote.repository}:{remote.reference}", 201, 200)
    return resp.headers.get("Docker-Content-Digest") or sha256_bytes(manifest)
