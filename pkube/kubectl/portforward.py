"""``pkubectl port-forward POD [LOCAL:]REMOTE...``: local TCP ports relayed to a pod's ports
through the apiserver's pods/portforward WebSocket (``v4.channel.k8s.io`` /
``portforward.k8s.io``).

Protocol: a WebSocket carries the ports of its ``ports`` query; the i-th port has data
channel 2i and error channel 2i+1, each message's first byte naming its channel. The
server's first message on each channel carries the port number (2 bytes, little-endian);
after that the data channel carries the connection's bytes both ways and the error channel
carries an error's text. As kubectl does, every accepted local connection opens a WebSocket
of its own, for that one port (channels 0 and 1).
"""

from __future__ import annotations

import socket
import threading
from dataclasses import dataclass, field
from typing import Callable, Optional

from pkube.kubectl.errors import CliError

PROTOCOLS = ("v4.channel.k8s.io", "portforward.k8s.io")
DATA, ERROR = 0, 1       # the channels of a one-port WebSocket
PORT_PREFIX_BYTES = 2
READ_SIZE = 32768
LOCALHOST = "127.0.0.1"


@dataclass(frozen=True)
class PortMapping:
    local: int       # 0: any free port
    remote: int


def parse_port_specs(specs: list[str]) -> list[PortMapping]:
    """``8080:80``, ``8080`` (same port both sides), ``:80`` (a free local port)."""
    if not specs:
        raise CliError("TYPE/NAME and list of ports are required for port-forward")
    mappings = []
    for spec in specs:
        local, sep, remote = spec.partition(":")
        if not sep:
            local, remote = spec, spec
        mappings.append(PortMapping(_port(local or "0", spec, allow_zero=True), _port(remote, spec)))
    return mappings


def _port(text: str, spec: str, allow_zero: bool = False) -> int:
    if not text.isdigit() or not (0 if allow_zero else 1) <= int(text) <= 65535:
        raise CliError(f"error parsing port spec \"{spec}\": port must be a number in 1-65535")
    return int(text)


@dataclass
class ChannelDecoder:
    """Splits one WebSocket's server messages into (channel, data), dropping the port prefix
    the server sends first on each channel (kept in ``ports``)."""

    ports: dict = field(default_factory=dict)    # channel -> the port its first message named

    def decode(self, message: bytes) -> tuple[int, bytes]:
        """(channel, payload); payload is b"" for the prefix message itself. Raises ValueError
        for an empty message or a prefix too short to name a port."""
        if not message:
            raise ValueError("empty port-forward message: no channel byte")
        channel, payload = message[0], bytes(message[1:])
        if channel in self.ports:
            return channel, payload
        if len(payload) < PORT_PREFIX_BYTES:
            raise ValueError(f"port-forward channel {channel}: first message of {len(payload)} bytes, "
                             "want the 2-byte port")
        self.ports[channel] = int.from_bytes(payload[:PORT_PREFIX_BYTES], "little")
        return channel, payload[PORT_PREFIX_BYTES:]


def data_frame(data: bytes) -> bytes:
    """A client message carrying ``data`` to the port (the one-port WebSocket's data channel)."""
    return bytes([DATA]) + data


# ---------------------------------------------------------------- relaying

class Forwarder:
    """Listens on the local ports and relays each accepted connection over its own WebSocket.

    ``open_socket(remote_port)`` opens the WebSocket (kubectl.streams.connect bound to the
    pod); ``say`` prints a line to stdout, ``warn`` to stderr.
    """

    def __init__(self, mappings: list[PortMapping], open_socket: Callable, say: Callable[[str], None],
                 warn: Callable[[str], None], address: str = LOCALHOST):
        self.mappings, self.open_socket, self.say, self.warn = mappings, open_socket, say, warn
        self.address = address
        self.listeners: list[tuple[socket.socket, PortMapping]] = []
        self.stopped = threading.Event()

    def listen(self) -> None:
        """Bind every local port (CliError when one is taken) and print kubectl's lines."""
        for mapping in self.mappings:
            listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                listener.bind((self.address, mapping.local))
            except OSError as error:
                listener.close()
                self.close()
                raise CliError(f"unable to listen on port {mapping.local}: {error.strerror or error}") from None
            listener.listen(16)
            self.listeners.append((listener, mapping))
            self.say(f"Forwarding from {self.address}:{listener.getsockname()[1]} -> {mapping.remote}")

    def serve_forever(self) -> None:
        """Accept connections on every port until ``close`` (one thread per listener)."""
        threads = [threading.Thread(target=self._accept, args=pair, daemon=True) for pair in self.listeners]
        for thread in threads:
            thread.start()
        self.stopped.wait()

    def close(self) -> None:
        self.stopped.set()
        for listener, _ in self.listeners:
            listener.close()

    def _accept(self, listener: socket.socket, mapping: PortMapping) -> None:
        while not self.stopped.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            local = listener.getsockname()[1]
            self.say(f"Handling connection for {local}")
            threading.Thread(target=self._relay, args=(conn, PortMapping(local, mapping.remote)), daemon=True).start()

    def _relay(self, conn: socket.socket, mapping: PortMapping) -> None:
        """One local connection (``mapping.local`` is the port it came in on): its WebSocket,
        a thread copying local bytes up, and this one copying the pod's bytes down; either
        side ending closes both."""
        from pkube.client.errors import ApiError

        try:
            ws = self.open_socket(mapping.remote)
        except ApiError as error:   # the apiserver's Status: e.g. the pod's kubelet cannot be reached
            self.warn(f"Error from server ({error.reason or 'Unknown'}): {error.message}")
            conn.close()
            return
        except CliError as error:
            self.warn(f"error: an error occurred forwarding {mapping.local} -> {mapping.remote}: {error}")
            conn.close()
            return
        upstream = threading.Thread(target=_copy_up, args=(conn, ws), daemon=True)
        upstream.start()
        try:
            self._copy_down(ws, conn, mapping)
        finally:
            _quietly(lambda: conn.shutdown(socket.SHUT_RDWR))   # wakes the thread reading it
            _quietly(conn.close)
            _quietly(ws.close)

    def _copy_down(self, ws, conn: socket.socket, mapping: PortMapping) -> None:
        import websocket

        decoder = ChannelDecoder()
        while True:
            try:
                message = ws.recv()
            except (websocket.WebSocketException, OSError):
                return
            if not message:
                return
            channel, payload = decoder.decode(message.encode() if isinstance(message, str) else message)
            if channel == DATA and payload:
                conn.sendall(payload)
            elif channel == ERROR and payload:
                self.warn(f"error: an error occurred forwarding {mapping.local} -> {mapping.remote}: "
                          f"{payload.decode('utf-8', 'replace')}")
                return


