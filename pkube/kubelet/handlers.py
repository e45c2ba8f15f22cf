"""The actions a container spec names (exec, httpGet, tcpSocket, grpc, sleep), run for the
probes and the lifecycle hooks alike, with Kubernetes' semantics and messages.

`Handlers.run` never raises for anything the action does: a refused connection, a timeout, an
unknown port name or a command that cannot start all come back as `HandlerResult(ok=False,
message)`, the message worded as the kubelet words it ("HTTP probe failed with statuscode:
500", `Get "http://10.88.0.5:8080/": dial tcp 10.88.0.5:8080: connect: connection refused`).
Deadlines run on the injected clock, so unit tests never wait for real.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
from dataclasses import dataclass
from typing import Awaitable, Callable, Optional

import httpx

from pkube.client.clock import Clock

log = logging.getLogger(__name__)

PROBE_USER_AGENT = "kube-probe/1.32"
LIFECYCLE_USER_AGENT = "kube-lifecycle/1.32"
MAX_BODY_BYTES = 10 * 1024          # what the kubelet reads of an answer
MAX_REDIRECTS = 10
EXEC_GRACE_SECONDS = 1.0            # exec_fn enforces the timeout; past this we stop waiting for it
PROBE_ACTIONS = ("exec", "httpGet", "tcpSocket", "grpc")
LIFECYCLE_ACTIONS = ("exec", "httpGet", "sleep")

ExecFn = Callable[[list, float], Awaitable[tuple]]


@dataclass(frozen=True)
class HandlerResult:
    """The outcome of one action: `ok`, and a message fit for an Event (empty when there is
    nothing to say)."""

    ok: bool
    message: str = ""


class ActionError(Exception):
    """The action cannot run as written (unknown port name, no command, no pod IP)."""


class _RequestFailed(Exception):
    """An HTTP GET got no answer; the message is Go's (`Get "URL": ...`)."""


