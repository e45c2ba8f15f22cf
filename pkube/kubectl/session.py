"""One pkubectl invocation's connection: kubeconfig, REST client and API discovery.

Built from the global flags (``--kubeconfig``, ``--context``, ``-n``); the
client and the discovered resources are created on first use, so commands
that never talk to the server (``version --client``) import nothing heavy.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from pkube.kubectl.errors import CliError

TABLE_ACCEPT = ("application/json;as=Table;v=v1;g=meta.k8s.io,"
                "application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json")
ALL_CATEGORY = "all"
DISCOVERY_TTL_SECONDS = 6 * 3600  # kubectl's discovery cache lifetime


@dataclass(frozen=True)
class ApiResource:
    """One resource as discovery describes it (group "" is core)."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    singular: str = ""
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    verbs: tuple[str, ...] = ()

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def qualified(self) -> str:
        """``deployment.apps`` / ``pod``: how kubectl names the type in messages."""
        return f"{self.kind.lower()}.{self.group}" if self.group else self.kind.lower()

    def names(self) -> tuple[str, ...]:
        return (self.plural, self.singular or self.kind.lower(), self.kind.lower(), *self.short_names)


@dataclass
class Flags:
    """The global flags every command takes."""

    kubeconfig: Optional[str] = None
    context: Optional[str] = None
    namespace: Optional[str] = None
    request_timeout: float = 30.0


