"""Run the apiserver: ``python -m pkube.apiserver --etcd-servers http://127.0.0.1:2379 --port 6443``."""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import ssl
import sys
import urllib.parse
from typing import Iterable, Optional

import uvicorn

from pkube.api.kinds import BUILTIN_RESOURCES, ResourceInfo
from pkube.apiserver import authenticationinfo, safeguards, tokenrequest
from pkube.apiserver.app import create_app
from pkube.apiserver.auth import flags as authorization
from pkube.apiserver.auth import requestheader
from pkube.apiserver.auth.authn import RequestAuthenticator
from pkube.apiserver.auth.tokens import BootstrapTokens, StaticTokens, TokenFileError
from pkube.apiserver.bootstrap import default_advertise_address
from pkube.apiserver.exec_proxy import kubelet_ssl
from pkube.apiserver.kubelet_proxy import KubeletConnection
from pkube.apiserver.metrics import ApiserverMetrics
from pkube.apiserver.storage.cacher import CachedStorage
from pkube.apiserver.storage.compactor import DEFAULT_REVISIONS, Compactor
from pkube.apiserver.storage.etcd import ClientTLS, EtcdStorage
from pkube.apiserver.storage.keys import resource_prefix
from pkube.apiserver.storage.measured import MeasuredStorage
from pkube.apiserver.tlsscope import TLSHttpProtocol, TLSWebSocketProtocol
from pkube.client.gcpolicy import settle_after_startup
from pkube.client.mallocpolicy import map_large_blocks
from pkube.client.metrics import new_registry

# Idle keep-alive connections are kept this long (uvicorn's default, 5 s, is exactly kubectl
# drain's retry period: its next POST raced the close and failed with EOF); Go clients close
# idle connections after 90 s.
KEEP_ALIVE_SECONDS = 90


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m pkube.apiserver", description="pkube apiserver")
    parser.add_argument("--etcd-servers", "--etcd", dest="etcd", default="http://127.0.0.1:2379",
                        help="etcd members, comma-separated: http(s)://HOST:PORT or HOST:PORT")
    parser.add_argument("--etcd-cafile", help="TLS to etcd: the etcd CA (with --etcd-certfile and --etcd-keyfile)")
    parser.add_argument("--etcd-certfile", help="TLS to etcd: the apiserver's client certificate")
    parser.add_argument("--etcd-keyfile", help="TLS to etcd: its key")
    parser.add_argument("--bind-address", default="127.0.0.1")
    parser.add_argument("--advertise-address",
                        help="the address the kubernetes Service points at (default: the bind "
                             "address, or the default route's address for 0.0.0.0)")
    parser.add_argument("--port", type=int, default=6443)
    parser.add_argument("--service-cluster-ip-range", dest="service_cidr", default="10.96.0.0/12")
    parser.add_argument("--service-node-port-range", dest="node_ports", default="30000-32767")
    parser.add_argument("--tls-cert-file")
    parser.add_argument("--tls-private-key-file")
    authorization.add_flags(parser)
    parser.add_argument("--client-ca-file",
                        help="authenticate client certificates signed by this CA (CN = user, O = groups)")
    parser.add_argument("--token-auth-file", help="static bearer tokens: CSV token,user,uid,\"group1,group2\"")
    parser.add_argument("--enable-bootstrap-token-auth", action="store_true",
                        help="authenticate bootstrap tokens (Secrets kube-system/bootstrap-token-<id>)")
    parser.add_argument("--encryption-provider-config",
                        help="an EncryptionConfiguration file (secrets encrypted at rest)")
    parser.add_argument("--compaction-interval", type=float, default=300.0,
                        help="seconds between etcd compactions (0: never)")
    parser.add_argument("--compaction-revisions", type=int, default=DEFAULT_REVISIONS,
                        help="compact sooner once this many revisions were written since the last "
                             "compaction (0: only every --compaction-interval)")
    parser.add_argument("--event-ttl", type=float, default=3600.0,
                        help="seconds an Event is kept (0: forever)")
    parser.add_argument("--endpoint-lease-duration", type=float, default=15.0,
                        help="seconds after its last renewal that a stopped apiserver leaves the "
                             "kubernetes Service's endpoints")
    parser.add_argument("--kubelet-certificate-authority", default=None,
                        help="CA file to verify kubelets' serving certificates with")
    parser.add_argument("--kubelet-client-certificate", help="the certificate presented to kubelets")
    parser.add_argument("--kubelet-client-key", help="its private key")
    parser.add_argument("--kubelet-insecure-skip-tls-verify", action="store_true",
                        help="do not verify kubelets' serving certificates (self-signed ones)")
    parser.add_argument("--proxy-client-cert-file", help="the certificate presented to extension apiservers "
                                                          "(APIServices, pkube/apiserver/aggregation.py)")
    parser.add_argument("--proxy-client-key-file", help="its private key")
    requestheader.add_flags(parser)
    parser.add_argument("--etcd-wait", type=float, default=60.0,
                        help="seconds to wait for etcd to answer at start-up (as kube-apiserver does)")
    parser.add_argument("--log-level", default="info")
    safeguards.add_flags(parser)
    tokenrequest.add_flags(parser)
    args = parser.parse_args(argv)
    if args.compaction_revisions < 0:
        parser.error("--compaction-revisions must not be negative")
    return args


