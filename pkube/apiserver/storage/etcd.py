"""The store on a real etcd (v3 API) through aetcd's gRPC channel.

Values are compact JSON (optionally transformed, e.g. encrypted); the
resourceVersion is the etcd mod_revision, stamped on every object returned
and stripped from every object written. Calls go straight to etcd's gRPC
stubs (aetcd's wrappers lack limit, revision and count).

Objects returned are fresh dicts owned by the caller, except where a method
says it returns a shallow copy of the caller's input. Events yielded by
``watch`` are fresh per call of ``watch``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import AsyncIterator, Optional, Sequence

import aetcd
import grpc
from aetcd import rpc

from pkube.api.jsonvalue import dumps, loads
from pkube.apiserver.storage.interface import (
    Compacted, Conflict, KeyExists, ListResult, NotFound, Preconditions, SpaceExceeded, Storage,
    StorageUnavailable, UpdateFn, WatchEvent,
)
from pkube.apiserver.storage.events import StoredEvent
from pkube.apiserver.storage.keys import BadStorageRequest, decode_continue, encode_continue, key_range
from pkube.apiserver.storage.transformer import Transformer

CALL_TIMEOUT = 30.0
COMPACT_PROBE_TIMEOUT = 2.0
MAX_MESSAGE_BYTES = 512 * 1024 * 1024
CHANNEL_OPTIONS = {
    "grpc.max_receive_message_length": MAX_MESSAGE_BYTES,
    "grpc.max_send_message_length": MAX_MESSAGE_BYTES,
    # reconnect quickly after an etcd restart (gRPC's default backs off up to 2 minutes)
    "grpc.initial_reconnect_backoff_ms": 100,
    "grpc.min_reconnect_backoff_ms": 100,
    "grpc.max_reconnect_backoff_ms": 2000,
}
_EQUAL = rpc.Compare.CompareResult.EQUAL
_MOD = rpc.Compare.CompareTarget.MOD
_CREATE = rpc.Compare.CompareTarget.CREATE
_DELETE = rpc.Event.EventType.DELETE
_HEAD_KEYS = ("apiVersion", "kind", "metadata")
RECENT_KEYS = 8192      # keys whose last write this store remembers (RecentWrites)
_UNAVAILABLE_CODES = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED,
                      grpc.StatusCode.CANCELLED, grpc.StatusCode.RESOURCE_EXHAUSTED}


def stored_form(obj: dict) -> dict:
    """``obj`` with apiVersion, kind and metadata as its first keys (the layout
    ``stamp_raw`` relies on); ``obj`` itself when already so."""
    head = [k for k in _HEAD_KEYS if k in obj]
    if list(obj)[:len(head)] == head:
        return obj
    return {**{k: obj[k] for k in head}, **obj}


def stamp_raw(plain: bytes, revision: int) -> bytes:
    """The stored JSON ``plain`` with metadata.resourceVersion set, spliced in
    without decoding when metadata is the first object-valued key (always so
    for values this store wrote); decoded and re-encoded otherwise."""
    at = plain.find(b'"metadata":{')
    if at > 0 and plain[at - 1:at] in (b",", b"{") and plain.find(b"{", 1, at) == -1 \
            and plain.find(b"[", 0, at) == -1:
        body = at + len(b'"metadata":{')
        separator = b"" if plain[body:body + 1] == b"}" else b","
        return b'%s"resourceVersion":"%d"%s%s' % (plain[:body], revision, separator, plain[body:])
    obj = loads(plain)
    obj.setdefault("metadata", {})["resourceVersion"] = str(revision)
    return dumps(obj)


def strip_version(obj: dict) -> dict:
    """``obj`` without metadata.resourceVersion (a shallow copy only when needed)."""
    meta = obj.get("metadata")
    if not meta or "resourceVersion" not in meta:
        return obj
    meta = dict(meta)
    del meta["resourceVersion"]
    return {**obj, "metadata": meta}


def with_version(obj: dict, revision: int) -> dict:
    """A shallow copy of ``obj`` stamped with ``revision`` (nested values shared)."""
    return {**obj, "metadata": {**(obj.get("metadata") or {}), "resourceVersion": str(revision)}}


class RecentWrites:
    """The state each key was last written in by this store: (plain value, mod_revision), for
    at most ``capacity`` keys (the least recently written forgotten first). A suggestion for
    the key's next conditional write, as the watch cache's newest state is, but never behind
    this apiserver's own writes (the watch cache shows them only once etcd's watch echoes
    them: a status written right after a binding would be tried on the state before it).
    Only a suggestion: another writer may have changed the key since; a compare on the
    mod_revision catches that. Memory: the plain values of ``capacity`` objects at most."""

    def __init__(self, capacity: int = RECENT_KEYS):
        self.capacity = capacity
        self._states: dict[str, tuple[bytes, int]] = {}

    def remember(self, key: str, plain: bytes, revision: int) -> None:
        self._states.pop(key, None)
        self._states[key] = (plain, revision)
        if len(self._states) > self.capacity:
            del self._states[next(iter(self._states))]

    def forget(self, key: str) -> None:
        self._states.pop(key, None)

    def newest(self, key: str, suggestion: Optional[tuple[bytes, int]]) -> Optional[tuple[bytes, int]]:
        """The newer (by mod_revision) of ``suggestion`` and the remembered state of ``key``."""
        mine = self._states.get(key)
        if mine is None or (suggestion is not None and suggestion[1] >= mine[1]):
            return suggestion
        return mine


@dataclass(frozen=True)
class ClientTLS:
    """PEM bytes of the etcd CA and of the client's certificate and key. Every member's
    serving certificate must name ``server_name`` (pkube/cluster/etcdpki.py puts "etcd" in each):
    with several members gRPC has no single host name to check against."""

    ca: bytes
    cert: bytes
    key: bytes
    server_name: str = "etcd"

    @classmethod
    def from_files(cls, ca: str, cert: str, key: str) -> "ClientTLS":
        """Read the three files; OSError names the one missing."""
        return cls(Path(ca).read_bytes(), Path(cert).read_bytes(), Path(key).read_bytes())


class _TLSClient(aetcd.Client):
    """aetcd's client on a TLS channel (aetcd itself opens only plain ones). EtcdStorage
    uses nothing of the client but its channel and metadata, which this sets up."""

    def __init__(self, tls: ClientTLS, **kwargs):
        super().__init__(**kwargs)
        self._tls = tls

    async def connect(self) -> None:
        if self._connected.is_set():
            return
        credentials = grpc.ssl_channel_credentials(self._tls.ca, self._tls.key, self._tls.cert)
        options = [*self._options.items(), ("grpc.ssl_target_name_override", self._tls.server_name)]
        self.channel = grpc.aio.secure_channel(f"{self._host}:{self._port}", credentials, options=options)
        self._connected.set()


class EtcdStorage(Storage):
    """``Storage`` on etcd. ``client`` must have been created with
    ``CHANNEL_OPTIONS`` to list more than 4 MiB at once (``connect`` does)."""

    def __init__(self, client: aetcd.Client, transformer: Optional[Transformer] = None,
                 timeout: float = CALL_TIMEOUT):
        self._client = client
        self._transformer = transformer
        self._timeout = timeout
        self._kv: Optional[rpc.KVStub] = None
        self._watch: Optional[rpc.WatchStub] = None
        self.recent = RecentWrites()

    @classmethod
    async def connect(cls, host: str, port: int, transformer: Optional[Transformer] = None,
                      tls: Optional[ClientTLS] = None) -> "EtcdStorage":
        """A store on a new client to etcd at host:port (no round trip yet), over TLS with ``tls``."""
        return await cls._open(host, port, dict(CHANNEL_OPTIONS), transformer, tls)

    @classmethod
    async def connect_endpoints(cls, endpoints: Sequence[str], transformer: Optional[Transformer] = None,
                                tls: Optional[ClientTLS] = None) -> "EtcdStorage":
        """A store on the etcd members at ``endpoints`` (``http(s)://host:port`` or
        ``host:port``; IPv4 when there are several): gRPC keeps one connection
        and fails over to the next member when it breaks. Raises ValueError on
        a bad endpoint."""
        addresses = [_address(e) for e in endpoints]
        if not addresses:
            raise ValueError("no etcd endpoint given")
        if len(addresses) == 1:
            return await cls.connect(*addresses[0], transformer, tls)
        if not all(_is_ipv4(host) for host, _ in addresses):
            raise ValueError("several etcd endpoints must be IPv4 addresses")
        # aetcd dials f"{host}:{port}": a multi-address target ends with the last port
        head = ",".join(f"{host}:{port}" for host, port in addresses[:-1])
        options = {**CHANNEL_OPTIONS, "grpc.lb_policy_name": "pick_first"}
        return await cls._open(f"ipv4:{head},{addresses[-1][0]}", addresses[-1][1], options, transformer, tls)

    @classmethod
    async def _open(cls, host: str, port: int, options: dict, transformer: Optional[Transformer],
                    tls: Optional[ClientTLS]) -> "EtcdStorage":
        if tls is None:
            client = aetcd.Client(host=host, port=port, options=options)
        else:
            client = _TLSClient(tls, host=host, port=port, options=options)
        await client.connect()
        return cls(client, transformer)

    # -- codec --------------------------------------------------------------

    @staticmethod
    def _serialize(obj: dict) -> bytes:
        """The plain stored JSON of ``obj`` (before the transformer)."""
        return dumps(stored_form(strip_version(obj)))

    def _at_rest(self, key: str, plain: bytes) -> bytes:
        return self._transformer.encrypt(key, plain) if self._transformer else plain

    def _encode(self, key: str, obj: dict) -> bytes:
        return self._at_rest(key, self._serialize(obj))

    def _plain(self, key: str, value: bytes) -> bytes:
        return self._transformer.decrypt(key, value) if self._transformer else value

    def _stale(self, key: str, value: bytes) -> bool:
        """Whether ``value`` should be rewritten in the transformer's current form."""
        is_stale = getattr(self._transformer, "is_stale", None)
        return bool(is_stale and is_stale(key, value))

    def _decode(self, key: str, value: bytes, revision: int) -> dict:
        obj = loads(self._plain(key, value))
        obj.setdefault("metadata", {})["resourceVersion"] = str(revision)
        return obj

    def _decode_kv(self, kv) -> dict:
        return self._decode(kv.key.decode(), kv.value, kv.mod_revision)

    # -- rpc plumbing -------------------------------------------------------

    async def _stubs(self) -> rpc.KVStub:
        if self._kv is None:
            await self._client.connect()
            self._kv = rpc.KVStub(self._client.channel)
            self._watch = rpc.WatchStub(self._client.channel)
        return self._kv

    async def _call(self, method_name: str, request, key: str, revision: int = 0):
        """One unary KV call; gRPC errors come back as store errors."""
        stub = await self._stubs()
        try:
            return await getattr(stub, method_name)(request, timeout=self._timeout,
                                                    metadata=self._client.metadata)
        except grpc.aio.AioRpcError as e:
            raise await self._translate(e, key, revision) from None

    async def _translate(self, error: grpc.aio.AioRpcError, key: str, revision: int) -> Exception:
        details = error.details() or ""
        if "database space exceeded" in details:
            return SpaceExceeded(key, details)
        if error.code() in _UNAVAILABLE_CODES:
            return StorageUnavailable(key, f"etcd unavailable: {details}")
        if "compacted" in details:
            return Compacted(key, revision, await self._compact_revision())
        if "future revision" in details:
            return BadStorageRequest(f"revision {revision} is newer than the store's newest")
        if error.code() == grpc.StatusCode.INVALID_ARGUMENT:
            return BadStorageRequest(f"etcd rejected the request for {key}: {details}")
        return StorageUnavailable(key, f"etcd error {error.code().name}: {details}")

    async def _compact_revision(self) -> int:
        """The oldest revision etcd still keeps (0 when it cannot be learnt).

        Called only after etcd said a revision was compacted: a watch from
        revision 1 is then answered with the compaction revision at once."""
        async def probe() -> int:
            async with contextlib.aclosing(self._watch_responses(b"\0", b"", 1)) as responses:
                async for response in responses:
                    if response.compact_revision or not response.created:
                        return response.compact_revision
            return 0
        try:
            return await asyncio.wait_for(probe(), COMPACT_PROBE_TIMEOUT)
        except (StorageUnavailable, asyncio.TimeoutError):
            return 0

    async def _get_kv(self, key: str):
        response = await self._call("Range", rpc.RangeRequest(key=key.encode()), key)
        if not response.kvs:
            raise NotFound(key)
        return response.kvs[0]

    # -- the interface ------------------------------------------------------

    async def get(self, key: str) -> dict:
        return self._decode_kv(await self._get_kv(key))

    async def list(self, prefix: str, revision: int = 0, limit: int = 0,
                   continue_token: Optional[str] = None) -> ListResult:
        """See Storage.list. A continue token overrides ``revision``; a bad
        token raises BadStorageRequest; a page's token resumes after its last key."""
        kvs, page = await self._page(prefix, revision, limit, continue_token)
        page.items = [self._decode_kv(kv) for kv in kvs]
        return page

    async def list_raw(self, prefix: str, revision: int = 0, limit: int = 0,
                       continue_token: Optional[str] = None) -> ListResult:
        """Like ``list`` but ``items`` are the objects' JSON bytes (resourceVersion
        stamped), never decoded: for a list answered without looking inside
        the objects, ``b",".join(items)`` is the JSON of its items."""
        kvs, page = await self._page(prefix, revision, limit, continue_token)
        page.items = [stamp_raw(self._plain(kv.key.decode(), kv.value), kv.mod_revision) for kv in kvs]
        return page

    async def _page(self, prefix: str, revision: int, limit: int,
                    continue_token: Optional[str]) -> tuple[list, ListResult]:
        """The raw kvs of one page, and its ListResult without items."""
        if limit < 0 or revision < 0:
            raise BadStorageRequest("limit and revision must not be negative")
        start, end = key_range(prefix)
        if continue_token:
            revision, start_key = decode_continue(continue_token, prefix)
            start = start_key.encode()
        request = rpc.RangeRequest(key=start, range_end=end, revision=revision, limit=limit)
        response = await self._call("Range", request, prefix, revision)
        read_at = revision or response.header.revision
        if not response.more:
            return response.kvs, ListResult([], read_at, None, 0)
        token = encode_continue(read_at, prefix, response.kvs[-1].key.decode() + "\0")
        return response.kvs, ListResult([], read_at, token, response.count - len(response.kvs))

    async def create(self, key: str, obj: dict) -> dict:
        """See Storage.create. Returns a shallow copy of ``obj`` (nested values
        shared with it) stamped with the new resourceVersion."""
        plain = self._serialize(obj)
        request = rpc.TxnRequest(
            compare=[rpc.Compare(key=key.encode(), target=_CREATE, result=_EQUAL, create_revision=0)],
            success=[rpc.RequestOp(request_put=rpc.PutRequest(key=key.encode(),
                                                              value=self._at_rest(key, plain)))])
        response = await self._call("Txn", request, key)
        if not response.succeeded:
            raise KeyExists(key)
        self.recent.remember(key, plain, response.header.revision)
        return with_version(strip_version(obj), response.header.revision)

    async def guaranteed_update(self, key: str, fn: UpdateFn,
                                preconditions: Optional[Preconditions] = None,
                                suggestion: Optional[tuple[bytes, int]] = None) -> dict:
        """See Storage.guaranteed_update. The result is a shallow copy of what
        ``fn`` returned, stamped with the new resourceVersion.

        ``suggestion`` is a state believed current, (plain value, mod_revision),
        from the watch cache; the newer of it and the state this store last
        wrote (``recent``) is tried first, which saves the read. When it proves
        stale (the swap fails) or cannot be trusted for a verdict (``fn`` or the
        preconditions reject it, or nothing would change), the key is read and
        the update decided again on the stored state."""
        suggestion = self.recent.newest(key, suggestion)
        if suggestion is not None:
            try:
                written, kv = await self._update_once(key, *suggestion, fn, preconditions, trusted=False)
            except Exception:  # noqa: BLE001 - judged on a possibly stale state: judge again
                written, kv = None, None
            if written is not None:
                return written
        else:
            kv = None
        kv = kv or await self._get_kv(key)
        while True:
            written, kv = await self._update_once(key, self._plain(key, kv.value), kv.mod_revision, fn,
                                                  preconditions, trusted=True, stale=self._stale(key, kv.value))
            if written is not None:
                return written

    async def _update_once(self, key: str, plain: bytes, mod_revision: int, fn: UpdateFn,
                           preconditions: Optional[Preconditions], trusted: bool, stale: bool = False):
        """One read-modify-write step from the state (plain, mod_revision):
        (result, None) when written, or when nothing changes and the state is
        ``trusted``; (None, fresh kv) when the swap lost; (None, None) for an
        untrusted state that would change nothing. A ``stale`` stored value (not in
        the transformer's current at-rest form: an old encryption key) is written
        back even when nothing changes, as Kubernetes does, so that reading and
        replacing every Secret re-encrypts them after a key rotation."""
        current = self._stamped(plain, mod_revision)
        if preconditions is not None:
            preconditions.check(key, current)
        desired = fn(self._stamped(plain, mod_revision))
        self._check_version(key, desired, current)
        if strip_version(desired) == strip_version(current) and not stale:
            return (current, None) if trusted else (None, None)
        plain = self._serialize(desired)
        response = await self._call("Txn", self._swap(key, mod_revision, put=self._at_rest(key, plain)), key)
        if response.succeeded:
            self.recent.remember(key, plain, response.header.revision)
            return with_version(strip_version(desired), response.header.revision), None
        return None, self._kv_after_failed_swap(key, response)

    async def delete(self, key: str, preconditions: Optional[Preconditions] = None,
                     suggestion: Optional[tuple[bytes, int]] = None) -> dict:
        """See Storage.delete. With preconditions, the newer of ``suggestion`` (the watch
        cache's newest state, as for ``guaranteed_update``) and the state this store last
        wrote is tried first: when the preconditions hold on it and the key is still at its
        revision, one round trip deletes it; otherwise the key is read and judged again."""
        try:
            if preconditions is None or preconditions == Preconditions():
                return await self._delete_unconditionally(key)
            guess = self.recent.newest(key, suggestion)
            if guess is not None:
                current = self._stamped(*guess)
                try:
                    preconditions.check(key, current)
                except Conflict:
                    guess = None                  # judged on a possibly stale state: judge again
            kv = None
            if guess is not None:
                deleted, kv = await self._delete_at(key, current, guess[1])
                if deleted is not None:
                    return deleted
            kv = kv or await self._get_kv(key)
            while True:
                current = self._decode_kv(kv)
                preconditions.check(key, current)
                deleted, kv = await self._delete_at(key, current, kv.mod_revision)
                if deleted is not None:
                    return deleted
        finally:
            self.recent.forget(key)

    async def _delete_at(self, key: str, current: dict, mod_revision: int):
        """Delete ``key`` if still at ``mod_revision``: (``current`` stamped with the deletion's
        revision, None), or (None, the key's fresh kv) when it moved; NotFound when gone."""
        response = await self._call("Txn", self._swap(key, mod_revision, put=None), key)
        if response.succeeded:
            current["metadata"]["resourceVersion"] = str(response.header.revision)
            return current, None
        return None, self._kv_after_failed_swap(key, response)

    def known(self, key: str, suggestion: Optional[tuple[bytes, int]] = None) -> Optional[dict]:
        """The newest state of ``key`` known without a read (the newer of ``suggestion`` and
        what this store last wrote), decoded and stamped; None when none is known. Possibly
        stale: only for a write conditioned on its resourceVersion."""
        guess = self.recent.newest(key, suggestion)
        return self._stamped(*guess) if guess is not None else None

    async def watch(self, prefix: str, revision: int) -> AsyncIterator[WatchEvent]:
        """See Storage.watch; events are StoredEvents (pkube/apiserver/storage/events.py).

        revision 0 means "from now". Close the iterator
        (``aclose()`` or leaving ``async with contextlib.aclosing(...)``) to
        end the gRPC stream at once; cancelling the consumer ends it too."""
        async with contextlib.aclosing(self.watch_batches(prefix, revision)) as batches:
            async for batch, _ in batches:
                for event in batch:
                    yield event

    async def watch_batches(self, prefix: str, revision: int, progress_interval: Optional[float] = None
                            ) -> AsyncIterator[tuple[list[StoredEvent], int]]:
        """Like ``watch``, one etcd response at a time: (events, revision) where
        every change under ``prefix`` up to ``revision`` has now been yielded.

        With ``progress_interval``, etcd is asked for progress that often, so
        ``revision`` also advances while the prefix sees no change (then
        ``events`` is empty; it lags etcd by about one interval)."""
        start, end = key_range(prefix)
        responses = self._watch_responses(start, end, revision + 1 if revision else 0, progress_interval)
        pending = 0  # the last progress revision, not yet trusted
        async with contextlib.aclosing(responses):
            async for response in responses:
                if response.compact_revision:
                    raise Compacted(prefix, revision, response.compact_revision)
                if response.canceled:
                    raise StorageUnavailable(prefix, f"etcd cancelled the watch: {response.cancel_reason}")
                if response.events:
                    pending = 0
                    yield [self._event(event) for event in response.events], response.events[-1].kv.mod_revision
                elif not response.created:
                    # etcd < 3.4.24 may send a progress notification ahead of events
                    # it has already queued (etcd issue #15220): trust one only when
                    # the next arrives, an interval later.
                    if pending:
                        yield [], pending
                    pending = response.header.revision

    async def key_counts(self, prefix: str = "/registry/") -> dict[str, int]:
        """{resource: keys} under ``prefix``, the resource being each key's next segment
        (one keys-only range; for apiserver_storage_objects)."""
        start, end = key_range(prefix)
        response = await self._call("Range", rpc.RangeRequest(key=start, range_end=end, keys_only=True), prefix)
        counts: dict[str, int] = {}
        for kv in response.kvs:
            resource = kv.key[len(start):].split(b"/", 1)[0].decode()
            counts[resource] = counts.get(resource, 0) + 1
        return counts

    async def current_revision(self) -> int:
        response = await self._call("Range", rpc.RangeRequest(key=b"\0"), "")
        return response.header.revision

    async def compact(self, revision: int) -> None:
        """See Storage.compact. Compacting to an already compacted revision is
        a no-op; a future revision raises BadStorageRequest."""
        try:
            await self._call("Compact", rpc.CompactionRequest(revision=revision), "", revision)
        except Compacted:
            return

    async def close(self) -> None:
        await self._client.close()
        self._kv = self._watch = None

    # -- helpers ------------------------------------------------------------

    def _stamped(self, plain: bytes, revision: int) -> dict:
        obj = loads(plain)
        obj.setdefault("metadata", {})["resourceVersion"] = str(revision)
        return obj

    @staticmethod
    def _check_version(key: str, desired: dict, current: dict) -> None:
        wanted = (desired.get("metadata") or {}).get("resourceVersion")
        have = current["metadata"]["resourceVersion"]
        if wanted and wanted != have:
            raise Conflict(key, "the object has been modified; please apply your changes to "
                                f"the latest version and try again (resourceVersion {wanted}, "
                                f"current {have})", current)

    @staticmethod
    def _swap(key: str, mod_revision: int, put: Optional[bytes]) -> rpc.TxnRequest:
        """Put (or delete when ``put`` is None) if the key is unchanged, else read it."""
        bkey = key.encode()
        op = (rpc.RequestOp(request_put=rpc.PutRequest(key=bkey, value=put)) if put is not None
              else rpc.RequestOp(request_delete_range=rpc.DeleteRangeRequest(key=bkey)))
        return rpc.TxnRequest(
            compare=[rpc.Compare(key=bkey, target=_MOD, result=_EQUAL, mod_revision=mod_revision)],
            success=[op], failure=[rpc.RequestOp(request_range=rpc.RangeRequest(key=bkey))])

    @staticmethod
    def _kv_after_failed_swap(key: str, response):
        kvs = response.responses[0].response_range.kvs
        if not kvs:
            raise NotFound(key)
        return kvs[0]

    async def _delete_unconditionally(self, key: str) -> dict:
        request = rpc.DeleteRangeRequest(key=key.encode(), prev_kv=True)
        response = await self._call("DeleteRange", request, key)
        if not response.prev_kvs:
            raise NotFound(key)
        return self._decode(key, response.prev_kvs[0].value, response.header.revision)

    def _event(self, event) -> StoredEvent:
        kv = event.kv
        key = kv.key.decode()
        if event.type == _DELETE:
            if event.HasField("prev_kv"):
                obj = self._decode(key, event.prev_kv.value, kv.mod_revision)
            else:
                obj = _object_from_key(key, kv.mod_revision)
            return StoredEvent("DELETED", obj, kv.mod_revision, key)
        plain = self._plain(key, kv.value)
        obj = self._stamped(plain, kv.mod_revision)
        if kv.create_revision == kv.mod_revision:
            return StoredEvent("ADDED", obj, kv.mod_revision, key, value=plain)
        prev = self._plain(key, event.prev_kv.value) if event.HasField("prev_kv") else None
        return StoredEvent("MODIFIED", obj, kv.mod_revision, key, prev, event.prev_kv.mod_revision, value=plain)

    async def _watch_responses(self, start: bytes, end: bytes, start_revision: int,
                               progress_interval: Optional[float] = None):
        """Raw WatchResponses of one dedicated gRPC stream; the stream is
        cancelled when the generator is closed."""
        await self._stubs()
        call = self._watch.Watch(metadata=self._client.metadata)
        progress = None
        try:
            create = rpc.WatchCreateRequest(key=start, range_end=end,
                                            start_revision=start_revision, prev_kv=True)
            await call.write(rpc.WatchRequest(create_request=create))
            if progress_interval:
                progress = asyncio.get_running_loop().create_task(
                    _request_progress(call, progress_interval))
            while True:
                response = await call.read()
                if response is grpc.aio.EOF:
                    raise StorageUnavailable(start.decode(), "etcd closed the watch stream")
                yield response
        except grpc.aio.AioRpcError as e:
            raise StorageUnavailable(start.decode(), f"etcd watch failed: {e.details()}") from None
        finally:
            call.cancel()
            if progress is not None:
                progress.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await progress


