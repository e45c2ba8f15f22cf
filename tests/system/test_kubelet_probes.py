"""Probes and lifecycle hooks against real busybox containers of the runtime: exec through
Runtime.exec in a thread, httpGet and tcpSocket to the container's IP on the bridge."""

from __future__ import annotations

import asyncio
import time

import pytest

from pkube.client.clock import Clock
from pkube.kubelet.handlers import HandlerResult, Handlers, run_hook, runtime_exec
from pkube.kubelet.probes import ContainerProbes
from pkube.runtime.spec import ContainerSpec

pytestmark = pytest.mark.root


def start(rt, script: str, network: str = "none"):
    state = rt.create(ContainerSpec(image="busybox", command=["sh", "-c", script], network=network))
    rt.start(state.id)
    return rt.get(state.id)


async def until(predicate, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"never: {what}"
        await asyncio.sleep(0.05)


def test_exec_probes_follow_a_file_in_the_container(rt):
    state = start(rt, "exec sleep 1000")
    check = {"exec": {"command": ["cat", "/tmp/healthy"]}, "periodSeconds": 1, "failureThreshold": 1}
    container = {"name": "app", "readinessProbe": check, "livenessProbe": {**check, "initialDelaySeconds": 1000}}

    async def scenario():
        results, failures = [], []
        probes = ContainerProbes(container, Handlers(runtime_exec(rt, state.id), lambda: "127.0.0.1"), Clock(),
                                 lambda *result: results.append(result),
                                 on_failure=lambda kind, message: failures.append((kind, message)))
        probes.start()
        try:
            await until(lambda: failures, "a failed readiness probe")
            assert failures[0] == ("readiness", "cat: can't open '/tmp/healthy': No such file or directory")
            assert not probes.ready and results == []
            await asyncio.to_thread(rt.exec, state.id, ["sh", "-c", "echo fine > /tmp/healthy"])
            await until(lambda: results, "the container ready")
            assert results == [("readiness", True, "fine")] and probes.ready
        finally:
            await probes.stop()
    asyncio.run(scenario())
    rt.remove(state.id, force=True)


def test_liveness_failure_is_reported_once(rt):
    state = start(rt, "touch /tmp/healthy; exec sleep 1000")
    container = {"name": "app", "livenessProbe": {"exec": {"command": ["cat", "/tmp/healthy"]},
                                                  "periodSeconds": 1, "failureThreshold": 2}}

    async def scenario():
        results = []
        probes = ContainerProbes(container, Handlers(runtime_exec(rt, state.id), lambda: "127.0.0.1"), Clock(),
                                 lambda *result: results.append(result))
        probes.start()
        try:
            await asyncio.to_thread(rt.exec, state.id, ["rm", "-f", "/tmp/healthy"])
            await until(lambda: results, "a liveness failure")
            assert results == [("liveness", False, "cat: can't open '/tmp/healthy': No such file or directory")]
        finally:
            await probes.stop()
        assert len(results) == 1
    asyncio.run(scenario())
    rt.remove(state.id, force=True)


def test_an_exec_probe_past_its_timeout_fails_and_its_command_is_killed(rt):
    state = start(rt, "exec sleep 1000")
    handlers = Handlers(runtime_exec(rt, state.id), lambda: "127.0.0.1")
    result = asyncio.run(handlers.run({"exec": {"command": ["sleep", "30"]}}, {}, 1))
    assert result == HandlerResult(False, 'command "sleep 30" timed out')
    deadline = time.monotonic() + 30
    while "sleep 30" in rt.exec(state.id, ["ps", "-o", "args"]).stdout.decode():
        assert time.monotonic() < deadline, "the timed-out probe command is still running"
        time.sleep(0.1)
    rt.remove(state.id, force=True)


def test_http_and_tcp_probes_reach_the_container_ip_by_port_name(bridge_rt):
    rt = bridge_rt
    state = start(rt, "mkdir -p /www && exec httpd -f -p 8080 -h /www", network="bridge")
    ip = state.endpoint["ip"]
    container = {"name": "web", "ports": [{"name": "http", "containerPort": 8080}]}
    handlers = Handlers(runtime_exec(rt, state.id), lambda: ip)

    async def scenario():
        tcp = {"tcpSocket": {"port": "http"}}
        for _ in range(300):                              # httpd may not listen yet
            if (await handlers.run(tcp, container, 5)).ok:
                break
            await asyncio.sleep(0.1)
        assert await handlers.run(tcp, container, 5) == HandlerResult(True, "")
        page = {"httpGet": {"port": "http", "path": "/index.html"}}
        assert await handlers.run(page, container, 5) == HandlerResult(False, "HTTP probe failed with statuscode: 404")
        await asyncio.to_thread(rt.exec, state.id, ["sh", "-c", "echo up > /www/index.html"])
        assert await handlers.run(page, container, 5) == HandlerResult(True, "")
        assert await handlers.run({"tcpSocket": {"port": 8081}}, container, 5) == \
            HandlerResult(False, f"dial tcp {ip}:8081: connect: connection refused")
    try:
        asyncio.run(scenario())
    finally:
        rt.remove(state.id, force=True)


def test_lifecycle_hooks_run_in_the_container(rt):
    state = start(rt, "exec sleep 1000")
    container = {"name": "app", "lifecycle": {
        "postStart": {"exec": {"command": ["sh", "-c", "echo started > /tmp/started"]}},
        "preStop": {"exec": {"command": ["sh", "-c", "echo bye >&2; exit 2"]}}}}
    handlers = Handlers(runtime_exec(rt, state.id), lambda: "127.0.0.1")
    assert asyncio.run(run_hook(handlers, container, "postStart", 30)) == HandlerResult(True, "")
    assert rt.exec(state.id, ["cat", "/tmp/started"]).stdout == b"started\n"
    result = asyncio.run(run_hook(handlers, container, "preStop", 30, pod="default/app"))
    assert result == HandlerResult(False, 'Exec lifecycle hook ([sh -c echo bye >&2; exit 2]) for Container "app" '
                                          'in Pod "default/app" failed - error: command \'sh -c echo bye >&2; '
                                          'exit 2\' exited with 2: bye')
    rt.remove(state.id, force=True)
