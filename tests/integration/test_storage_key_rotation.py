"""Key rotation in the store, on a real etcd: the transformer follows its configuration file
(automatic reload), a write-back of an unchanged Secret stored under an old key re-encrypts
it (nothing else changes), and once every value is under the new key the old one can go."""

from __future__ import annotations

import asyncio
import base64
import os

import aetcd
import yaml

from pkube.apiserver.storage.cacher import CachedStorage
from pkube.apiserver.storage.encryption_reload import ReloadingTransformer
from pkube.apiserver.storage.etcd import EtcdStorage
from tests.helpers.waiting import until

KEY = "/registry/secrets/default/db"


def config(*names: str) -> dict:
    keys = [{"name": n, "secret": base64.b64encode(n.encode().ljust(32, b"k")).decode()} for n in names]
    return {"apiVersion": "apiserver.config.k8s.io/v1", "kind": "EncryptionConfiguration",
            "resources": [{"resources": ["secrets"], "providers": [{"aesgcm": {"keys": keys}}, {"identity": {}}]}]}


def write(path, doc) -> None:
    tmp = path.with_name("tmp.yaml")
    tmp.write_text(yaml.safe_dump(doc))
    os.replace(tmp, path)


def test_a_write_back_moves_a_secret_to_the_new_key_and_the_old_key_can_go(etcd, tmp_path):
    path = tmp_path / "encryption.yaml"
    write(path, config("key1"))
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db", "namespace": "default"},
              "data": {"password": base64.b64encode(b"hunter2").decode()}}

    async def raw() -> bytes:
        async with aetcd.Client(host="127.0.0.1", port=etcd.client_port) as client:
            return (await client.get(KEY.encode())).value

    async def main():
        store = CachedStorage(await EtcdStorage.connect("127.0.0.1", etcd.client_port, ReloadingTransformer(path)))
        try:
            await store.create(KEY, secret)
            assert (await raw()).startswith(b"k8s:enc:aesgcm:v1:key1:") and b"hunter2" not in await raw()
            unchanged = await store.guaranteed_update(KEY, lambda obj: obj)
            assert (await raw()).startswith(b"k8s:enc:aesgcm:v1:key1:")     # current form: not rewritten

            write(path, config("key2", "key1"))

            async def rewritten():
                await store.guaranteed_update(KEY, lambda obj: obj)
                return (await raw()).startswith(b"k8s:enc:aesgcm:v1:key2:")
            await until(rewritten, timeout=10)
            write(path, config("key2"))
            fresh = await EtcdStorage.connect("127.0.0.1", etcd.client_port, ReloadingTransformer(path))
            try:
                got = await fresh.get(KEY)
            finally:
                await fresh.close()
            assert got["data"] == secret["data"]
            assert int(got["metadata"]["resourceVersion"]) > int(unchanged["metadata"]["resourceVersion"])
        finally:
            await store.close()
    asyncio.run(main())


def test_a_bad_new_file_keeps_the_previous_configuration(tmp_path):
    path = tmp_path / "encryption.yaml"
    write(path, config("key1"))
    transformer = ReloadingTransformer(path, clock=iter(range(0, 1000, 1)).__next__)
    stored = transformer.encrypt(KEY, b"{}")
    write(path, {"kind": "nonsense"})
    assert transformer.decrypt(KEY, stored) == b"{}"
    assert transformer.encrypt(KEY, b"{}").startswith(b"k8s:enc:aesgcm:v1:key1:")
