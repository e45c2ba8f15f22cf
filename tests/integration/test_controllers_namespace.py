"""Namespace and ServiceAccount controllers against the real apiserver."""

import uuid

from pkube.client.errors import NotFound
from pkube.client.resources import NAMESPACES, PODS, SERVICEACCOUNTS
from tests.helpers.waiting import until
from tests.integration.test_controllers_support import with_controllers


async def exists(client, resource, name, namespace=None):
    try:
        return await client.get(resource, name, namespace)
    except NotFound:
        return None


def test_every_namespace_gets_a_default_service_account_back_after_deletion(apiserver):
    name = f"team-{uuid.uuid4().hex[:6]}"

    async def scenario(client):
        await until(lambda: exists(client, SERVICEACCOUNTS, "default", "default"))
        await client.create(NAMESPACES, {"metadata": {"name": name}})
        first = await until(lambda: exists(client, SERVICEACCOUNTS, "default", name))
        await client.delete(SERVICEACCOUNTS, "default", name)

        async def recreated():
            account = await exists(client, SERVICEACCOUNTS, "default", name)
            return account and account["metadata"]["uid"] != first["metadata"]["uid"]
        await until(recreated)
    with_controllers(apiserver, scenario, ["serviceaccount"], kubelet=False)


def test_terminating_namespace_with_a_pod_on_a_vanished_node_is_finished(apiserver):
    name = f"gone-{uuid.uuid4().hex[:6]}"

    async def scenario(client):
        await client.create(NAMESPACES, {"metadata": {"name": name}})
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "stranded"},
               "spec": {"nodeName": "node-that-was-removed", "containers": [{"name": "c", "image": "busybox"}]}}
        await client.create(PODS, pod, name)
        await client.delete(NAMESPACES, name)

        async def reported():
            ns = await exists(client, NAMESPACES, name)
            conds = {c["type"]: c for c in ((ns or {}).get("status") or {}).get("conditions") or []}
            return ns is None or conds.get("NamespaceContentRemaining")
        await until(reported)
        await until(lambda: _absent(client, name))
    with_controllers(apiserver, scenario, ["namespace"], kubelet=False)


async def _absent(client, name):
    return await exists(client, NAMESPACES, name) is None
