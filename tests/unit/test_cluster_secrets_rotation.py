"""`pkube secrets rotate-key`'s procedure against a fake apiserver and etcd: the new key goes
first, Secrets are written back until etcd holds each under it (also when the apiserver picks
up the file late), then the old key goes; a file with two keys resumes; errors are one line."""

from __future__ import annotations

import pytest
import yaml

from pkube.cluster.secrets import (SecretsError, encryption_config_path, ensure_encryption_config, rotate_key,
                             secret_keys)


class FakeCluster:
    """Secrets stored as 'k8s:enc:aesgcm:v1:<key>:...'; the apiserver writes with ``loaded``,
    which follows the file only after ``lag`` writes (a late reload)."""

    def __init__(self, config_path, names: list[str], lag: int = 0):
        self.config_path, self.lag = config_path, lag
        self.loaded = self.file_key()
        self.values = {f"/registry/secrets/default/{n}": f"k8s:enc:aesgcm:v1:{self.loaded}:x".encode()
                       for n in names}
        self.writes = 0

    def file_key(self) -> str:
        return secret_keys(yaml.safe_load(self.config_path.read_text()))[0]["name"]

    def stored(self):
        return dict(self.values)

    def get(self, resource, name, namespace=None):
        return {"metadata": {"name": name, "namespace": namespace}}

    def replace(self, resource, obj, namespace=None):
        self.writes += 1
        if self.writes > self.lag:
            self.loaded = self.file_key()
        key = f"/registry/secrets/{namespace}/{obj['metadata']['name']}"
        self.values[key] = f"k8s:enc:aesgcm:v1:{self.loaded}:x".encode()


@pytest.fixture
def config(tmp_path):
    path = encryption_config_path(tmp_path)
    assert ensure_encryption_config(path)
    assert not ensure_encryption_config(path)          # never replaced
    assert path.stat().st_mode & 0o777 == 0o600
    return path


def rotate(config, fake, **kw):
    lines = []
    result = rotate_key(config, fake, fake, lines.append, sleep=lambda s: None, **kw)
    return result, lines


def test_every_secret_ends_under_the_new_key_and_the_old_key_goes(config):
    fake = FakeCluster(config, ["a", "b", "c"], lag=2)
    (count, key), _ = rotate(config, fake)
    assert key == "key2" and count == 3
    assert all(v.startswith(b"k8s:enc:aesgcm:v1:key2:") for v in fake.values.values())
    assert [k["name"] for k in secret_keys(yaml.safe_load(config.read_text()))] == ["key2"]


def test_a_file_with_two_keys_resumes_that_rotation(config):
    doc = yaml.safe_load(config.read_text())
    fake = FakeCluster(config, ["a"])
    secret_keys(doc).insert(0, {"name": "key7", "secret": secret_keys(doc)[0]["secret"]})
    config.write_text(yaml.safe_dump(doc))
    (count, key), lines = rotate(config, fake)
    assert key == "key7" and count == 1 and lines[0] == "resuming the rotation to key key7"


def test_an_apiserver_that_never_reloads_is_reported_and_the_old_key_kept(config):
    fake = FakeCluster(config, ["a"], lag=10 ** 6)
    ticks = iter(range(0, 10 ** 6, 10))
    with pytest.raises(SecretsError, match="automatic-reload"):
        rotate_key(config, fake, fake, lambda line: None, clock=lambda: next(ticks), sleep=lambda s: None)
    assert [k["name"] for k in secret_keys(yaml.safe_load(config.read_text()))] == ["key2", "key1"]


def test_no_aesgcm_provider_is_one_clear_error(tmp_path):
    path = tmp_path / "enc.yaml"
    path.write_text(yaml.safe_dump({"resources": [{"resources": ["secrets"], "providers": [{"identity": {}}]}]}))
    with pytest.raises(SecretsError, match="not encrypted with aesgcm"):
        rotate_key(path, None, None, lambda line: None)
