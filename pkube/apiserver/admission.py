"""Admission: the checks and changes that run on every write after authentication and
authorization, as Kubernetes' admission plugins do.

A plugin sees an ``AdmissionRequest`` (the operation, the target, the new object and the
old one, the caller) and may change the new object (``mutate``) or refuse the request by
raising an ``errors.ApiError`` (``validate``). Mutating plugins run before defaults and
schema validation, validating plugins after, both inside the write's read-modify-write
step for updates: they must not do I/O there. A plugin that needs other objects (a
namespace's labels, the node of a pod, the default StorageClass) keeps them in a cache it
fills from a watch in ``start`` and reads synchronously.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Protocol, Sequence

from pkube.apiserver.auth.user import UserInfo
from pkube.apiserver.paths import Target

CREATE, UPDATE, DELETE, CONNECT = "CREATE", "UPDATE", "DELETE", "CONNECT"


@dataclass
class AdmissionRequest:
    """One write as admission sees it. ``obj`` is the object to be stored (None on
    DELETE), ``old`` the stored one (None on CREATE); ``user`` is None when the apiserver
    runs without authentication (then identity-based plugins let the request through)."""

    operation: str
    target: Target
    obj: Optional[dict]
    old: Optional[dict]
    user: Optional[UserInfo]
    dry_run: bool = False

    @property
    def kind(self) -> str:
        """The built-in kind written ("" for a custom resource)."""
        return self.target.info.builtin_kind

    @property
    def subresource(self) -> str:
        return self.target.subresource or ""


class AdmissionPlugin(Protocol):
    """What a plugin provides; both hooks are optional (see ``Admission``)."""

    name: str

    def mutate(self, request: AdmissionRequest) -> None: ...

    def validate(self, request: AdmissionRequest) -> None: ...


class Admission:
    """The ordered plugins of one apiserver. ``start``/``stop`` run the plugins' own
    ``start``/``stop`` coroutines when they have them (to fill their caches)."""

    def __init__(self, plugins: Sequence[object] = ()):
        self.plugins = list(plugins)

    def add(self, plugin: object) -> None:
        """Append ``plugin`` (before ``start``)."""
        self.plugins.append(plugin)

    def mutate(self, request: AdmissionRequest) -> None:
        """Run every plugin's ``mutate`` in order; the first ApiError refuses the write."""
        for plugin in self.plugins:
            hook = getattr(plugin, "mutate", None)
            if hook is not None:
                hook(request)

    def validate(self, request: AdmissionRequest) -> None:
        """Run every plugin's ``validate`` in order; the first ApiError refuses the write."""
        for plugin in self.plugins:
            hook = getattr(plugin, "validate", None)
            if hook is not None:
                hook(request)

    async def start(self) -> None:
        for plugin in self.plugins:
            if hasattr(plugin, "start"):
                await plugin.start()

    async def stop(self) -> None:
        for plugin in reversed(self.plugins):
            if hasattr(plugin, "stop"):
                await plugin.stop()