class Handlers:
    """Runs actions against one pod's containers.

    `exec_fn(argv, timeout)` runs argv in the container and returns (exit_code, output bytes),
    raising TimeoutError when it had to kill the command. `pod_ip_fn()` gives the pod's IP, the
    host of an httpGet/tcpSocket/grpc action that names none ("127.0.0.1" for hostNetwork).
    """

    def __init__(self, exec_fn: ExecFn, pod_ip_fn: Callable[[], str], clock: Optional[Clock] = None):
        self._exec_fn = exec_fn
        self._pod_ip_fn = pod_ip_fn
        self._clock = clock or Clock()

    async def run(self, action: dict, container: dict, timeout: float, *,
                  lifecycle: bool = False) -> HandlerResult:
        """Run the one action `action` holds (a probe or a lifecycle handler) within `timeout`
        seconds. With `lifecycle`, Kubernetes' hook semantics: `sleep` is allowed, and an
        httpGet succeeds on any HTTP answer (only a transport error fails it)."""
        allowed = LIFECYCLE_ACTIONS if lifecycle else PROBE_ACTIONS
        kind = next((k for k in allowed if action.get(k) is not None), None)
        if kind is None:
            return HandlerResult(False, f"Cannot run handler: invalid handler: {json.dumps(action)}")
        runner = {"exec": self._exec, "httpGet": self._http_get, "tcpSocket": self._tcp_socket,
                  "grpc": self._grpc, "sleep": self._sleep}[kind]
        try:
            return await runner(action[kind], container, timeout, lifecycle)
        except ActionError as err:
            return HandlerResult(False, str(err))

    async def _exec(self, spec: dict, container: dict, timeout: float, lifecycle: bool) -> HandlerResult:
        argv = [str(a) for a in spec.get("command") or []]
        if not argv:
            raise ActionError("exec: no command given")
        line = " ".join(argv)
        try:
            code, output = await within(self._clock, timeout + EXEC_GRACE_SECONDS, self._exec_fn(argv, timeout))
        except TimeoutError:
            return HandlerResult(False, f"command {_go_quote(line)} timed out")
        except Exception as err:   # the command could not start (not running, no such binary)
            log.debug("exec %s in %s: %s", argv, container.get("name"), err)
            return HandlerResult(False, str(err) or type(err).__name__)
        text = output.decode(errors="replace").strip()
        if code == 0:
            return HandlerResult(True, text)
        exited = f"command '{line}' exited with {code}"
        if lifecycle:
            return HandlerResult(False, f"{exited}: {text}")
        return HandlerResult(False, text or exited)

    async def _http_get(self, spec: dict, container: dict, timeout: float, lifecycle: bool) -> HandlerResult:
        url, headers = self._http_request(spec, container, lifecycle)
        try:
            status, body = await within(self._clock, timeout, _fetch(url, headers))
        except TimeoutError:
            return HandlerResult(False, f"Get {_go_quote(url)}: context deadline exceeded "
                                        "(Client.Timeout exceeded while awaiting headers)")
        except _RequestFailed as err:
            return HandlerResult(False, str(err))
        except httpx.InvalidURL as err:
            return HandlerResult(False, f"parse {_go_quote(url)}: {err}")
        if lifecycle or 200 <= status < 300:
            return HandlerResult(True, "")
        if 300 <= status < 400:   # a redirect to another host is not followed, and counts as success
            return HandlerResult(True, f"Probe terminated redirects, Response body: {body}")
        return HandlerResult(False, f"HTTP probe failed with statuscode: {status}")

    def _http_request(self, spec: dict, container: dict, lifecycle: bool) -> tuple[str, dict]:
        scheme = (spec.get("scheme") or "HTTP").lower()
        host = spec.get("host") or self._pod_ip()
        port = resolve_port(spec.get("port"), container)
        path = spec.get("path") or "/"
        if not path.startswith("/"):
            path = "/" + path
        headers = {h["name"]: h.get("value", "") for h in spec.get("httpHeaders") or [] if h.get("name")}
        lowered = {name.lower() for name in headers}
        if "user-agent" not in lowered:
            headers["User-Agent"] = LIFECYCLE_USER_AGENT if lifecycle else PROBE_USER_AGENT
        if "accept" not in lowered:
            headers["Accept"] = "*/*"
        return f"{scheme}://{_host_port(host, port)}{path}", headers

    async def _tcp_socket(self, spec: dict, container: dict, timeout: float, lifecycle: bool) -> HandlerResult:
        host = spec.get("host") or self._pod_ip()
        port = resolve_port(spec.get("port"), container)
        target = _host_port(host, port)
        try:
            _, writer = await within(self._clock, timeout, asyncio.open_connection(host, port))
        except TimeoutError:
            return HandlerResult(False, f"dial tcp {target}: i/o timeout")
        except OSError as err:
            return HandlerResult(False, _dial_error(err, host, target))
        writer.close()
        return HandlerResult(True, "")

    async def _grpc(self, spec: dict, container: dict, timeout: float, lifecycle: bool) -> HandlerResult:
        from pkube.kubelet.grpcprobe import check   # grpc is heavy to import: only pods that use it pay
        port = spec.get("port")
        if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
            raise ActionError(f"invalid port number: {port}")
        ok, message = await check(self._clock, self._pod_ip(), port, spec.get("service") or "", timeout)
        return HandlerResult(ok, message)

    async def _sleep(self, spec: dict, container: dict, timeout: float, lifecycle: bool) -> HandlerResult:
        seconds = spec.get("seconds")
        if not isinstance(seconds, (int, float)) or isinstance(seconds, bool) or seconds < 0:
            raise ActionError(f"sleep: invalid seconds: {seconds}")
        if seconds > timeout:
            await self._clock.sleep(timeout)
            return HandlerResult(False, f"sleep of {seconds}s did not finish within {timeout:g}s")
        await self._clock.sleep(seconds)
        return HandlerResult(True, "")

    def _pod_ip(self) -> str:
        ip = self._pod_ip_fn()
        if not ip:
            raise ActionError("failed to find networking container: the pod has no IP")
        return ip


def runtime_exec(runtime, container_id: str) -> ExecFn:
    """An exec_fn over `runtime.exec` (runtime.runtime.Runtime) of one container, run in a
    thread; the output is stdout followed by stderr."""
    async def exec_fn(argv: list, timeout: float) -> tuple[int, bytes]:
        result = await asyncio.to_thread(runtime.exec, container_id, argv, timeout=timeout)
        return result.exit_code, result.stdout + result.stderr
    return exec_fn


async def run_hook(handlers: Handlers, container: dict, which: str, timeout: float, *,
                   pod: str = "") -> Optional[HandlerResult]:
    """Run the container's `which` ("postStart" or "preStop") lifecycle hook within `timeout`
    seconds. None when the container has no such hook. A failed hook's message reads as the
    kubelet's (`Exec lifecycle hook ([sh -c exit 3]) for Container "web" in Pod "default/web"
    failed - error: ...`); `pod` names the pod in it. The caller acts on the result: a failed
    postStart kills the container (FailedPostStartHook), a failed preStop is only reported."""
    if which not in ("postStart", "preStop"):
        raise ValueError(f"no such lifecycle hook: {which}")
    action = (container.get("lifecycle") or {}).get(which)
    if not action:
        return None
    result = await handlers.run(action, container, timeout, lifecycle=True)
    if result.ok:
        return result
    return HandlerResult(False, _hook_failure(action, container, pod, result.message))


