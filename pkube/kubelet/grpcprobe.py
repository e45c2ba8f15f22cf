"""The gRPC probe: one grpc.health.v1.Health/Check call, worded as the kubelet's
(pkg/probe/grpc). The two tiny messages are encoded by hand (one field each), so no generated
health-checking module is needed."""

from __future__ import annotations

import json

from pkube.client.clock import Clock

HEALTH_CHECK = "/grpc.health.v1.Health/Check"
SERVING = 1
STATUS_NAMES = {0: "UNKNOWN", 1: "SERVING", 2: "NOT_SERVING", 3: "SERVICE_UNKNOWN"}
USER_AGENT = "kube-probe/1.32"


async def check(clock: Clock, host: str, port: int, service: str, timeout: float) -> tuple[bool, str]:
    """(ok, message) of a health check of `service` ("" for the whole server) at host:port,
    connection included, within `timeout` seconds of `clock`."""
    import grpc   # heavy: only pods with a gRPC probe pay for it
    from pkube.kubelet.handlers import within
    target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    started = clock.now()
    async with grpc.aio.insecure_channel(target, options=[("grpc.primary_user_agent", USER_AGENT)]) as channel:
        try:
            await within(clock, timeout, channel.channel_ready())
        except TimeoutError:
            return False, f"timeout: failed to connect service {json.dumps(target)} within {timeout:g}s"
        call = channel.unary_unary(HEALTH_CHECK)
        try:
            reply = await within(clock, timeout - (clock.now() - started), call(encode_request(service)))
        except TimeoutError:
            return False, f"timeout: health rpc did not complete within {timeout:g}s"
        except grpc.aio.AioRpcError as err:
            if err.code() == grpc.StatusCode.UNIMPLEMENTED:
                return False, ("error: this server does not implement the grpc health protocol "
                               f"(grpc.health.v1.Health): {err.details()}")
            return False, f"error: health rpc probe failed: rpc error: code = {_code_name(err.code())} desc = {err.details()}"
    try:
        status = decode_status(reply)
    except ValueError as err:
        return False, f"error: health rpc probe failed: {err}"
    if status != SERVING:
        return False, f"service unhealthy (responded with {json.dumps(STATUS_NAMES.get(status, str(status)))})"
    return True, "service healthy"


def encode_request(service: str) -> bytes:
    """HealthCheckRequest{service}: field 1, length-delimited."""
    data = service.encode()
    return b"\x0a" + _varint(len(data)) + data if data else b""


def decode_status(reply: bytes) -> int:
    """HealthCheckResponse.status (field 1, varint); other fields are skipped; 0 when absent."""
    pos, status = 0, 0
    while pos < len(reply):
        key, pos = _read_varint(reply, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _read_varint(reply, pos)
            if field == 1:
                status = value
        elif wire == 2:
            length, pos = _read_varint(reply, pos)
            pos += length
        elif wire in (1, 5):
            pos += 8 if wire == 1 else 4
        else:
            raise ValueError(f"health reply: unsupported wire type {wire}")
    return status


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data):
            raise ValueError("health reply: truncated varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos


def _code_name(code) -> str:
    """Go's name of a status code (DeadlineExceeded, Unavailable, ...)."""
    return "".join(part.capitalize() for part in code.name.split("_"))