class Session:
    """Lazily connected state of one invocation."""

    def __init__(self, flags: Flags):
        self.flags = flags

    @functools.cached_property
    def config(self):
        from pkube.client.kubeconfig import KubeconfigError, load_kubeconfig

        try:
            return load_kubeconfig(self.flags.kubeconfig, self.flags.context)
        except KubeconfigError as err:
            raise CliError(str(err)) from None

    @property
    def namespace(self) -> str:
        """``-n`` when given, else the context's namespace."""
        return self.flags.namespace or self.config.namespace or "default"

    @functools.cached_property
    def client(self):
        from pkube.client.rest import ApiClient

        return ApiClient(self.config, timeout=self.flags.request_timeout)

    def close(self) -> None:
        if "client" in self.__dict__:
            self.client.close()

    # ------------------------------------------------------------ raw HTTP

    def request(self, method: str, path: str, *, params: Optional[dict] = None, accept: Optional[str] = None,
                body: Optional[bytes] = None, content_type: Optional[str] = None) -> "object":
        """One HTTP call; the httpx Response for a 2xx answer, else raises ApiError."""
        import httpx
        from pkube.client.errors import error_from_response, unavailable

        headers = {}
        if accept:
            headers["Accept"] = accept
        if content_type:
            headers["Content-Type"] = content_type
        try:
            response = self.client.http.request(method, path, params=params or {}, content=body, headers=headers)
        except httpx.TransportError as err:
            raise unavailable(self.config.server + path, err) from None
        if response.status_code >= 400:
            raise error_from_response(response.status_code, response.content)
        return response

    def get_json(self, path: str, params: Optional[dict] = None) -> dict:
        return self.request("GET", path, params=params).json()

    # ------------------------------------------------------------ discovery

    @functools.cached_property
    def resources(self) -> list[ApiResource]:
        """Every top-level resource the server serves (subresources left out), core first.

        Read from the discovery cache (~/.kube/cache/pkubectl) when fresh, like
        kubectl's; ``resolve`` refreshes it once when a name is not found.
        """
        cached = read_discovery_cache(self.discovery_cache_path)
        if cached is not None:
            self._discovery_from_cache = True
            return cached
        return self.refresh_discovery()

    @property
    def discovery_cache_path(self) -> Path:
        safe = re.sub(r"[^A-Za-z0-9.-]+", "_", self.config.server)
        return Path.home() / ".kube" / "cache" / "pkubectl" / f"{safe}.json"

    def refresh_discovery(self) -> list[ApiResource]:
        """Ask the server again and rewrite the cache."""
        found = self._discover()
        write_discovery_cache(self.discovery_cache_path, found)
        self.__dict__["resources"] = found
        self._discovery_from_cache = False
        return found

    def _discover(self) -> list[ApiResource]:
        found = self._group_resources("/api/v1", "", "v1")
        for group in self.get_json("/apis").get("groups") or []:
            preferred = (group.get("preferredVersion") or {}).get("version") or group["versions"][0]["version"]
            found += self._group_resources(f"/apis/{group['name']}/{preferred}", group["name"], preferred)
        return found

    def _group_resources(self, path: str, group: str, version: str) -> list[ApiResource]:
        listed = self.get_json(path).get("resources") or []
        return [ApiResource(group=group, version=version, plural=r["name"], kind=r["kind"],
                            namespaced=bool(r.get("namespaced")), singular=r.get("singularName", ""),
                            short_names=tuple(r.get("shortNames") or ()), categories=tuple(r.get("categories") or ()),
                            verbs=tuple(r.get("verbs") or ()))
                for r in listed if "/" not in r["name"]]

    def resolve(self, name: str) -> ApiResource:
        """A user-typed type (``po``, ``deployments.apps``, ``Deployment``) as a resource.

        Raises CliError like kubectl: ``the server doesn't have a resource type "x"``.
        """
        found = self._find(name)
        if found is None and getattr(self, "_discovery_from_cache", False):
            self.refresh_discovery()
            found = self._find(name)
        if found is not None:
            return found
        raise CliError(f"the server doesn't have a resource type \"{name}\"")

    def _find(self, name: str) -> Optional[ApiResource]:
        base, _, group = name.lower().partition(".")
        for res in self.resources:
            if base in res.names() and (not group or group in (res.group, f"{res.version}.{res.group}")):
                return res
        return None

    def resolve_many(self, text: str) -> list[ApiResource]:
        """``po,svc`` or ``all`` (the "all" category) as resources, in order, without repeats."""
        out: list[ApiResource] = []
        for part in filter(None, text.split(",")):
            found = ([r for r in self.resources if ALL_CATEGORY in r.categories]
                     if part.lower() == ALL_CATEGORY else [self.resolve(part)])
            out.extend(r for r in found if r not in out)
        return out

    def for_object(self, obj: dict) -> ApiResource:
        """The resource serving an object's apiVersion and kind."""
        api_version, kind = obj.get("apiVersion") or "", obj.get("kind") or ""
        group, _, version = api_version.rpartition("/")
        for attempt in range(2):
            for res in self.resources:
                if res.kind == kind and res.group == group:
                    return res
            if attempt == 0 and getattr(self, "_discovery_from_cache", False):
                self.refresh_discovery()
        raise CliError(f"resource mapping not found for name: \"{(obj.get('metadata') or {}).get('name', '')}\" "
                       f"namespace: \"{(obj.get('metadata') or {}).get('namespace', '')}\" from \"\": "
                       f"no matches for kind \"{kind}\" in version \"{api_version}\"")

    def object_namespace(self, res: ApiResource, obj: Optional[dict] = None) -> Optional[str]:
        """The namespace a command acts in: the object's own, else -n, else the context's."""
        if not res.namespaced:
            return None
        own = ((obj or {}).get("metadata") or {}).get("namespace")
        if own and self.flags.namespace and own != self.flags.namespace:
            raise CliError(f"the namespace from the provided object \"{own}\" does not match the namespace "
                           f"\"{self.flags.namespace}\". You must pass '--namespace={own}' to perform this operation.")
        return own or self.namespace


def read_discovery_cache(path: Path, now: Optional[float] = None) -> Optional[list[ApiResource]]:
    """The cached resources when the file is younger than DISCOVERY_TTL_SECONDS, else None."""
    try:
        if (now or time.time()) - path.stat().st_mtime > DISCOVERY_TTL_SECONDS:
            return None
        entries = json.loads(path.read_text())
        return [ApiResource(**{k: tuple(v) if isinstance(v, list) else v for k, v in e.items()}) for e in entries]
    except (OSError, ValueError, TypeError):
        return None


def write_discovery_cache(path: Path, resources: list[ApiResource]) -> None:
    """Best effort: a cache that cannot be written is simply not used."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps([dataclasses.asdict(r) for r in resources]))
        os.replace(tmp, path)
    except OSError:
        pass