def etcd_host_port(endpoint: str) -> tuple[str, int]:
    """('127.0.0.1', 2379) from 'http://127.0.0.1:2379' or '127.0.0.1:2379'."""
    parsed = urllib.parse.urlsplit(endpoint if "://" in endpoint else f"http://{endpoint}")
    if not parsed.hostname or not parsed.port:
        raise SystemExit(f"apiserver: bad etcd endpoint {endpoint!r}: want http://HOST:PORT")
    return parsed.hostname, parsed.port


def etcd_endpoints(text: str) -> list[str]:
    """Every member of a comma-separated --etcd-servers, as HOST:PORT (one line and exit on a
    bad one): the client fails over between them."""
    return ["%s:%d" % etcd_host_port(part.strip()) for part in text.split(",") if part.strip()]


def _etcd_tls(args: argparse.Namespace) -> Optional[ClientTLS]:
    """The etcd client's TLS files, all three or none (one line and exit otherwise)."""
    files = (args.etcd_cafile, args.etcd_certfile, args.etcd_keyfile)
    if not any(files):
        return None
    if not all(files):
        raise SystemExit("apiserver: --etcd-cafile, --etcd-certfile and --etcd-keyfile go together")
    try:
        return ClientTLS.from_files(*files)
    except OSError as exc:
        raise SystemExit(f"apiserver: cannot read {exc.filename}: {exc.strerror}") from None


def node_port_range(text: str) -> tuple[int, int]:
    try:
        low, high = (int(part) for part in text.split("-"))
    except ValueError:
        raise SystemExit(f"apiserver: bad --service-node-port-range {text!r}: want LOW-HIGH") from None
    return low, high


async def serve(args: argparse.Namespace) -> None:
    """Connect to etcd, serve until SIGINT/SIGTERM, then stop everything started here."""
    endpoints = etcd_endpoints(args.etcd)
    advertise, node_ports = _advertise(args), node_port_range(args.node_ports)   # bad flags: fail before waiting
    authorization.modes(args)
    try:
        storage = await EtcdStorage.connect_endpoints(endpoints, transformer=safeguards.transformer(args),
                                                      tls=_etcd_tls(args))
    except ValueError as exc:
        raise SystemExit(f"apiserver: --etcd-servers {args.etcd!r}: {exc}") from None
    authenticator = _authenticator(args, storage)
    await wait_for_etcd(storage, args.etcd_wait)
    compactor = Compactor(storage, interval=args.compaction_interval,
                          revisions=args.compaction_revisions) if args.compaction_interval > 0 else None
    if compactor is not None:
        compactor.start()
    metrics = ApiserverMetrics(new_registry())
    metrics.count_objects_with(storage.key_counts)
    cached = CachedStorage(MeasuredStorage(storage, metrics.storage.observe))
    await cached.warm(cached_prefixes(BUILTIN_RESOURCES))
    app = create_app(cached, filters=safeguards.request_filters(args),
                     admission_plugins=[*authorization.admission_plugins(args), *safeguards.admission_plugins(args, cached)],
                     authorizer=authorization.authorizer(args), service_cidr=args.service_cidr,
                     node_port_range=node_ports, close_storage=True,
                     event_ttl=args.event_ttl, advertise=advertise, kubelet=_kubelet_connection(args),
                     endpoint_lease_duration=args.endpoint_lease_duration,
                     proxy_client_cert=((args.proxy_client_cert_file, args.proxy_client_key_file)
                                        if args.proxy_client_cert_file and args.proxy_client_key_file else None),
                     authenticator=authenticator, service_accounts=tokenrequest.from_flags(args, authenticator),
                     authentication_info=_authentication_info(args),
                     metrics=metrics)
    config = uvicorn.Config(app, host=args.bind_address, port=args.port, log_level=args.log_level,
                            access_log=False, timeout_keep_alive=KEEP_ALIVE_SECONDS, timeout_graceful_shutdown=2,
                            proxy_headers=False, **_tls(args))
    _trust_requestheader_ca(config, args)
    # What start-up built (~90,000 objects: modules, schemas, routes) lives as long as the
    # process: freezing it keeps each full GC pass (which stalls every request; 65-115 ms
    # without this) to what requests have built since; the young generation is made larger
    # (see pkube/client/gcpolicy.py: the watch cache's decoded events made GC a quarter of
    # the apiserver's CPU during a 1,000-node DaemonSet roll).
    settle_after_startup()
    map_large_blocks()   # TLS read buffers and big bodies off the heap (pkube/client/mallocpolicy.py)
    try:
        await uvicorn.Server(config).serve()
    finally:
        if compactor is not None:
            await compactor.stop()


