"""An in-memory stand-in for AsyncApiClient, for unit tests of API clients.

It keeps objects per (resource plural, namespace, name), stamps a growing
resourceVersion, answers 404/409 like the apiserver (AlreadyExists on create,
Conflict on a stale resourceVersion in replace), applies merge patches, and
records every write in ``writes``. The real apiserver runs the same
contracts in tests/integration.
"""

from __future__ import annotations

import copy
import itertools
import uuid

from pkube.api.patch import json_merge_patch
from pkube.client.errors import error_for_status, status_for
from pkube.client.resources import PODS


class FakeApi:
    """See the module docstring; ``fail_next[verb] = ApiError`` makes the next call fail."""

    def __init__(self):
        self.objects: dict = {}
        self.writes: list = []
        self.fail_next: dict = {}
        self._rv = itertools.count(1)

    def _key(self, resource, namespace, name):
        return (resource.plural, namespace if resource.namespaced else None, name)

    def _fail(self, verb):
        err = self.fail_next.pop(verb, None)
        if err is not None:
            raise err

    def _missing(self, name):
        return error_for_status(status_for(404, "NotFound", f"{name!r} not found"))

    def _stamp(self, key, obj):
        obj = copy.deepcopy(obj)
        obj.setdefault("metadata", {})["resourceVersion"] = str(next(self._rv))
        self.objects[key] = obj
        return copy.deepcopy(obj)

    async def get(self, resource, name, namespace=None, subresource=None):
        self._fail("get")
        obj = self.objects.get(self._key(resource, namespace, name))
        if obj is None:
            raise self._missing(name)
        return copy.deepcopy(obj)

    async def list_all(self, resource, namespace=None, label_selector=None, field_selector=None):
        items = [copy.deepcopy(o) for (plural, ns, _), o in self.objects.items()
                 if plural == resource.plural and (namespace is None or ns == namespace)]
        return {"metadata": {"resourceVersion": str(next(self._rv))}, "items": items}

    async def create(self, resource, obj, namespace=None):
        self._fail("create")
        meta = obj["metadata"]
        key = self._key(resource, namespace or meta.get("namespace"), meta["name"])
        if key in self.objects:
            raise error_for_status(status_for(409, "AlreadyExists", f"{meta['name']!r} already exists"))
        obj = copy.deepcopy(obj)
        obj["metadata"].setdefault("uid", str(uuid.uuid4()))
        self.writes.append(("create", resource.plural, meta["name"], obj))
        return self._stamp(key, obj)

    async def replace(self, resource, obj, namespace=None, subresource=None):
        self._fail("replace")
        meta = obj["metadata"]
        key = self._key(resource, namespace or meta.get("namespace"), meta["name"])
        current = self.objects.get(key)
        if current is None:
            raise self._missing(meta["name"])
        if meta.get("resourceVersion") not in (None, current["metadata"]["resourceVersion"]):
            raise error_for_status(status_for(409, "Conflict", "the object has been modified"))
        self.writes.append(("replace", resource.plural, meta["name"], obj))
        return self._stamp(key, obj)

    async def patch(self, resource, name, patch, namespace=None, patch_type="merge", subresource=None):
        self._fail("patch")
        key = self._key(resource, namespace, name)
        if key not in self.objects:
            raise self._missing(name)
        self.writes.append(("patch", resource.plural, name, patch))
        return self._stamp(key, json_merge_patch(self.objects[key], patch))

    async def bind(self, pod, node):
        self._fail("bind")
        meta = pod["metadata"]
        return await self.patch(PODS, meta["name"], {"spec": {"nodeName": node}}, meta.get("namespace"))
