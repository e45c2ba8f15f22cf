"""Service environment variables as the kubelet writes them (envvars.FromServices)."""

from pkube.kubelet.serviceenv import pod_service_env, service_variables, visible_services


def svc(name, namespace="default", ip="10.96.0.20", ports=({"port": 80},)):
    return {"metadata": {"name": name, "namespace": namespace},
            "spec": {"clusterIP": ip, "ports": [dict(p) for p in ports]}}


def test_a_service_gives_kubernetes_and_docker_link_variables():
    web = svc("my-web", ports=({"name": "http", "port": 80, "protocol": "TCP"}, {"name": "dns", "port": 53, "protocol": "UDP"}))
    assert service_variables(web) == {
        "MY_WEB_SERVICE_HOST": "10.96.0.20",
        "MY_WEB_SERVICE_PORT": "80",
        "MY_WEB_SERVICE_PORT_HTTP": "80",
        "MY_WEB_SERVICE_PORT_DNS": "53",
        "MY_WEB_PORT": "tcp://10.96.0.20:80",
        "MY_WEB_PORT_80_TCP": "tcp://10.96.0.20:80",
        "MY_WEB_PORT_80_TCP_PROTO": "tcp",
        "MY_WEB_PORT_80_TCP_PORT": "80",
        "MY_WEB_PORT_80_TCP_ADDR": "10.96.0.20",
        "MY_WEB_PORT_53_UDP": "udp://10.96.0.20:53",
        "MY_WEB_PORT_53_UDP_PROTO": "udp",
        "MY_WEB_PORT_53_UDP_PORT": "53",
        "MY_WEB_PORT_53_UDP_ADDR": "10.96.0.20",
    }


def test_only_the_pods_namespace_and_the_kubernetes_service_are_visible():
    services = [svc("kubernetes", ip="10.96.0.1", ports=({"name": "https", "port": 443},)),
                svc("web", "shop"), svc("db", "other"), svc("headless", "shop", ip="None"), svc("none", "shop", ip="")]
    names = [s["metadata"]["name"] for s in visible_services(services, "shop", True)]
    assert names == ["kubernetes", "web"]


def test_enable_service_links_false_keeps_only_the_kubernetes_service():
    services = [svc("kubernetes", ip="10.96.0.1", ports=({"name": "https", "port": 443},)), svc("web", "shop")]
    pod = {"metadata": {"namespace": "shop"}, "spec": {"enableServiceLinks": False}}
    env = pod_service_env(services, pod)
    assert env["KUBERNETES_SERVICE_HOST"] == "10.96.0.1" and env["KUBERNETES_SERVICE_PORT_HTTPS"] == "443"
    assert not any(k.startswith("WEB_") for k in env)


def test_a_service_in_the_pods_namespace_named_kubernetes_wins_over_the_default_one():
    services = [svc("kubernetes", ip="10.96.0.1"), svc("kubernetes", "shop", ip="10.96.0.99")]
    assert pod_service_env(services, {"metadata": {"namespace": "shop"}})["KUBERNETES_SERVICE_HOST"] == "10.96.0.99"
