"""A dict-backed kubelet ObjectSource for unit tests: objects keyed by (kind, namespace, name)."""

from __future__ import annotations

import base64


class DictSource:
    """`objects[(kind, namespace, name)] = object`; counts the reads in `reads`."""

    def __init__(self):
        self.objects: dict[tuple[str, str, str], dict] = {}
        self.reads = 0

    async def get(self, kind: str, namespace: str, name: str) -> dict | None:
        self.reads += 1
        return self.objects.get((kind, namespace, name))

    def secret(self, name: str, data: dict[str, str | bytes], namespace: str = "default") -> dict:
        """Store a Secret with `data` (values base64-encoded as the API holds them)."""
        encoded = {k: base64.b64encode(v.encode() if isinstance(v, str) else v).decode() for k, v in data.items()}
        obj = {"kind": "Secret", "metadata": {"name": name, "namespace": namespace}, "data": encoded}
        self.objects[("Secret", namespace, name)] = obj
        return obj

    def config_map(self, name: str, data: dict[str, str], namespace: str = "default",
                   binary: dict[str, bytes] | None = None) -> dict:
        obj = {"kind": "ConfigMap", "metadata": {"name": name, "namespace": namespace}, "data": dict(data)}
        if binary:
            obj["binaryData"] = {k: base64.b64encode(v).decode() for k, v in binary.items()}
        self.objects[("ConfigMap", namespace, name)] = obj
        return obj

    def delete(self, kind: str, name: str, namespace: str = "default") -> None:
        self.objects.pop((kind, namespace, name), None)
