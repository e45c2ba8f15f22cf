"""What the apiserver does around every guarded request, in kube-apiserver's filter order:
after authentication the audit record is begun and the in-flight limit applied; once the
endpoint has answered, the warnings noted during the request become ``Warning`` headers and
the audit events are written. Long-running responses (watches) get ResponseStarted at once
and ResponseComplete, with the release of their watch slot, when the stream ends.

``RequestFilters.track`` is called first thing for each request; the Tracked it returns is
told ``admit`` after authentication (it may raise the 429 ApiError) and ``finish`` with the
response, whatever it is (a Status for a failure included).
"""

from __future__ import annotations

import time
import urllib.parse
from collections.abc import Callable

from starlette.requests import Request
from starlette.responses import Response

from pkube.api.jsonvalue import loads
from pkube.apiserver import requestcontext
from pkube.apiserver.audit import MAX_CAPTURED_BODY, Auditor, AuditRecord
from pkube.apiserver.auth.user import ANONYMOUS
from pkube.apiserver.inflight import InflightLimiter, Release
from pkube.apiserver.metrics import reported_method
from pkube.apiserver.requestinfo import request_info


class RequestFilters:
    """The audit log, the in-flight limits and the metrics (apiserver.metrics.ApiserverMetrics)
    of one apiserver (each may be None)."""

    def __init__(self, auditor: Auditor | None = None, limiter: InflightLimiter | None = None, metrics=None):
        self.auditor, self.limiter, self.metrics = auditor, limiter, metrics

    async def start(self) -> None:
        if self.auditor is not None:
            await self.auditor.start()

    async def stop(self) -> None:
        if self.auditor is not None:
            await self.auditor.stop()

    def track(self, request: Request) -> Tracked:
        return Tracked(self, request)


class Tracked:
    """One request on its way through the filters."""

    def __init__(self, filters: RequestFilters, request: Request):
        self.filters, self.request = filters, request
        self.received = time.time()
        self.notes = requestcontext.begin()
        scope = request.scope
        query = scope.get("query_string", b"")
        watch = urllib.parse.parse_qs(query.decode()).get("watch", [""])[-1] if b"watch" in query else ""
        self.info = request_info(scope.get("method", "GET"), scope["path"], {"watch": watch})   # WebSockets: GET
        self.record: AuditRecord | None = None
        self.release: Release = _nothing
        self.stream_ended: Release = _nothing
        self.admitted = False
        self.dry_run = "All" if b"dryRun" in query else ""

    async def admit(self, user) -> None:
        """After authentication (``user``: the caller, None without authentication): begin
        the audit record, then count the request in (429 ApiError past the limit)."""
        self.admitted = True
        self._begin_audit(user)
        if self.filters.limiter is not None:
            self.release = self.filters.limiter.admit(self.info, user)
        if self.record is not None and self.record.wants_request_body:
            declared = self.request.headers.get("content-length", "")
            if declared.isdigit() and int(declared) <= MAX_CAPTURED_BODY:
                self.record.request_body = await self.request.body()   # kept for the endpoint too

    def finish(self, response: Response):
        """The response to send: with the warnings and the Audit-Id header; audit events
        written (or, for a stream, written and the slot released once it is sent)."""
        if not self.admitted:          # refused before (authentication): audited as anonymous
            self._begin_audit(ANONYMOUS)
        if response.status_code in (429, 503) and "retry-after" not in response.headers:
            _retry_after(response)
        if self.notes.warnings:
            response.headers.append("Warning", requestcontext.warning_header(self.notes.warnings))
        record = self.record
        if record is not None:
            response.headers["Audit-Id"] = record.audit_id
        metrics = self.filters.metrics
        if self.info.long_running and hasattr(response, "body_iterator"):
            if metrics is not None:
                self.stream_ended = metrics.stream_started(self.info, reported_method(self.request),
                                                           response.status_code)
            if record is not None:
                record.responded("ResponseStarted", response.status_code, None, self.notes.annotations)
            return AfterSent(response, self._complete_stream)
        if record is not None:
            record.responded("ResponseComplete", response.status_code, getattr(response, "body", None),
                             self.notes.annotations)
        self.release()
        if metrics is not None:
            metrics.observe(self.info, reported_method(self.request), self.dry_run, response.status_code,
                            time.time() - self.received)
        return response

    def websocket_event(self, stage: str, code: int, user) -> None:
        """For a WebSocket stream (exec, attach, port-forward), which has no Response:
        ResponseStarted once accepted (code 101), ResponseComplete when it ends or is refused
        (its Status code); ``user`` is the caller as far as authentication got (None: the
        apiserver runs without authentication)."""
        if not self.admitted:
            self.admitted = True
            self._begin_audit(user)
        if self.record is not None:
            self.record.responded(stage, code, None, self.notes.annotations)

    def _complete_stream(self, code: int) -> None:
        self.stream_ended()
        if self.record is not None:
            self.record.responded("ResponseComplete", code, None, self.notes.annotations)
        self.release()

    def _begin_audit(self, user) -> None:
        auditor = self.filters.auditor
        if auditor is None:
            return
        self.record = auditor.begin(self.info, user, self.received)
        if self.record is not None:
            scope = self.request.scope
            query = scope.get("query_string", b"").decode()
            client = scope.get("client")
            self.record.received_request(scope["path"] + (f"?{query}" if query else ""),
                                         client[0] if client else "",
                                         self.request.headers.get("user-agent", ""))


class AfterSent:
    """An ASGI response that calls ``done(status code)`` once ``response`` has been sent
    or the client went away; other attributes are the wrapped response's."""

    def __init__(self, response: Response, done: Callable[[int], None]):
        self.response, self.done = response, done

    async def __call__(self, scope, receive, send) -> None:
        try:
            await self.response(scope, receive, send)
        finally:
            self.done(self.response.status_code)

    def __getattr__(self, name: str):
        return getattr(self.response, name)


def _nothing() -> None:
    return None


def _retry_after(response: Response) -> None:
    """Retry-After from a Status's details.retryAfterSeconds, as kube-apiserver writes it."""
    try:
        seconds = loads(response.body).get("details", {}).get("retryAfterSeconds")
    except (AttributeError, ValueError):
        return
    if isinstance(seconds, int) and seconds > 0:
        response.headers["Retry-After"] = str(seconds)
