"""The kubelet watches each Secret and ConfigMap its pods read on its own (a field-selected
watch of one name), shares a watch between pods and stops it with the last reader."""

from __future__ import annotations

import asyncio

from pkube.client.aio import AsyncApiClient
from pkube.client.kubeconfig import ClientConfig
from pkube.client.resources import CONFIGMAPS, SECRETS
from pkube.kubelet.objectwatch import ReferencedObjects


async def _until(predicate, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached"
        await asyncio.sleep(0.02)


def test_changes_reach_the_readers_and_unused_watches_stop(apiserver):
    async def scenario():
        async with AsyncApiClient(ClientConfig(apiserver.url)) as client:
            await client.create(CONFIGMAPS, {"metadata": {"name": "conf"}, "data": {"k": "1"}}, "default")
            await client.create(CONFIGMAPS, {"metadata": {"name": "other"}, "data": {"k": "1"}}, "default")
            changes: list[tuple[str, str, str]] = []
            objects = ReferencedObjects(client, lambda kind, obj: changes.append(
                (kind, obj["metadata"]["name"], (obj.get("data") or {}).get("k"))))
            try:
                objects.track("pod-a", "default", {("ConfigMap", "conf"), ("Secret", "missing")})
                objects.track("pod-b", "default", {("ConfigMap", "conf")})
                assert objects.watched() == {("ConfigMap", "default", "conf"), ("Secret", "default", "missing")}
                assert (await objects.get("ConfigMap", "default", "conf"))["data"] == {"k": "1"}
                assert await objects.get("Secret", "default", "missing") is None
                await _until(lambda: ("ConfigMap", "conf", "1") in changes)

                await client.patch(CONFIGMAPS, "conf", {"data": {"k": "2"}}, "default")
                await client.patch(CONFIGMAPS, "other", {"data": {"k": "2"}}, "default")
                await client.create(SECRETS, {"metadata": {"name": "missing"}, "stringData": {"s": "x"}}, "default")
                await _until(lambda: ("ConfigMap", "conf", "2") in changes and
                             any(c[:2] == ("Secret", "missing") for c in changes))
                assert await objects.get("Secret", "default", "missing") is not None
                assert all(name != "other" for _, name, _ in changes)   # not read by any pod

                objects.untrack("pod-a")
                assert objects.watched() == {("ConfigMap", "default", "conf")}
                objects.untrack("pod-b")
                assert objects.watched() == set()
            finally:
                objects.stop()
    asyncio.run(scenario())