def _hook_failure(action: dict, container: dict, pod: str, error: str) -> str:
    where = f"for Container {_go_quote(container.get('name', ''))}" + (f" in Pod {_go_quote(pod)}" if pod else "")
    if action.get("exec") is not None:
        argv = " ".join(str(a) for a in action["exec"].get("command") or [])
        return f"Exec lifecycle hook ([{argv}]) {where} failed - error: {error}"
    if action.get("httpGet") is not None:
        return f"HTTP lifecycle hook ({action['httpGet'].get('path', '')}) {where} failed - error: {error}"
    if action.get("sleep") is not None:
        return f"Sleep lifecycle hook ({action['sleep'].get('seconds')}) {where} failed - error: {error}"
    return error


def resolve_port(port, container: dict) -> int:
    """A probe's or hook's port: a number, or the name of one of the container's ports.
    Raises ActionError when the name is unknown or the number out of range."""
    if isinstance(port, str):
        named = {p.get("name"): p.get("containerPort") for p in container.get("ports") or [] if p.get("name")}
        if port in named:
            port = named[port]
        elif port.isdigit():
            port = int(port)
        else:
            raise ActionError(f"port {port} not found")
    if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
        raise ActionError(f"invalid port number: {port}")
    return port


async def within(clock: Clock, seconds: float, awaitable):
    """The awaitable's result, or TimeoutError once `seconds` of `clock` have passed first
    (the awaitable is then cancelled, and has finished by the time this raises)."""
    work = asyncio.ensure_future(awaitable)
    timer = asyncio.ensure_future(clock.sleep(seconds))
    try:
        await asyncio.wait({work, timer}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        timer.cancel()
        if not work.done():
            work.cancel()
            await asyncio.wait({work})
    if work.cancelled():
        raise TimeoutError(f"not done within {seconds}s")
    return work.result()


async def _fetch(url: str, headers: dict) -> tuple[int, str]:
    """GET `url` as the kubelet does: no proxy, no certificate check, no keep-alive, redirects
    followed only to the same host (at most 10). Returns (status, start of the body); raises
    _RequestFailed when no answer came."""
    first_host = httpx.URL(url).host
    async with httpx.AsyncClient(verify=False, trust_env=False, timeout=None, follow_redirects=False) as client:
        for _ in range(MAX_REDIRECTS + 1):
            status, body, location = await _get_once(client, url, headers)
            if location is None:
                return status, body
            target = httpx.URL(url).join(location)
            if target.host != first_host:
                return status, body
            if httpx.URL(location).is_absolute_url:   # a custom Host only survives a relative redirect
                headers = {k: v for k, v in headers.items() if k.lower() != "host"}
            url = str(target)
    raise _RequestFailed(f"Get {_go_quote(url)}: stopped after {MAX_REDIRECTS} redirects")


async def _get_once(client: httpx.AsyncClient, url: str, headers: dict) -> tuple[int, str, Optional[str]]:
    """(status, body start, Location of a redirect or None) of one GET."""
    try:
        response = await client.send(client.build_request("GET", url, headers=headers), stream=True)
        try:
            body = await _read_start(response)
        finally:
            await response.aclose()
    except (httpx.HTTPError, OSError) as err:
        parsed = httpx.URL(url)
        target = _host_port(parsed.host, parsed.port or (443 if parsed.scheme == "https" else 80))
        raise _RequestFailed(f"Get {_go_quote(url)}: {_transport_error(err, parsed.host, target)}") from err
    location = response.headers.get("location") if response.is_redirect else None
    return response.status_code, body, location


async def _read_start(response: httpx.Response) -> str:
    chunks, size = [], 0
    async for chunk in response.aiter_raw():
        chunks.append(chunk)
        size += len(chunk)
        if size >= MAX_BODY_BYTES:
            break
    return b"".join(chunks)[:MAX_BODY_BYTES].decode(errors="replace")


def _transport_error(err: BaseException, host: str, target: str) -> str:
    """Go's wording of why a request got no answer."""
    if isinstance(err, httpx.ConnectError):
        return _dial_error(err, host, target)
    if isinstance(err, httpx.RemoteProtocolError):
        return "EOF"
    cause = _os_error(err)
    if cause is not None and cause.errno:
        return f"read tcp {target}: {os.strerror(cause.errno).lower()}"
    return str(err) or type(err).__name__


def _dial_error(err: BaseException, host: str, target: str) -> str:
    cause = _os_error(err)
    if isinstance(cause, socket.gaierror):
        return f"dial tcp: lookup {host}: no such host"
    if cause is not None and cause.errno:
        return f"dial tcp {target}: connect: {os.strerror(cause.errno).lower()}"
    return f"dial tcp {target}: {err}"


def _os_error(err: BaseException) -> Optional[OSError]:
    """The innermost OSError with an errno in err's chain of causes, or None."""
    found, seen = None, set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, OSError) and err.errno is not None:
            found = err
        err = err.__cause__ or err.__context__
    return found


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _go_quote(text: str) -> str:
    """Go's %q of a string (close enough: JSON's quoting)."""
    return json.dumps(text, ensure_ascii=False)
