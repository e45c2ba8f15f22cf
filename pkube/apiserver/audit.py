"""The audit log: one JSON line per request stage, in Kubernetes' audit.k8s.io/v1 Event
format, chosen by an audit.k8s.io/v1 Policy (kube-apiserver's --audit-policy-file,
--audit-log-path, --audit-log-maxsize, --audit-log-maxbackup).

Levels: None (nothing), Metadata (who, what, when, the answer's code), Request (also the
request's body), RequestResponse (also the response's body). The first rule of the policy
that matches the request decides its level; none matching means None. Stages written:
ResponseStarted (long-running requests: when the watch or stream begins) and
ResponseComplete; RequestReceived too when the policy does not omit it (the default does).

Writing never blocks a request: ``AuditLog.write`` appends the line to a buffer that a
task flushes every FLUSH_SECONDS in one write, in a worker thread, rotating the file past
its maximum size. At shutdown ``stop`` flushes what is left.
"""

from __future__ import annotations

import asyncio
import datetime
import fnmatch
import logging
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import yaml

from pkube.api.jsonvalue import dumps, loads
from pkube.apiserver.auth.user import AUTHENTICATED_GROUP, MASTERS_GROUP, UserInfo
from pkube.apiserver.requestinfo import RequestInfo

log = logging.getLogger(__name__)

API_VERSIONS = ("audit.k8s.io/v1",)
LEVELS = ("None", "Metadata", "Request", "RequestResponse")
STAGES = ("RequestReceived", "ResponseStarted", "ResponseComplete", "Panic")
FLUSH_SECONDS = 0.05
MAX_BUFFERED_LINES = 100_000
MAX_CAPTURED_BODY = 3 * 1024 * 1024
# Without authentication every caller is served with full rights, as by kube-apiserver's
# former insecure port, whose user this is.
UNSECURED = UserInfo("system:unsecured", groups=(MASTERS_GROUP, AUTHENTICATED_GROUP))


class AuditPolicyError(ValueError):
    """The policy file is malformed or asks for something unknown."""


@dataclass(frozen=True)
class GroupResources:
    group: str
    resources: tuple[str, ...]
    names: tuple[str, ...]

    def matches(self, info: RequestInfo) -> bool:
        if info.api_group != self.group:
            return False
        if self.names and info.name not in self.names:
            return False
        return not self.resources or any(_resource_matches(r, info) for r in self.resources)


def _resource_matches(pattern: str, info: RequestInfo) -> bool:
    """Kubernetes' rules: "pods" is pods without subresource, "pods/log" one subresource,
    "pods/*" every subresource, "*" everything, "*/scale" a subresource of any resource."""
    full = f"{info.resource}/{info.subresource}" if info.subresource else info.resource
    if pattern in ("*", full):
        return True
    if pattern.endswith("/*") and info.subresource:
        return pattern[:-2] == info.resource
    return pattern.startswith("*/") and pattern[2:] == info.subresource


@dataclass(frozen=True)
class PolicyRule:
    level: str
    users: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    verbs: tuple[str, ...] = ()
    resources: tuple[GroupResources, ...] = ()
    namespaces: tuple[str, ...] = ()
    urls: tuple[str, ...] = ()
    omit_stages: frozenset = frozenset()

    def matches(self, info: RequestInfo, user: UserInfo) -> bool:
        if self.users and user.name not in self.users:
            return False
        if self.groups and not any(g in self.groups for g in user.groups):
            return False
        if self.verbs and info.verb not in self.verbs and "*" not in self.verbs:
            return False
        if info.resource_request:
            return not self.urls and self._matches_resource(info)
        return not (self.resources or self.namespaces) and (
            not self.urls or any(_url_matches(u, info.path) for u in self.urls))

    def _matches_resource(self, info: RequestInfo) -> bool:
        if self.namespaces and info.namespace not in self.namespaces:
            return False
        return not self.resources or any(r.matches(info) for r in self.resources)


def _url_matches(pattern: str, path: str) -> bool:
    return path.startswith(pattern[:-1]) if pattern.endswith("*") else path == pattern


@dataclass(frozen=True)
class AuditPolicy:
    rules: tuple[PolicyRule, ...]
    omit_stages: frozenset = frozenset()

    def level_for(self, info: RequestInfo, user: UserInfo) -> tuple[str, frozenset]:
        """(level, stages not to write) of a request; ("None", ...) when no rule matches."""
        for rule in self.rules:
            if rule.matches(info, user):
                return rule.level, self.omit_stages | rule.omit_stages
        return "None", self.omit_stages


def load_policy(path: str | Path) -> AuditPolicy:
    """The policy in the file at ``path``; AuditPolicyError."""
    try:
        doc = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as err:
        raise AuditPolicyError(f"{path}: {err}") from None
    return parse_policy(doc, str(path))


