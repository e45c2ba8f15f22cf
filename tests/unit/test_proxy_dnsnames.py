"""The cluster DNS names (Kubernetes' DNS specification) from Services and EndpointSlices."""

from dnslib import QTYPE, RCODE

from pkube.proxy.dnsnames import ClusterNames

DOMAIN = "cluster.local"


def service(name, ns="default", ip="10.96.0.20", ports=({"name": "http", "port": 80},), **spec):
    return {"metadata": {"name": name, "namespace": ns},
            "spec": {"clusterIP": ip, "ports": [dict(p) for p in ports], **spec}}


def endpoint_slice(service_name, endpoints, ns="default", ports=({"name": "http", "port": 8080},)):
    return {"metadata": {"name": service_name + "-x", "namespace": ns,
                         "labels": {"kubernetes.io/service-name": service_name}},
            "addressType": "IPv4", "ports": [dict(p) for p in ports], "endpoints": endpoints}


def names(services, slices=()):
    by_key = {f"{s['metadata']['namespace']}/{s['metadata']['name']}": s for s in services}

    def slices_of(key):
        ns, name = key.split("/")
        return [s for s in slices if s["metadata"]["namespace"] == ns
                and s["metadata"]["labels"]["kubernetes.io/service-name"] == name]
    return ClusterNames(DOMAIN, by_key.get, slices_of)


def rdata(answer):
    return sorted(str(rr.rdata) for rr in answer.answers)


def test_a_service_name_is_its_cluster_ip_and_absent_names_are_nxdomain_with_the_soa():
    dns = names([service("web")])
    assert rdata(dns.resolve("web.default.svc.cluster.local.", QTYPE.A)) == ["10.96.0.20"]
    assert rdata(dns.resolve("WEB.Default.svc.cluster.local", QTYPE.A)) == ["10.96.0.20"]
    missing = dns.resolve("nope.default.svc.cluster.local.", QTYPE.A)
    assert missing.rcode == RCODE.NXDOMAIN and missing.authority[0].rtype == QTYPE.SOA
    assert dns.resolve("web.other.svc.cluster.local.", QTYPE.A).rcode == RCODE.NXDOMAIN


def test_an_existing_name_without_the_asked_type_is_an_empty_noerror():
    dns = names([service("web")])
    nodata = dns.resolve("web.default.svc.cluster.local.", QTYPE.AAAA)
    assert nodata.rcode == RCODE.NOERROR and nodata.answers == [] and nodata.authority


def test_a_headless_service_answers_each_ready_endpoint_and_its_hostnames():
    slices = [endpoint_slice("db", [
        {"addresses": ["10.244.0.5"], "hostname": "db-0", "conditions": {"ready": True}},
        {"addresses": ["10.244.0.6"], "hostname": "db-1", "conditions": {"ready": True}},
        {"addresses": ["10.244.0.7"], "hostname": "db-2", "conditions": {"ready": False}}])]
    dns = names([service("db", ip="None")], slices)
    assert rdata(dns.resolve("db.default.svc.cluster.local.", QTYPE.A)) == ["10.244.0.5", "10.244.0.6"]
    assert rdata(dns.resolve("db-1.db.default.svc.cluster.local.", QTYPE.A)) == ["10.244.0.6"]
    assert rdata(dns.resolve("10-244-0-5.db.default.svc.cluster.local.", QTYPE.A)) == ["10.244.0.5"]
    assert dns.resolve("db-2.db.default.svc.cluster.local.", QTYPE.A).rcode == RCODE.NXDOMAIN


def test_publish_not_ready_addresses_publishes_every_endpoint():
    slices = [endpoint_slice("db", [{"addresses": ["10.244.0.7"], "conditions": {"ready": False}}])]
    dns = names([service("db", ip="None", publishNotReadyAddresses=True)], slices)
    assert rdata(dns.resolve("db.default.svc.cluster.local.", QTYPE.A)) == ["10.244.0.7"]


def test_srv_records_for_named_ports():
    dns = names([service("web")])
    srv = dns.resolve("_http._tcp.web.default.svc.cluster.local.", QTYPE.SRV)
    assert rdata(srv) == ["0 100 80 web.default.svc.cluster.local."]
    assert [str(rr.rdata) for rr in srv.additional] == ["10.96.0.20"]
    assert dns.resolve("_http._udp.web.default.svc.cluster.local.", QTYPE.SRV).rcode == RCODE.NXDOMAIN
    slices = [endpoint_slice("db", [{"addresses": ["10.244.0.5"], "hostname": "db-0"},
                                    {"addresses": ["10.244.0.6"]}])]
    headless = names([service("db", ip="None")], slices).resolve("_http._tcp.db.default.svc.cluster.local.", QTYPE.SRV)
    assert rdata(headless) == ["0 50 8080 10-244-0-6.db.default.svc.cluster.local.",
                               "0 50 8080 db-0.db.default.svc.cluster.local."]


def test_pod_names_and_external_names():
    dns = names([service("ext", ip="", type="ExternalName", externalName="example.org")])
    assert rdata(dns.resolve("10-244-1-9.default.pod.cluster.local.", QTYPE.A)) == ["10.244.1.9"]
    assert dns.resolve("not-an-ip.default.pod.cluster.local.", QTYPE.A).rcode == RCODE.NXDOMAIN
    cname = dns.resolve("ext.default.svc.cluster.local.", QTYPE.A)
    assert [str(rr.rdata) for rr in cname.answers] == ["example.org."]


def test_names_outside_the_cluster_domain_are_not_ours():
    dns = names([service("web")])
    assert dns.resolve("example.org.", QTYPE.A) is None
    assert dns.resolve("cluster.local.example.org.", QTYPE.A) is None
    assert dns.resolve("cluster.local.", QTYPE.SOA).answers[0].rtype == QTYPE.SOA
