"""Secrets at rest: the EncryptionConfiguration `pkube up` makes, and `pkube secrets rotate-key`.

`pkube up` writes DIR/apiserver/encryption-config.yaml (mode 0600) with one random AES-256-GCM
key the first time, and starts the apiserver with it and with automatic reload, so Secrets are
stored as ``k8s:enc:aesgcm:v1:<key name>:`` + nonce + ciphertext.

`rotate_key` follows Kubernetes' documented rotation, for one apiserver:
  1. put a new key first (it encrypts new writes) and keep the old one after it (it still
     decrypts); the apiserver reloads the file by itself (within RELOAD_GRACE);
  2. read and write back every Secret through the API, as
     `kubectl get secrets -A -o json | kubectl replace -f -` does (the store rewrites a value
     held under an old key even when nothing else changes), until etcd holds each one under
     the new key;
  3. drop the old key.
Interrupted anywhere, running it again finishes the same rotation: a file with two keys means
step 1 is done. The file is always replaced atomically.
"""

from __future__ import annotations

import base64
import os
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import yaml

from pkube.client.errors import ApiError, Conflict, NotFound
from pkube.client.resources import SECRETS

API_VERSION = "apiserver.config.k8s.io/v1"
KIND = "EncryptionConfiguration"
HEADER = "k8s:enc:aesgcm:v1:"
SECRETS_PREFIX = "/registry/secrets/"
RELOAD_GRACE = 1.0           # > the apiserver's check interval (apiserver.storage.encryption_reload)
REWRITE_TIMEOUT = 60.0


class SecretsError(RuntimeError):
    """A user-facing failure: its message is printed as one line."""


def apiserver_dir(data_dir: Path) -> Path:
    """The host directory the apiserver reads its configuration from (and writes audit to)."""
    return data_dir / "apiserver"


def encryption_config_path(data_dir: Path) -> Path:
    return apiserver_dir(data_dir) / "encryption-config.yaml"


def new_key(name: str) -> dict:
    return {"name": name, "secret": base64.b64encode(os.urandom(32)).decode()}


def ensure_encryption_config(path: Path) -> bool:
    """Write a configuration with one new key when there is none; True when written.
    An existing file is never replaced (a lost key makes the Secrets unreadable)."""
    if path.exists():
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    write_config(path, {"apiVersion": API_VERSION, "kind": KIND, "resources": [{
        "resources": ["secrets"],
        "providers": [{"aesgcm": {"keys": [new_key("key1")]}}, {"identity": {}}]}]})
    return True


def write_config(path: Path, doc: dict) -> None:
    """Replace ``path`` atomically with ``doc`` (mode 0600)."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        yaml.safe_dump(doc, f, sort_keys=False)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def secret_keys(doc) -> list[dict]:
    """The aesgcm keys of the entry for Secrets (the list inside ``doc``, to edit in place)."""
    for entry in (doc or {}).get("resources") or []:
        if "secrets" in (entry.get("resources") or []):
            first = (entry.get("providers") or [{}])[0]
            keys = (first.get("aesgcm") or {}).get("keys") if isinstance(first, dict) else None
            if keys:
                return keys
            break
    raise SecretsError("Secrets are not encrypted with aesgcm in this configuration: nothing to rotate")


def next_key_name(keys: list[dict]) -> str:
    numbers = [int(k["name"][3:]) for k in keys if k["name"].startswith("key") and k["name"][3:].isdigit()]
    return f"key{max(numbers, default=0) + 1}"


class EtcdReader:
    """Reads stored Secrets straight from etcd (its JSON gateway), to see their at-rest form."""

    def __init__(self, endpoint: str):
        self.endpoint = endpoint.rstrip("/")

    def stored(self, prefix: str = SECRETS_PREFIX) -> dict[str, bytes]:
        """etcd key -> stored value of every key under ``prefix``."""
        end = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        b64 = lambda s: base64.b64encode(s.encode()).decode()
        try:
            answer = httpx.post(f"{self.endpoint}/v3/kv/range", json={"key": b64(prefix), "range_end": b64(end)},
                                timeout=10)
            answer.raise_for_status()
        except httpx.HTTPError as err:
            raise SecretsError(f"etcd at {self.endpoint}: {err}") from None
        return {base64.b64decode(kv["key"]).decode(): base64.b64decode(kv.get("value", ""))
                for kv in answer.json().get("kvs", [])}


def rotate_key(config_path: Path, client, etcd: EtcdReader, log: Callable[[str], None],
               timeout: float = REWRITE_TIMEOUT, clock: Callable[[], float] = time.monotonic,
               sleep: Callable[[float], None] = time.sleep) -> tuple[int, str]:
    """Rotate the Secrets' key (see the module's docstring); (the number of Secrets written
    back, the new key's name).
    ``client`` is a client.rest.ApiClient as the cluster admin. Raises SecretsError."""
    try:
        doc = yaml.safe_load(config_path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise SecretsError(f"{config_path}: {err}") from None
    keys = secret_keys(doc)
    if len(keys) == 1:
        keys.insert(0, new_key(next_key_name(keys)))
        write_config(config_path, doc)
        log(f"new key {keys[0]['name']} encrypts from now on; {keys[1]['name']} still decrypts")
        sleep(RELOAD_GRACE)
    else:
        log(f"resuming the rotation to key {keys[0]['name']}")
    rewritten = reencrypt_all(client, etcd, keys[0]["name"], timeout, clock, sleep)
    dropped = [k["name"] for k in keys[1:]]
    del keys[1:]
    write_config(config_path, doc)
    log(f"dropped {', '.join(dropped)}: every Secret is under {keys[0]['name']}")
    return rewritten, keys[0]["name"]


def reencrypt_all(client, etcd: EtcdReader, key_name: str, timeout: float,
                  clock: Callable[[], float], sleep: Callable[[float], None]) -> int:
    """Write back every Secret stored under another key until none is left; how many Secrets
    were written back."""
    header = f"{HEADER}{key_name}:".encode()
    deadline, rewritten = clock() + timeout, set()
    while True:
        stale = [k for k, v in etcd.stored().items() if not v.startswith(header)]
        if not stale:
            return len(rewritten)
        if clock() > deadline:
            raise SecretsError(f"{len(stale)} Secrets are still not under {key_name} after {timeout:.0f}s "
                               "(is the apiserver running with --encryption-provider-config-automatic-reload?)")
        rewritten.update(k for k in stale if rewrite(client, k))
        sleep(0.1)


def rewrite(client, etcd_key: str) -> bool:
    """Read the Secret at ``etcd_key`` and replace it unchanged; False when it changed or went
    away meanwhile (the next scan looks at it again)."""
    namespace, name = etcd_key[len(SECRETS_PREFIX):].split("/", 1)
    try:
        secret = client.get(SECRETS, name, namespace=namespace)
        client.replace(SECRETS, secret, namespace=namespace)
    except (Conflict, NotFound):
        return False
    except ApiError as err:
        raise SecretsError(f"secret {namespace}/{name}: {err.message}") from None
    return True


def etcd_endpoint(data_dir: Path) -> str | None:
    """The cluster's etcd client URL (DIR/etcd.ports), or None."""
    try:
        return f"http://127.0.0.1:{int((data_dir / 'etcd.ports').read_text().split()[0])}"
    except (OSError, ValueError, IndexError):
        return None
