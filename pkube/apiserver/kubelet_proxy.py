"""pods/log: proxied to the kubelet of the pod's node, as Kubernetes does.

The kubelet serves Kubernetes' own path
``GET {scheme}://{node InternalIP}:{kubeletEndpoint port}/containerLogs/{ns}/{pod}/{container}``
with the query ``follow``, ``previous``, ``tailLines``, ``timestamps``,
``sinceSeconds``, ``limitBytes``; the apiserver streams its answer back as text/plain.
``KubeletConnection`` (injected into create_app) says how to reach kubelets:
scheme, default port, and the httpx client (TLS client certificate, CA).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import AsyncIterator, Optional

import httpx

from pkube.api.kinds import Registry
from pkube.apiserver import errors
from pkube.apiserver.paths import Target
from pkube.apiserver.resources import ResourceStore

DEFAULT_KUBELET_PORT = 10250
LOG_PARAMS = ("follow", "previous", "tailLines", "timestamps", "sinceSeconds", "sinceTime", "limitBytes")
INT_PARAMS = ("tailLines", "sinceSeconds", "limitBytes")


@dataclass
class KubeletConnection:
    """How the apiserver reaches kubelets. ``client_options`` go to httpx.AsyncClient
    (e.g. ``verify=ca_path, cert=(crt, key)``)."""

    scheme: str = "https"
    default_port: int = DEFAULT_KUBELET_PORT
    client_options: dict = field(default_factory=dict)

    def base_url(self, node: dict) -> str:
        """``scheme://address:port`` of ``node``'s kubelet; 503 when it has no address."""
        status = node.get("status") or {}
        addresses = status.get("addresses") or []
        by_type = {a.get("type"): a.get("address") for a in addresses if isinstance(a, dict)}
        host = by_type.get("InternalIP") or by_type.get("ExternalIP") or by_type.get("Hostname")
        if not host:
            raise errors.unavailable(f'node "{node.get("metadata", {}).get("name")}" has no address')
        port = ((status.get("daemonEndpoints") or {}).get("kubeletEndpoint") or {}).get("Port")
        host = f"[{host}]" if ":" in host else host
        return f"{self.scheme}://{host}:{port or self.default_port}"


def log_container(pod: dict, wanted: Optional[str]) -> str:
    """The container whose log is asked for; 400 like Kubernetes when ambiguous or unknown."""
    spec = pod.get("spec") or {}
    name = pod["metadata"]["name"]
    names = [c.get("name") for c in (spec.get("initContainers") or []) + (spec.get("containers") or [])]
    if wanted:
        if wanted not in names:
            raise errors.bad_request(f"container {wanted} is not valid for pod {name}")
        return wanted
    main = [c.get("name") for c in spec.get("containers") or []]
    if len(main) != 1:
        raise errors.bad_request(f"a container name must be specified for pod {name}, "
                                 f"choose one of: [{' '.join(main)}]")
    return main[0]


def log_query(query) -> dict:
    """The kubelet query from the client's; 400 on non-integer numbers."""
    params = {k: query[k] for k in LOG_PARAMS if k in query}
    for name in INT_PARAMS:
        if name in params and not params[name].lstrip("-").isdigit():
            raise errors.bad_request(f"{name}: invalid value {params[name]!r}: must be an integer")
    return params


class LogProxy:
    """Serves pods/log by streaming from the kubelet."""

    def __init__(self, store: ResourceStore, registry: Registry, connection: KubeletConnection):
        self.store, self.connection = store, connection
        self.nodes = registry.by_kind("Node", "")

    async def open(self, target: Target, query) -> AsyncIterator[bytes]:
        """Check the request and connect; returns the body stream (errors raised before it starts)."""
        pod = await self.store.get(Target(target.info, target.namespace, target.name))
        container = log_container(pod, query.get("container"))
        node_name = (pod.get("spec") or {}).get("nodeName")
        if not node_name:
            raise errors.bad_request(f"pod {target.name} does not have a host assigned")
        node = await self.store.get(Target(self.nodes, None, node_name))
        url = f"{self.connection.base_url(node)}/containerLogs/{target.namespace}/{target.name}/{container}"
        client = httpx.AsyncClient(timeout=httpx.Timeout(10.0, read=None), **self.connection.client_options)
        try:
            response = await client.send(client.build_request("GET", url, params=log_query(query)), stream=True)
        except httpx.HTTPError as exc:
            await client.aclose()
            address = httpx.URL(url).netloc.decode()
            raise errors.unavailable(f'cannot reach the kubelet of node "{node_name}" at {address}: '
                                     f'{exc or type(exc).__name__}') from None
        if response.status_code != 200:
            text = (await response.aread()).decode(errors="replace")[:1000]
            await response.aclose()
            await client.aclose()
            raise _kubelet_error(response.status_code, text)
        return relay(client, response)


def _kubelet_error(code: int, text: str) -> errors.ApiError:
    if code == 404:
        return errors.ApiError(404, "NotFound", text or "the kubelet found no such container")
    if 400 <= code < 500:
        return errors.bad_request(text)
    return errors.unavailable(f"the kubelet answered {code}: {text}")


async def relay(client: httpx.AsyncClient, response: httpx.Response) -> AsyncIterator[bytes]:
    """The raw body of a streamed ``response``; closes it and its ``client`` when done
    (or when the peer drops the connection)."""
    try:
        async for chunk in response.aiter_raw():
            yield chunk
    except httpx.HTTPError:
        return
    finally:
        await response.aclose()
        await client.aclose()
