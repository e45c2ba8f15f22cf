"""The Pod Security Standards' checks, as tables: each pod and the exact reason and detail
Kubernetes gives for it (or none), per level."""

from __future__ import annotations

import pytest

from pkube.apiserver.podsecurity import (BASELINE, PRIVILEGED, RESTRICTED, PodSecurityDefaults, check_pod,
                                   forbidden_detail, namespace_policies)


def container(**security) -> dict:
    return {"name": "c", "image": "busybox", **({"securityContext": security} if security else {})}


def spec(*containers, **pod) -> dict:
    return {"containers": list(containers) or [container()], **pod}


RESTRICTED_OK = container(allowPrivilegeEscalation=False, runAsNonRoot=True,
                          seccompProfile={"type": "RuntimeDefault"}, capabilities={"drop": ["ALL"]})

BASELINE_CASES = [
    (spec(hostNetwork=True, hostPID=True), "host namespaces (hostNetwork=true, hostPID=true)"),
    (spec(container(privileged=True), dict(container(privileged=True), name="d")),
     'privileged (containers "c", "d" must not set securityContext.privileged=true)'),
    (spec(container(capabilities={"add": ["NET_ADMIN", "CHOWN"]})),
     'non-default capabilities (container "c" must not include "NET_ADMIN" in securityContext.capabilities.add)'),
    (spec(volumes=[{"name": "root", "hostPath": {"path": "/"}}]), 'hostPath volumes (volume "root")'),
    (spec(dict(container(), ports=[{"containerPort": 80, "hostPort": 8080}])),
     'hostPort (container "c" uses hostPort 8080)'),
    (spec(securityContext={"seccompProfile": {"type": "Unconfined"}}),
     'seccompProfile (pod must not set securityContext.seccompProfile.type to "Unconfined")'),
    (spec(container(procMount="Unmasked")),
     'procMount (container "c" must not set securityContext.procMount to "Unmasked")'),
    (spec(securityContext={"sysctls": [{"name": "net.core.somaxconn", "value": "1"},
                                       {"name": "net.ipv4.tcp_syncookies", "value": "1"}]}),
     "forbidden sysctls (net.core.somaxconn)"),
    (spec(container(seLinuxOptions={"type": "spc_t"})),
     'seLinuxOptions (container "c" set forbidden securityContext.seLinuxOptions: type "spc_t")'),
    (spec(container(appArmorProfile={"type": "Unconfined"})),
     'forbidden AppArmor profile (container "c"=Unconfined)'),
]


@pytest.mark.parametrize("pod_spec, detail", BASELINE_CASES)
def test_baseline_refuses_with_upstreams_detail(pod_spec, detail):
    assert forbidden_detail(check_pod(BASELINE, {}, pod_spec)) == detail
    assert check_pod(PRIVILEGED, {}, pod_spec) == []


def test_baseline_allows_the_default_capabilities_and_an_ordinary_pod():
    assert check_pod(BASELINE, {}, spec(container(capabilities={"add": ["CHOWN", "NET_BIND_SERVICE"]}))) == []
    assert check_pod(BASELINE, {}, spec()) == []


def test_restricted_accepts_a_hardened_pod_and_lists_everything_else():
    assert check_pod(RESTRICTED, {}, spec(RESTRICTED_OK)) == []
    volumes = [{"name": "data", "hostPath": {"path": "/srv"}}, {"name": "tmp", "emptyDir": {}}]
    found = forbidden_detail(check_pod(RESTRICTED, {}, spec(
        dict(RESTRICTED_OK, securityContext=dict(RESTRICTED_OK["securityContext"], runAsUser=0,
                                                 capabilities={"drop": ["ALL"], "add": ["SYS_ADMIN"]})),
        volumes=volumes)))
    assert found == ('unrestricted capabilities (container "c" must not include "SYS_ADMIN" in '
                     'securityContext.capabilities.add), restricted volume types (volume "data" uses restricted '
                     'volume type "hostPath"), runAsUser=0 (container "c" must not set runAsUser=0)')


def test_pod_level_settings_satisfy_restricted_for_every_container():
    pod = spec(container(allowPrivilegeEscalation=False, capabilities={"drop": ["ALL"]}),
               securityContext={"runAsNonRoot": True, "seccompProfile": {"type": "Localhost",
                                                                          "localhostProfile": "p.json"}})
    assert check_pod(RESTRICTED, {}, pod) == []


def test_labels_choose_the_policies_and_an_unknown_level_is_restricted():
    policies = namespace_policies({"pod-security.kubernetes.io/enforce": "baseline",
                                   "pod-security.kubernetes.io/enforce-version": "v1.30",
                                   "pod-security.kubernetes.io/warn": "strict"}, PodSecurityDefaults())
    assert str(policies["enforce"]) == "baseline:v1.30"
    assert str(policies["warn"]) == "restricted:latest"
    assert str(policies["audit"]) == "privileged:latest"
