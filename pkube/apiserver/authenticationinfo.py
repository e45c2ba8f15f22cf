"""The ConfigMap kube-system/extension-apiserver-authentication: how an extension apiserver
learns to authenticate the requests this apiserver proxies to it (and its other clients).

As kube-apiserver's ClusterAuthenticationTrust controller writes it: ``client-ca-file`` (the
--client-ca-file bundle) and, when there is a requestheader CA, ``requestheader-client-ca-file``
and, as JSON arrays, ``requestheader-username-headers``, ``requestheader-uid-headers``,
``requestheader-group-headers``, ``requestheader-extra-headers-prefix`` and
``requestheader-allowed-names``. What is there already is kept and what this apiserver needs is
added (lists: union in order, without repeats; CA bundles: union without repeats, certificates
expired more than five minutes ago dropped), so several apiservers, or one whose CA was rotated,
never take away what another one still uses, and an apiserver that finds everything there
writes nothing. The files are read again at each sync: at start, then every RESYNC seconds
(upstream's once-a-minute check, which also puts back a deleted ConfigMap).

Extension apiservers read it with the Role ``extension-apiserver-authentication-reader``
(apiserver.auth.policy), bound to them in kube-system as Kubernetes documents.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import logging
from dataclasses import dataclass
from typing import Callable, Optional

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from pkube.api.kinds import Registry
from pkube.apiserver import errors
from pkube.apiserver.paths import Target
from pkube.apiserver.resources import ResourceStore, WriteOptions

log = logging.getLogger(__name__)

NAMESPACE, NAME = "kube-system", "extension-apiserver-authentication"
RESYNC = 60.0
EXPIRY_SLACK = datetime.timedelta(minutes=5)
LIST_KEYS = (("requestheader-username-headers", "username_headers"), ("requestheader-uid-headers", "uid_headers"),
             ("requestheader-group-headers", "group_headers"),
             ("requestheader-extra-headers-prefix", "extra_prefixes"),
             ("requestheader-allowed-names", "allowed_names"))


@dataclass(frozen=True)
class AuthenticationInfo:
    """What the ConfigMap says: two PEM bundles ("" for none) and the header lists."""

    client_ca: str = ""
    request_header_ca: str = ""
    username_headers: tuple[str, ...] = ()
    uid_headers: tuple[str, ...] = ()
    group_headers: tuple[str, ...] = ()
    extra_prefixes: tuple[str, ...] = ()
    allowed_names: tuple[str, ...] = ()


def info_of(data: dict) -> AuthenticationInfo:
    """The info of a ConfigMap's data; ValueError for a list that is not a JSON array of strings."""
    lists = {}
    for key, field in LIST_KEYS:
        text = data.get(key) or ""
        value = json.loads(text) if text else []
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise ValueError(f"{key} is not a JSON array of strings")
        lists[field] = tuple(value)
    return AuthenticationInfo(data.get("client-ca-file") or "", data.get("requestheader-client-ca-file") or "", **lists)


def config_map_data(info: AuthenticationInfo) -> dict[str, str]:
    """The ConfigMap's data for `info`, keyed as upstream writes it (lists as compact JSON)."""
    data = {}
    if info.client_ca:
        data["client-ca-file"] = info.client_ca
    if info.request_header_ca:
        for key, field in LIST_KEYS:
            data[key] = json.dumps(list(getattr(info, field)), separators=(",", ":"))
        data["requestheader-client-ca-file"] = info.request_header_ca
    return data


def combined(existing: AuthenticationInfo, required: AuthenticationInfo,
             now: Optional[datetime.datetime] = None) -> AuthenticationInfo:
    """`existing` with what `required` adds (see the module docstring)."""
    lists = {field: tuple(dict.fromkeys((*getattr(existing, field), *getattr(required, field))))
             for _, field in LIST_KEYS}
    return AuthenticationInfo(combined_bundle(existing.client_ca, required.client_ca, now),
                              combined_bundle(existing.request_header_ca, required.request_header_ca, now), **lists)


def combined_bundle(lhs: str, rhs: str, now: Optional[datetime.datetime] = None) -> str:
    """The certificates of both PEM bundles, each once, in order, without those that expired
    more than EXPIRY_SLACK before `now`; "" when none is left. ValueError for a bad bundle."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    seen: dict[bytes, None] = {}
    for bundle in (lhs, rhs):
        for cert in (x509.load_pem_x509_certificates(bundle.encode()) if bundle.strip() else []):
            if cert.not_valid_after_utc > now - EXPIRY_SLACK:
                seen.setdefault(cert.public_bytes(serialization.Encoding.PEM), None)
    return b"".join(seen).decode()


def read_bundle(path: Optional[str]) -> str:
    """The PEM certificates of file `path`, normalised ("" without a path). Raises OSError, ValueError."""
    if not path:
        return ""
    with open(path, "rb") as handle:
        certs = x509.load_pem_x509_certificates(handle.read())
    return b"".join(cert.public_bytes(serialization.Encoding.PEM) for cert in certs).decode()


def required_from(client_ca_file: Optional[str], request_header) -> Callable[[], AuthenticationInfo]:
    """A function reading what this apiserver requires now: its client CA file and its
    requestheader config (apiserver.auth.requestheader.RequestHeaderConfig, or None)."""
    def required() -> AuthenticationInfo:
        if request_header is None:
            return AuthenticationInfo(read_bundle(client_ca_file))
        return AuthenticationInfo(read_bundle(client_ca_file), read_bundle(request_header.client_ca_file),
                                  request_header.username_headers, request_header.uid_headers,
                                  request_header.group_headers, request_header.extra_prefixes,
                                  request_header.allowed_names)
    return required


class AuthenticationInfoPublisher:
    """Keeps the ConfigMap holding what ``required()`` returns (see the module docstring)."""

    def __init__(self, store: ResourceStore, registry: Registry, required: Callable[[], AuthenticationInfo],
                 resync: float = RESYNC):
        self.store, self.required, self.resync = store, required, resync
        self.target = Target(registry.by_kind("ConfigMap", ""), NAMESPACE, NAME)
        self._task: Optional[asyncio.Task] = None

    async def start(self) -> None:
        """Sync once, then keep syncing in the background."""
        await self.sync()
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.resync)
            await self.sync()

    async def sync(self) -> bool:
        """Create or update the ConfigMap when it lacks something; True when written. Never
        raises (logs): the apiserver serves without it."""
        try:
            return await self._sync(self.required())
        except Exception:  # noqa: BLE001 - a bad file, a bad existing ConfigMap, the store
            log.exception("could not publish %s/%s", NAMESPACE, NAME)
            return False

    async def _sync(self, required: AuthenticationInfo) -> bool:
        current = await self._current()
        if current is None:
            body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": NAME, "namespace": NAMESPACE},
                    "data": config_map_data(combined(AuthenticationInfo(), required))}
            try:
                await self.store.create(self.target, body, WriteOptions())
                return True
            except errors.ApiError as exc:
                if exc.reason != "AlreadyExists":
                    raise
                current = await self._current()
        if config_map_data(combined(info_of(current.get("data") or {}), required)) == (current.get("data") or {}):
            return False
        await self.store.write(self.target, lambda obj: {**obj, "data": config_map_data(
            combined(info_of(obj.get("data") or {}), required))}, WriteOptions())
        return True

    async def _current(self) -> Optional[dict]:
        try:
            return await self.store.get(self.target)
        except errors.ApiError as exc:
            if exc.reason == "NotFound":
                return None
            raise
