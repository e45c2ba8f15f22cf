"""Run the apiserver: ``python -m apiserver --etcd-servers http://127.0.0.1:2379 --port 6443``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import urllib.parse

import uvicorn

from apiserver.app import create_app
from apiserver.storage.etcd import EtcdStorage


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m apiserver", description="pkube apiserver")
    parser.add_argument("--etcd-servers", "--etcd", dest="etcd", default="http://127.0.0.1:2379",
                        help="etcd endpoint: http://HOST:PORT or HOST:PORT")
    parser.add_argument("--bind-address", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=6443)
    parser.add_argument("--service-cluster-ip-range", dest="service_cidr", default="10.96.0.0/12")
    parser.add_argument("--service-node-port-range", dest="node_ports", default="30000-32767")
    parser.add_argument("--tls-cert-file")
    parser.add_argument("--tls-private-key-file")
    parser.add_argument("--log-level", default="info")
    return parser.parse_args(argv)


def etcd_host_port(endpoint: str) -> tuple[str, int]:
    """('127.0.0.1', 2379) from 'http://127.0.0.1:2379' or '127.0.0.1:2379'."""
    first = endpoint.split(",")[0].strip()
    parsed = urllib.parse.urlsplit(first if "://" in first else f"http://{first}")
    if not parsed.hostname or not parsed.port:
        raise SystemExit(f"apiserver: bad etcd endpoint {endpoint!r}: want http://HOST:PORT")
    return parsed.hostname, parsed.port


def node_port_range(text: str) -> tuple[int, int]:
    try:
        low, high = (int(part) for part in text.split("-"))
    except ValueError:
        raise SystemExit(f"apiserver: bad --service-node-port-range {text!r}: want LOW-HIGH") from None
    return low, high


async def serve(args: argparse.Namespace) -> None:
    host, port = etcd_host_port(args.etcd)
    storage = await EtcdStorage.connect(host, port)
    try:
        from apiserver.storage.cacher import CachedStorage
        storage = CachedStorage(storage)
    except ImportError:
        logging.getLogger(__name__).warning("no watch cache: watches go to etcd directly")
    app = create_app(storage, service_cidr=args.service_cidr, node_port_range=node_port_range(args.node_ports),
                     close_storage=True)
    config = uvicorn.Config(app, host=args.bind_address, port=args.port, log_level=args.log_level,
                            access_log=False, ssl_certfile=args.tls_cert_file,
                            ssl_keyfile=args.tls_private_key_file, timeout_graceful_shutdown=2)
    await uvicorn.Server(config).serve()


def main(argv: list[str] | None = None) -> None:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(serve(args))


if __name__ == "__main__":
    main()