def parse_policy(doc, where: str = "audit policy") -> AuditPolicy:
    if not isinstance(doc, dict) or doc.get("kind") != "Policy" or doc.get("apiVersion") not in API_VERSIONS:
        raise AuditPolicyError(f"{where}: want apiVersion audit.k8s.io/v1, kind Policy")
    rules = doc.get("rules")
    if not isinstance(rules, list):
        raise AuditPolicyError(f"{where}: rules must be a list")
    return AuditPolicy(tuple(_rule(r, f"{where}: rules[{i}]") for i, r in enumerate(rules)),
                       _stages(doc.get("omitStages"), where))


def _rule(doc, where: str) -> PolicyRule:
    if not isinstance(doc, dict) or doc.get("level") not in LEVELS:
        raise AuditPolicyError(f"{where}: level must be one of {', '.join(LEVELS)}")
    if doc.get("nonResourceURLs") and (doc.get("resources") or doc.get("namespaces")):
        raise AuditPolicyError(f"{where}: nonResourceURLs cannot be combined with resources or namespaces")
    return PolicyRule(doc["level"], _strings(doc, "users", where), _strings(doc, "userGroups", where),
                      _strings(doc, "verbs", where),
                      tuple(_group_resources(g, f"{where}.resources[{i}]")
                            for i, g in enumerate(doc.get("resources") or [])),
                      _strings(doc, "namespaces", where), _strings(doc, "nonResourceURLs", where),
                      _stages(doc.get("omitStages"), where))


def _group_resources(doc, where: str) -> GroupResources:
    if not isinstance(doc, dict):
        raise AuditPolicyError(f"{where}: must be a mapping")
    return GroupResources(str(doc.get("group") or ""), _strings(doc, "resources", where),
                          _strings(doc, "resourceNames", where))


def _strings(doc: dict, key: str, where: str) -> tuple[str, ...]:
    value = doc.get(key) or []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise AuditPolicyError(f"{where}.{key}: must be a list of strings")
    return tuple(value)


def _stages(value, where: str) -> frozenset:
    value = value or []
    if not isinstance(value, list) or any(s not in STAGES for s in value):
        raise AuditPolicyError(f"{where}.omitStages: stages are {', '.join(STAGES)}")
    return frozenset(value)


