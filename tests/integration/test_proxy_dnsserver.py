"""The cluster DNS server over real UDP and TCP sockets on loopback: cluster names answered
(and cached until a change), the rest forwarded to an upstream resolver, long answers
truncated over UDP and whole over TCP."""

from __future__ import annotations

import asyncio
import socket

from dnslib import QTYPE, RCODE, DNSRecord

from pkube.cluster.etcd import free_port
from pkube.proxy.dnsnames import ClusterNames
from pkube.proxy.dnsserver import DnsServer


def _names(domain, services, slices=None):
    return ClusterNames(domain, services.get, lambda key: (slices or {}).get(key, []))


async def _udp(port: int, name: str, qtype: str = "A") -> DNSRecord:
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        await loop.sock_connect(sock, ("127.0.0.1", port))
        await loop.sock_sendall(sock, DNSRecord.question(name, qtype).pack())
        return DNSRecord.parse(await asyncio.wait_for(loop.sock_recv(sock, 65535), 5))


def _tcp(port: int, name: str, qtype: str = "A") -> DNSRecord:
    return DNSRecord.parse(DNSRecord.question(name, qtype).send("127.0.0.1", port, tcp=True, timeout=5))


def test_cluster_names_forwarding_caching_and_truncation():
    services = {"default/web": {"metadata": {"name": "web", "namespace": "default"},
                                "spec": {"clusterIP": "10.96.0.20", "ports": [{"port": 80}]}},
                "default/many": {"metadata": {"name": "many", "namespace": "default"},
                                 "spec": {"clusterIP": "None", "ports": [{"port": 80}]}}}
    slices = {"default/many": [{"metadata": {"name": "many-1", "namespace": "default"}, "addressType": "IPv4",
                                "endpoints": [{"addresses": [f"10.244.0.{i}"]} for i in range(1, 60)]}]}
    upstream_zone = {"default/www": {"metadata": {"name": "www", "namespace": "default"},
                                     "spec": {"clusterIP": "192.0.2.7", "ports": [{"port": 80}]}}}

    async def scenario():
        upstream = DnsServer(_names("example.test", upstream_zone), "127.0.0.1", free_port())
        cluster = DnsServer(_names("cluster.local", services, slices), "127.0.0.1", free_port(),
                            upstreams=[("127.0.0.1", free_port()), ("127.0.0.1", upstream.port)],
                            forward_timeout=0.5)
        await upstream.start()
        await cluster.start()
        try:
            web = await _udp(cluster.port, "web.default.svc.cluster.local")
            assert [str(rr.rdata) for rr in web.rr] == ["10.96.0.20"] and web.header.aa == 1
            assert (await _udp(cluster.port, "nope.default.svc.cluster.local")).header.rcode == RCODE.NXDOMAIN

            services["default/web"]["spec"]["clusterIP"] = "10.96.0.21"
            cached = await _udp(cluster.port, "web.default.svc.cluster.local")
            assert [str(rr.rdata) for rr in cached.rr] == ["10.96.0.20"]       # cached until told
            cluster.invalidate()
            fresh = await _udp(cluster.port, "web.default.svc.cluster.local")
            assert [str(rr.rdata) for rr in fresh.rr] == ["10.96.0.21"]

            # not ours: the first upstream is silent, the second answers
            forwarded = await _udp(cluster.port, "www.default.svc.example.test")
            assert [str(rr.rdata) for rr in forwarded.rr] == ["192.0.2.7"]
            over_tcp = await asyncio.to_thread(_tcp, cluster.port, "www.default.svc.example.test")
            assert [str(rr.rdata) for rr in over_tcp.rr] == ["192.0.2.7"]

            # 59 addresses do not fit 512 bytes: truncated over UDP, whole over TCP
            truncated = await _udp(cluster.port, "many.default.svc.cluster.local")
            assert truncated.header.tc == 1 and not truncated.rr
            whole = await asyncio.to_thread(_tcp, cluster.port, "many.default.svc.cluster.local")
            assert len(whole.rr) == 59 and whole.header.tc == 0
        finally:
            await cluster.stop()
            await upstream.stop()
    asyncio.run(scenario())


def test_with_no_upstream_answering_a_foreign_name_is_servfail():
    async def scenario():
        server = DnsServer(_names("cluster.local", {}), "127.0.0.1", free_port(),
                           upstreams=[("127.0.0.1", free_port())], forward_timeout=0.3)
        await server.start()
        try:
            answer = await _udp(server.port, "example.org", "A")
            assert answer.header.rcode == RCODE.SERVFAIL
            assert answer.q.qname == "example.org." and answer.q.qtype == QTYPE.A
        finally:
            await server.stop()
    asyncio.run(scenario())