def _copy_up(conn: socket.socket, ws) -> None:
    """Local bytes to the data channel; the local side closing closes the WebSocket."""
    import websocket

    try:
        while chunk := conn.recv(READ_SIZE):
            ws.send_binary(data_frame(chunk))
    except (OSError, websocket.WebSocketException):
        pass
    _quietly(ws.close)


def _quietly(close: Callable[[], None]) -> None:
    try:
        close()
    except Exception:   # noqa: BLE001 - closing what may already be closed
        pass


def port_forward(session, target, mappings: list[PortMapping], address: str, out, err) -> int:
    """Serve the forwards of ``mappings`` to the pod ``target`` until interrupted."""
    from pkube.kubectl.streams import connect

    def open_socket(remote: int):
        return connect(session, target.path + "/portforward", f"ports={remote}", PROTOCOLS)

    def line(stream):
        lock = threading.Lock()

        def write(text: str) -> None:
            with lock:
                stream.write(text + "\n")
                stream.flush()
        return write

    forwarder = Forwarder(mappings, open_socket, line(out), line(err), address)
    forwarder.listen()
    try:
        forwarder.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        forwarder.close()
    return 0


def resolve_address(text: str) -> str:
    """``--address``: localhost is 127.0.0.1 (pkubectl listens on IPv4 only)."""
    first = text.split(",")[0].strip()
    return LOCALHOST if first in ("", "localhost") else first


def pod_for_forward(session, target) -> tuple[object, Optional[dict]]:
    """The pod to forward to: ``target`` itself for a pod, else the first running pod its
    selector picks (kubectl's AttachablePodForObject); (pod target, Service or None)."""
    from pkube.kubectl.mutate import Target
    from pkube.kubectl.workloads import selector_of

    obj = session.get_json(target.path)
    obj.setdefault("kind", target.resource.kind)
    if obj["kind"] == "Pod":
        pod = obj
    else:
        selector = ",".join(f"{k}={v}" for k, v in selector_of(obj).items())
        pods = session.client.list(session.resolve("pods"), target.namespace, label_selector=selector).get("items") or []
        running = [p for p in pods if (p.get("status") or {}).get("phase") == "Running"]
        if not pods:
            raise CliError(f"no pods found for {target.label}")
        pod = (running or pods)[0]
    phase = (pod.get("status") or {}).get("phase")
    if phase != "Running":
        raise CliError(f"unable to forward port because pod is not running. Current status={phase or 'Unknown'}")
    pod_target = Target(session.resolve("pods"), pod["metadata"]["name"], target.namespace)
    return pod_target, obj if obj["kind"] == "Service" else None


def service_target_ports(service: dict, pod: dict, mappings: list[PortMapping]) -> list[PortMapping]:
    """A Service's ports as the pod's: each remote port is looked up in the Service's ports and
    replaced by its targetPort (a named one through the pod's container ports)."""
    translated = []
    for mapping in mappings:
        entry = next((p for p in (service.get("spec") or {}).get("ports") or [] if p.get("port") == mapping.remote), None)
        if entry is None:
            raise CliError(f"Service {service['metadata']['name']} does not have a service port {mapping.remote}")
        target_port = entry.get("targetPort", mapping.remote)
        if isinstance(target_port, str) and not target_port.isdigit():
            target_port = next((p["containerPort"] for c in (pod.get("spec") or {}).get("containers") or []
                                for p in c.get("ports") or [] if p.get("name") == target_port), None)
            if target_port is None:
                raise CliError(f"Pod {pod['metadata']['name']} does not have a named port '{entry['targetPort']}'")
        translated.append(PortMapping(mapping.local, int(target_port)))
    return translated
