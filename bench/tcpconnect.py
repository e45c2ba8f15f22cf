"""TCP connect latency for bench/network.py, run inside network namespaces ("pods").

  serve PORT            accept connections on PORT forever; answer each with one byte and close
  connect HOST PORT N   N sequential connections; each timed from connect() until the server's
                        byte arrives (the handshake plus the accept); prints one JSON line
                        {"count": N, "p50_ms": .., "p99_ms": .., "errors": N}

Usage: python bench/tcpconnect.py serve PORT | connect HOST PORT N
"""

from __future__ import annotations

import json
import socket
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.measure import percentile  # noqa: E402


def serve(port: int) -> None:
    """Accept until killed; prints "ready" once listening."""
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("0.0.0.0", port))
    listener.listen(128)
    print("ready", flush=True)
    while True:
        conn, _ = listener.accept()
        conn.sendall(b"!")
        conn.close()


def connect(host: str, port: int, count: int) -> dict:
    """`count` timed connections; a failed one is counted, not timed."""
    latencies, errors = [], 0
    for _ in range(count):
        began = time.perf_counter()
        try:
            with socket.create_connection((host, port), timeout=5) as conn:
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")  # RST: no TIME_WAIT pile
                if conn.recv(1) != b"!":
                    raise OSError("no answer")
            latencies.append(time.perf_counter() - began)
        except OSError:
            errors += 1
    return {"count": count, "errors": errors,
            "p50_ms": percentile(latencies, 0.5) * 1000 if latencies else None,
            "p99_ms": percentile(latencies, 0.99) * 1000 if latencies else None}


def main(argv: list[str]) -> int:
    if argv[:1] == ["serve"]:
        serve(int(argv[1]))
        return 0
    if argv[:1] == ["connect"]:
        print(json.dumps(connect(argv[1], int(argv[2]), int(argv[3]))))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
