"""EncryptionConfiguration files and key rotation (pure: no etcd)."""

from __future__ import annotations

import base64
import os
import stat

import pytest
import yaml

from pkube.apiserver.storage.encryption_config import (
    EncryptionConfigError, load_encryption_config, transformer_from_config, write_encryption_config,
)
from pkube.apiserver.storage.transformer import AesGcmTransformer

SECRET = "/registry/secrets/ns/s"


def config(*providers, resources=("secrets",)) -> dict:
    return {"apiVersion": "apiserver.config.k8s.io/v1", "kind": "EncryptionConfiguration",
            "resources": [{"resources": list(resources), "providers": list(providers)}]}


def aesgcm(*names_and_keys) -> dict:
    return {"aesgcm": {"keys": [{"name": n, "secret": base64.b64encode(k).decode()}
                                for n, k in names_and_keys]}}


def test_written_config_encrypts_secrets_only_and_is_private(tmp_path):
    path = tmp_path / "encryption.yaml"
    write_encryption_config(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with pytest.raises(FileExistsError):
        write_encryption_config(path)
    transformer = load_encryption_config(path)
    sealed = transformer.encrypt(SECRET, b"hunter2")
    assert sealed.startswith(b"k8s:enc:aesgcm:v1:key1:") and b"hunter2" not in sealed
    assert load_encryption_config(path).decrypt(SECRET, sealed) == b"hunter2"
    assert transformer.encrypt("/registry/configmaps/ns/c", b"x") == b"x"


def test_rotation_first_key_writes_every_key_reads():
    old, new = os.urandom(32), os.urandom(32)
    sealed_old = AesGcmTransformer(old, name="old").encrypt(SECRET, b"v1")
    rotated = transformer_from_config(config(aesgcm(("new", new), ("old", old))))
    assert rotated.decrypt(SECRET, sealed_old) == b"v1"
    assert rotated.encrypt(SECRET, b"v2").startswith(b"k8s:enc:aesgcm:v1:new:")


def test_identity_first_writes_plaintext_but_still_reads_encrypted_values():
    key = os.urandom(16)
    sealed = AesGcmTransformer(key).encrypt(SECRET, b"v1")
    decrypting = transformer_from_config(config({"identity": {}}, aesgcm(("key1", key))))
    assert decrypting.encrypt(SECRET, b"v2") == b"v2"
    assert decrypting.decrypt(SECRET, sealed) == b"v1"


def test_group_resources_map_to_their_prefix():
    t = transformer_from_config(config(aesgcm(("k", os.urandom(32))), resources=("configmaps", "deployments.apps")))
    assert t.encrypt("/registry/deployments/ns/d", b"x") != b"x"
    assert t.encrypt("/registry/configmaps/ns/c", b"x") != b"x"
    assert t.encrypt(SECRET, b"x") == b"x"


@pytest.mark.parametrize("doc", [
    None, {"kind": "Other"}, config(), config({"kms": {}}), config({"aesgcm": {"keys": []}}),
    config(aesgcm(("k", b"short"))), config({"aesgcm": {"keys": [{"name": "k", "secret": "%%"}]}}),
    config(aesgcm(("a:b", os.urandom(32)))), config(aesgcm(("k", os.urandom(32))), resources=("*.*",)),
    config({"identity": {}, "aesgcm": {}}),
])
def test_bad_configs_are_refused_with_a_clear_error(doc):
    with pytest.raises(EncryptionConfigError):
        transformer_from_config(doc)


def test_unreadable_file_is_a_config_error(tmp_path):
    with pytest.raises(EncryptionConfigError):
        load_encryption_config(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("resources: [")
    with pytest.raises(EncryptionConfigError):
        load_encryption_config(tmp_path / "bad.yaml")