def timestamp(seconds: float, _last: list = [-1, ""]) -> str:   # noqa: B006 - the one-entry cache
    """RFC 3339 with microseconds, as audit events carry them. The formatted second is
    remembered: every request asks for two or three timestamps."""
    whole = int(seconds)
    if whole != _last[0]:
        _last[:] = [whole, datetime.datetime.fromtimestamp(whole, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S")]
    return f"{_last[1]}.{min(999_999, round((seconds - whole) * 1e6)):06d}Z"


class AuditLog:
    """The audit file: ``write`` buffers a line; a task writes the buffer every
    FLUSH_SECONDS (``start``/``stop`` own it), rotating the file once it exceeds
    ``max_size_mb`` (renamed to NAME-<time>.EXT, keeping ``max_backups`` of them; 0: all)."""

    def __init__(self, path: str | Path, max_size_mb: int = 100, max_backups: int = 10):
        self.path = Path(path)
        self.max_bytes = max_size_mb * 1024 * 1024 if max_size_mb > 0 else 0
        self.max_backups = max_backups
        self._buffer: list[bytes] = []
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._dropped = 0

    def write(self, line: bytes) -> None:
        """Queue one line (without its newline). Never blocks; past MAX_BUFFERED_LINES
        (the disk stalled) lines are dropped and counted in an error log line."""
        if len(self._buffer) >= MAX_BUFFERED_LINES:
            self._dropped += 1
            return
        self._buffer.append(line)
        if self._wakeup is not None and len(self._buffer) == 1:
            self._wakeup.set()

    async def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._wakeup = asyncio.Event()
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        """Stop the writer and write what is buffered."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        self._flush_sync(self._take())

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wakeup.wait()
            await asyncio.sleep(FLUSH_SECONDS)
            self._wakeup.clear()
            batch = self._take()
            if batch:
                await loop.run_in_executor(None, self._flush_sync, batch)

    def _take(self) -> bytes:
        if self._dropped:
            log.error("audit log %s could not keep up: %d events dropped", self.path, self._dropped)
            self._dropped = 0
        if not self._buffer:
            return b""
        batch, self._buffer = self._buffer, []
        return b"\n".join(batch) + b"\n"

    def _flush_sync(self, data: bytes) -> None:
        if not data:
            return
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, data)
                size = os.fstat(fd).st_size
            finally:
                os.close(fd)
            if self.max_bytes and size >= self.max_bytes:
                self._rotate()
        except OSError as err:
            log.error("audit log %s: %s (%d bytes lost)", self.path, err, len(data))

    def _rotate(self) -> None:
        stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H-%M-%S.%f")[:-3]
        os.replace(self.path, self.path.with_name(f"{self.path.stem}-{stamp}{self.path.suffix}"))
        if self.max_backups > 0:
            for old in self.backups()[:-self.max_backups]:
                old.unlink(missing_ok=True)

    def backups(self) -> list[Path]:
        """The rotated files, oldest first."""
        pattern = f"{self.path.stem}-*{self.path.suffix}"
        return sorted(p for p in self.path.parent.iterdir() if fnmatch.fnmatch(p.name, pattern))


class Auditor:
    """Turns requests into events for ``sink`` (an AuditLog) by ``policy``. The policy's
    answers are remembered per (user, request info): the same caller creating in the same
    collection is decided once (at most DECISIONS_KEPT remembered, then forgotten at once)."""

    DECISIONS_KEPT = 4096

    def __init__(self, policy: AuditPolicy, sink: AuditLog):
        self.policy, self.sink = policy, sink
        self._decisions: dict = {}

    async def start(self) -> None:
        await self.sink.start()

    async def stop(self) -> None:
        await self.sink.stop()

    def begin(self, info: RequestInfo, user: UserInfo | None, received: float) -> AuditRecord | None:
        """The record of a request whose caller is known (None: the policy says None)."""
        user = user or UNSECURED
        key = (user.name, user.groups, info)
        decision = self._decisions.get(key)
        if decision is None:
            if len(self._decisions) >= self.DECISIONS_KEPT:
                self._decisions.clear()
            decision = self._decisions[key] = self.policy.level_for(info, user)
        level, omit = decision
        if level == "None":
            return None
        return AuditRecord(self.sink, level, omit, info, user, received)


class AuditRecord:
    """One request's audit events (``begin`` decided that it is audited)."""

    def __init__(self, sink: AuditLog, level: str, omit: frozenset, info: RequestInfo, user: UserInfo,
                 received: float):
        self.sink, self.level, self.omit = sink, level, omit
        self.info, self.user, self.received = info, user, received
        self.audit_id = str(uuid.uuid4())
        self.request_body: bytes | None = None
        self._parsed: tuple | None = None
        self.base: dict = {}

    @property
    def wants_request_body(self) -> bool:
        return self.level in ("Request", "RequestResponse") and not self.info.read_only

    def received_request(self, uri: str, source_ip: str, user_agent: str) -> None:
        """Fill in what every stage repeats; write RequestReceived unless omitted."""
        info = self.info
        base = {"kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": self.level, "auditID": self.audit_id,
                "stage": "", "requestURI": uri, "verb": info.verb, "user": self.user.as_user_info(),
                "sourceIPs": [source_ip] if source_ip else [], "userAgent": user_agent}
        if info.resource_request:
            ref = {"resource": info.resource, "namespace": info.namespace, "name": info.name,
                   "apiGroup": info.api_group, "apiVersion": info.api_version, "subresource": info.subresource}
            base["objectRef"] = {k: v for k, v in ref.items() if v}
        base["requestReceivedTimestamp"] = timestamp(self.received)
        self.base = base
        if "RequestReceived" not in self.omit:
            self._write("RequestReceived", None, None, {})

    def responded(self, stage: str, code: int, body: bytes | None, annotations: dict) -> None:
        """Write the ResponseStarted or ResponseComplete event (unless omitted)."""
        if stage not in self.omit:
            self._write(stage, code, body, annotations)

    def _write(self, stage: str, code: int | None, body: bytes | None, annotations: dict) -> None:
        event = dict(self.base, stage=stage, stageTimestamp=timestamp(time.time()))
        if code is not None:
            event["responseStatus"] = _response_status(code, body)
            if self.info.verb == "create" and not self.info.name and code < 300:
                self._name_created(event, body)
        if annotations:
            event["annotations"] = annotations
        line = dumps(event)
        extra = b""
        if self._request_object() is not None:
            extra += b',"requestObject":' + self.request_body
        if self.level == "RequestResponse" and body and stage == "ResponseComplete" and _is_json(body):
            extra += b',"responseObject":' + body.rstrip(b"\n")    # bodies end in a newline, as Go's encoder's
        self.sink.write(line[:-1] + extra + b"}" if extra else line)


    def _request_object(self) -> dict | None:
        """The request's body as JSON (parsed once), or None (none captured, not a JSON object)."""
        if self._parsed is None:
            self._parsed = (_json_object(self.request_body),)
        return self._parsed[0]

    def _name_created(self, event: dict, body: bytes | None) -> None:
        """A create's objectRef names the object made (from the request or the response)."""
        for parse in (self._request_object, lambda: _json_object(body)):
            metadata = (parse() or {}).get("metadata")
            name = metadata.get("name") if isinstance(metadata, dict) else None
            if name:
                event["objectRef"] = dict(event.get("objectRef", {}), name=name)
                return


def _json_object(body: bytes | None) -> dict | None:
    """``body`` parsed when it is one JSON object (what an event may embed as is), else None."""
    if not body or not body.lstrip().startswith(b"{"):
        return None
    try:
        doc = loads(body)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None


def _is_json(body: bytes) -> bool:
    return _json_object(body) is not None


def _response_status(code: int, body: bytes | None) -> dict:
    """{metadata, code} and, for a failure with a Status body, its status, reason and message."""
    status: dict = {"metadata": {}, "code": code}
    if code >= 400 and body and body.startswith(b'{"kind":"Status"'):
        try:
            doc = loads(body)
        except ValueError:
            return status
        for key in ("status", "message", "reason"):
            if doc.get(key):
                status[key] = doc[key]
    return status

