"""A DNS load generator for bench/network.py, run inside a network namespace ("a pod").

Reads one line on stdin (the go signal), then for SECONDS keeps WINDOW questions in flight
over one UDP socket to SERVER:53, cycling over the names given, and prints one JSON line:
{"answered": N, "lost": N, "seconds": S, "p50_ms": .., "p99_ms": .., "errors": N}
(errors: answers whose rcode is not NOERROR).

Usage: python bench/dnsload.py SERVER SECONDS WINDOW NAME [NAME ...]
"""

from __future__ import annotations

import json
import socket
import struct
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dnslib import DNSRecord  # noqa: E402

from bench.measure import percentile  # noqa: E402


def main(argv: list[str]) -> int:
    server, seconds, window, names = argv[0], float(argv[1]), int(argv[2]), argv[3:]
    questions = [DNSRecord.question(name, "A").pack()[2:] for name in names]
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.connect((server, 53))
    sock.settimeout(1.0)
    sys.stdin.readline()
    sent: dict[int, float] = {}
    latencies: list[float] = []
    lost = errors = next_id = asked = 0
    began = time.perf_counter()
    end = began + seconds
    while True:
        now = time.perf_counter()
        while len(sent) < window and now < end:
            next_id = (next_id + 1) & 0xFFFF
            sock.send(struct.pack("!H", next_id) + questions[asked % len(questions)])
            sent[next_id] = time.perf_counter()
            asked += 1
        if not sent:
            break
        try:
            answer = sock.recv(4096)
        except socket.timeout:
            lost += len(sent)
            sent.clear()
            continue
        ident, flags = struct.unpack("!HH", answer[:4])
        started = sent.pop(ident, None)
        if started is not None:
            latencies.append(time.perf_counter() - started)
            errors += (flags & 0xF) != 0
    elapsed = time.perf_counter() - began
    print(json.dumps({"answered": len(latencies), "lost": lost, "errors": errors, "seconds": elapsed,
                      "p50_ms": percentile(latencies, 0.5) * 1000, "p99_ms": percentile(latencies, 0.99) * 1000}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