def cached_prefixes(resources: Iterable[ResourceInfo]) -> list[str]:
    """The store prefixes whose watch cache starts with the apiserver, as kube-apiserver starts
    one per resource: every resource of ``resources`` that can be watched, except Events
    (written at every pod's start, seldom watched; kube-apiserver does not cache them either).
    Custom resources get theirs at their first watch, as in kube-apiserver."""
    prefixes = (resource_prefix(info.key_prefix()) for info in resources
                if "watch" in info.verbs and info.plural != "events")
    return list(dict.fromkeys(prefix for prefix in prefixes if prefix))


async def wait_for_etcd(storage, seconds: float) -> None:
    """Return once etcd answers; after `seconds` of silence, exit with one line. A control
    plane started all at once (static pods) thus needs no restart of the apiserver."""
    loop = asyncio.get_running_loop()
    deadline, said = loop.time() + seconds, False
    while True:
        try:
            await storage.current_revision()
            return
        except Exception as err:   # noqa: BLE001 - StorageUnavailable and the transport's errors
            if loop.time() >= deadline:
                raise SystemExit(f"apiserver: etcd did not answer within {seconds:.0f}s: {err}") from None
            if not said:
                logging.getLogger("pkube.apiserver").info("waiting for etcd: %s", err)
                said = True
            await asyncio.sleep(0.2)


def _kubelet_connection(args: argparse.Namespace) -> KubeletConnection:
    """How pods/log, exec, attach and port-forward reach kubelets (HTTPS on their port), with
    the apiserver's client certificate when given: one SSLContext for httpx and the WebSocket
    proxy alike (httpx ignores ``cert=`` next to a CA path)."""
    options: dict = {}
    if args.kubelet_client_certificate and args.kubelet_client_key:
        options["cert"] = (args.kubelet_client_certificate, args.kubelet_client_key)
    if args.kubelet_insecure_skip_tls_verify:
        options["verify"] = False
    elif args.kubelet_certificate_authority:
        options["verify"] = args.kubelet_certificate_authority
    return KubeletConnection(client_options={"verify": kubelet_ssl(KubeletConnection(client_options=options))})


def _tls(args: argparse.Namespace) -> dict:
    """uvicorn's TLS settings: none without --tls-cert-file; with --client-ca-file, client
    certificates are asked for (optional) and verified, and the protocols put the verified one
    into the ASGI scope (apiserver.tlsscope)."""
    if not args.tls_cert_file:
        return {}
    options = {"ssl_certfile": args.tls_cert_file, "ssl_keyfile": args.tls_private_key_file,
               "http": TLSHttpProtocol, "ws": TLSWebSocketProtocol}
    if args.client_ca_file or args.requestheader_client_ca_file:
        options.update(ssl_ca_certs=args.client_ca_file or args.requestheader_client_ca_file,
                       ssl_cert_reqs=ssl.CERT_OPTIONAL)
    return options


def _trust_requestheader_ca(config: uvicorn.Config, args: argparse.Namespace) -> None:
    """With both --client-ca-file and --requestheader-client-ca-file, the handshake accepts
    certificates of either CA (each authenticator then checks its own: auth.requestheader)."""
    if args.tls_cert_file and args.client_ca_file and args.requestheader_client_ca_file:
        config.load()
        requestheader.trust_both(config.ssl, args.requestheader_client_ca_file)


def _authenticator(args: argparse.Namespace, storage) -> Optional[RequestAuthenticator]:
    """The authentication chain the flags ask for (None: no authentication at all, everyone is
    served). Further token authenticators (ServiceAccount tokens) are appended to its
    ``token_authenticators``."""
    tokens: list = []
    if args.token_auth_file:
        try:
            tokens.append(StaticTokens.load(args.token_auth_file))
        except TokenFileError as err:
            raise SystemExit(f"apiserver: --token-auth-file: {err}") from None
    if args.enable_bootstrap_token_auth:
        tokens.append(BootstrapTokens(storage))
    proxy = requestheader.from_args(args)
    if not tokens and not args.client_ca_file and proxy is None:
        return None
    if proxy is None:
        return RequestAuthenticator(tokens, client_certificates=bool(args.client_ca_file))
    client_cas = requestheader.load_ca_file(args.client_ca_file) if args.client_ca_file else None
    return RequestAuthenticator(tokens, client_certificates=bool(args.client_ca_file), client_cas=client_cas,
                                request_header=requestheader.RequestHeaderAuthenticator.from_config(proxy))


def _authentication_info(args: argparse.Namespace):
    """What kube-system/extension-apiserver-authentication publishes (read from the files at
    each sync); None without --client-ca-file and --requestheader-client-ca-file."""
    if not args.client_ca_file and not args.requestheader_client_ca_file:
        return None
    return authenticationinfo.required_from(args.client_ca_file, requestheader.from_args(args))


def _advertise(args: argparse.Namespace) -> tuple[str, int, str]:
    address = args.advertise_address or default_advertise_address(args.bind_address)
    try:
        ipaddress.ip_address(address)
    except ValueError:
        raise SystemExit(f"apiserver: --advertise-address {address!r} is not an IP address") from None
    return address, args.port, "https" if args.tls_cert_file else "http"


def main(argv: list[str] | None = None) -> None:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(serve(args))


if __name__ == "__main__":
    main()