async def _request_progress(call, interval: float) -> None:
    """Ask etcd for a progress notification on ``call`` every ``interval`` s."""
    request = rpc.WatchRequest(progress_request=rpc.WatchProgressRequest())
    with contextlib.suppress(grpc.aio.AioRpcError, asyncio.InvalidStateError):
        while not call.done():
            await asyncio.sleep(interval)
            await call.write(request)


def _address(endpoint: str) -> tuple[str, int]:
    """(host, port) of ``http(s)://host:port`` or ``host:port`` (TLS or not is the caller's choice)."""
    parsed = urllib.parse.urlsplit(endpoint if "://" in endpoint else f"http://{endpoint}")
    try:
        port = parsed.port
    except ValueError:
        port = None
    if parsed.scheme not in ("http", "https") or not parsed.hostname or not port:
        raise ValueError(f"bad etcd endpoint {endpoint!r}: want http://HOST:PORT")
    return parsed.hostname, port


def _is_ipv4(host: str) -> bool:
    try:
        return isinstance(ipaddress.ip_address(host), ipaddress.IPv4Address)
    except ValueError:
        return False


def _object_from_key(key: str, revision: int) -> dict:
    """The little that is known of a deleted object whose last state is gone."""
    parts = key.split("/")
    meta = {"name": parts[-1], "resourceVersion": str(revision)}
    if len(parts) >= 5:
        meta["namespace"] = parts[-2]
    return {"metadata": meta}
