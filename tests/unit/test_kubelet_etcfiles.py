"""The /etc/hosts and /etc/resolv.conf the kubelet writes for a pod."""

from __future__ import annotations

from pkube.kubelet.containers import run_as_non_root_error, security_options
from pkube.kubelet.etcfiles import hosts_file, resolv_conf

HOST = "nameserver 192.0.2.53\nsearch corp.example\noptions edns0\n"


def pod(**spec):
    return {"metadata": {"name": "web", "namespace": "shop", "uid": "u1"}, "spec": spec}


def test_hosts_has_the_pod_its_fqdn_with_a_subdomain_and_host_aliases():
    text = hosts_file(pod(hostname="db-0", subdomain="db",
                          hostAliases=[{"ip": "10.1.2.3", "hostnames": ["foo.local", "bar.local"]}]), "10.244.0.7")
    assert "10.244.0.7\tdb-0.db.shop.svc.cluster.local\tdb-0" in text
    assert "10.1.2.3\tfoo.local\tbar.local" in text and text.startswith("# Kubernetes-managed hosts file.")
    assert "10.244.0.7\tweb\n" in hosts_file(pod(), "10.244.0.7")


def test_resolv_conf_by_dns_policy():
    cluster = resolv_conf(pod(), HOST, ["10.96.0.10"])
    assert cluster == ("nameserver 10.96.0.10\nsearch shop.svc.cluster.local svc.cluster.local cluster.local "
                       "corp.example\noptions ndots:5\n")
    assert resolv_conf(pod(), HOST, []) == HOST                       # no cluster DNS: the host's
    assert resolv_conf(pod(dnsPolicy="Default"), HOST, ["10.96.0.10"]) == HOST
    assert resolv_conf(pod(hostNetwork=True), HOST, ["10.96.0.10"]) == HOST
    assert resolv_conf(pod(hostNetwork=True, dnsPolicy="ClusterFirstWithHostNet"), HOST,
                       ["10.96.0.10"]).startswith("nameserver 10.96.0.10")
    custom = resolv_conf(pod(dnsPolicy="None", dnsConfig={"nameservers": ["1.1.1.1"], "searches": ["a.b"],
                                                          "options": [{"name": "ndots", "value": "2"},
                                                                      {"name": "rotate"}]}), HOST, ["10.96.0.10"])
    assert custom == "nameserver 1.1.1.1\nsearch a.b\noptions ndots:2 rotate\n"


def test_security_context_maps_to_the_runtime():
    options = security_options({"securityContext": {"capabilities": {"add": ["NET_ADMIN"], "drop": ["ALL"]},
                                                    "readOnlyRootFilesystem": True}})
    assert options == {"cap_add": ["NET_ADMIN"], "cap_drop": ["ALL"], "privileged": False, "read_only": True,
                       "no_new_privileges": True}
    assert security_options({"securityContext": {"allowPrivilegeEscalation": True}})["no_new_privileges"] is False


def test_run_as_non_root_is_refused_for_root_images_with_kubernetes_message():
    container = {"name": "c", "securityContext": {"runAsNonRoot": True}}
    assert "image will run as root" in run_as_non_root_error(container, pod(), "")
    assert "non-numeric user (app)" in run_as_non_root_error(container, pod(), "app")
    assert run_as_non_root_error(container, pod(), "1000") == ""
    assert run_as_non_root_error({"name": "c", "securityContext": {"runAsNonRoot": True, "runAsUser": 1000}},
                                 pod(), "") == ""
    assert run_as_non_root_error({"name": "c"}, pod(), "") == ""
