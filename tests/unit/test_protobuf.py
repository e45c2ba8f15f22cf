"""decode_protobuf: Kubernetes protobuf bodies become the JSON object a JSON client sends."""

from __future__ import annotations

import base64
import json
import logging
import random

import pytest

from pkube.apiserver.protobuf import (MAGIC, ProtobufError, UnsupportedKindError, decode_protobuf,
                                special_value)
from pkube.apiserver.protobuf_schema import KINDS, MESSAGES


# --- a small encoder, written like gogo-protobuf's marshallers, to build test bodies ----------

def varint(value: int) -> bytes:
    value &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def field(number: int, value) -> bytes:
    """One field: an int as a varint, bytes/str as length-delimited."""
    if isinstance(value, (bool, int)):
        return varint(number << 3) + varint(int(value))
    data = value.encode() if isinstance(value, str) else value
    return varint(number << 3 | 2) + varint(len(data)) + data


def envelope(api_version: str, kind: str, raw: bytes, content_encoding: str = "") -> bytes:
    type_meta = field(1, api_version) + field(2, kind)
    return MAGIC + field(1, type_meta) + field(2, raw) + field(3, content_encoding) + field(4, "")


def encode(obj: dict, message: str) -> bytes:
    """``obj`` (JSON form) as ``message``: the inverse the decoder must undo."""
    out = b""
    for number, (name, type_) in sorted(MESSAGES[message].items()):
        if type_.startswith("inline "):
            out += field(number, encode(obj, type_[len("inline "):]))
        elif name in obj:
            out += encode_field(number, type_, obj[name])
    return out


def encode_field(number: int, type_: str, value) -> bytes:
    if type_.startswith("[]"):
        return b"".join(encode_field(number, type_[2:], item) for item in value)
    if type_.startswith("map["):
        value_type = type_.partition("]")[2]
        return b"".join(field(number, field(1, key) + encode_field(2, value_type, item))
                        for key, item in sorted(value.items()))
    type_ = type_.lstrip("*")
    if type_ == "bytes":
        return field(number, base64.b64decode(value))
    if type_ in ("string", "bool", "int32", "int64"):
        return field(number, value)
    return field(number, encode_special(type_, value))


def encode_special(type_: str, value) -> bytes:
    if type_ == "Quantity":
        return field(1, value)
    if type_ == "IntOrString":
        return field(1, 1) + field(3, value) if isinstance(value, str) else \
            field(1, 0) + field(2, value)
    if type_ in ("FieldsV1", "RawExtension"):
        return field(1, json.dumps(value))
    if type_ in ("Time", "MicroTime"):
        return encode_time(value)
    return encode(value, type_)


def encode_time(text: str) -> bytes:
    import datetime
    moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return field(1, int(moment.timestamp())) + field(2, moment.microsecond * 1000)


# --- the envelope --------------------------------------------------------------------------

def test_namespace_from_kubectl_bytes():
    # kubectl create namespace foo, as captured from kubectl v1.32.
    body = bytes.fromhex("6b3873000a0f0a02763112094e616d657370616365121b0a130a03666f6f1200"
                         "1a0022002a0032003800420012001a020a001a002200")
    assert decode_protobuf(body) == {"apiVersion": "v1", "kind": "Namespace",
                                     "metadata": {"name": "foo"}, "spec": {}, "status": {}}


@pytest.mark.parametrize("body, message", [
    (b"", "magic"),
    (b'{"kind": "Pod"}', "magic"),
    (MAGIC, "no apiVersion/kind"),
    (MAGIC + b"\x0a\x05\x0a\x02v1", "runs past the end"),
    (MAGIC + b"\x0a", "truncated varint"),
    (MAGIC + b"\x0b\x00", "wire type 3"),
    (MAGIC + b"\xff" * 11, "longer than 10 bytes"),
    (MAGIC + b"\x00\x00", "field number 0"),
])
def test_malformed_envelopes_are_protobuf_errors(body, message):
    with pytest.raises(ProtobufError, match=message):
        decode_protobuf(body)


def test_unsupported_kind_says_which_and_suggests_json():
    with pytest.raises(UnsupportedKindError,
                       match="APIService in apiregistration.k8s.io/v1: send it as application/json"):
        decode_protobuf(envelope("apiregistration.k8s.io/v1", "APIService", b""))


def test_compressed_content_encoding_is_unsupported():
    with pytest.raises(UnsupportedKindError, match="contentEncoding 'gzip'"):
        decode_protobuf(envelope("v1", "Namespace", b"", content_encoding="gzip"))


def test_non_bytes_body_is_a_protobuf_error():
    with pytest.raises(ProtobufError, match="must be bytes"):
        decode_protobuf("k8s\x00")  # type: ignore[arg-type]


@pytest.mark.parametrize("raw, message", [
    (field(1, 5), "metadata: wire type 0"),                         # metadata as a varint
    (field(1, field(1, b"\xff\xfe")), "not valid UTF-8"),           # name not UTF-8
    (field(1, field(1, 7)), "wire type 0 does not fit a string"),   # name as a varint
])
def test_wrong_field_contents_name_the_field(raw, message):
    with pytest.raises(ProtobufError, match=message):
        decode_protobuf(envelope("v1", "ConfigMap", raw))


# --- JSON form of the values ---------------------------------------------------------------

def test_zero_values_of_go_value_fields_are_left_out_but_pointers_keep_them():
    container = field(1, "c") + field(2, "") + field(8, "") + field(18, False)
    pod_spec = field(2, container) + field(3, "") + field(4, 0) + field(21, False)
    raw = field(1, field(1, "p")) + field(2, pod_spec)

    pod = decode_protobuf(envelope("v1", "Pod", raw))

    assert pod["spec"] == {"containers": [{"name": "c", "resources": {}}],
                           "terminationGracePeriodSeconds": 0,
                           "automountServiceAccountToken": False}


def test_times_are_rfc3339_in_utc():
    assert special_value("Time", field(1, 1767225600) + field(2, 5)) == "2026-01-01T00:00:00Z"
    assert special_value("MicroTime", field(1, 1767225600) + field(2, 123456789)) == \
        "2026-01-01T00:00:00.123456Z"
    assert special_value("Time", b"") is None
    assert special_value("Time", field(1, -62135596800 + 86400)) == "0001-01-02T00:00:00Z"


def test_time_out_of_range_is_a_protobuf_error():
    with pytest.raises(ProtobufError, match="out of range"):
        special_value("Time", field(1, 1 << 62))


def test_int_or_string_and_quantity():
    assert special_value("IntOrString", field(1, 0) + field(2, 8080)) == 8080
    assert special_value("IntOrString", field(1, 1) + field(3, "http")) == "http"
    assert special_value("IntOrString", field(1, 0) + field(2, -1)) == -1
    assert special_value("Quantity", field(1, "500m")) == "500m"
    with pytest.raises(ProtobufError, match="IntOrString type 7"):
        special_value("IntOrString", field(1, 7))


def test_raw_extension_and_fields_v1_are_parsed_json():
    assert special_value("RawExtension", field(1, b'{"a": [1]}')) == {"a": [1]}
    assert special_value("FieldsV1", field(1, b'{"f:metadata": {}}')) == {"f:metadata": {}}
    assert special_value("RawExtension", b"") is None
    with pytest.raises(ProtobufError, match="embedded JSON is invalid"):
        special_value("RawExtension", field(1, b"{nope"))


def test_pointer_int_or_string_zero_is_kept():
    rolling = field(1, field(1, 0) + field(2, 0)) + field(2, field(1, 1) + field(3, "25%"))
    raw = field(2, field(4, field(1, "RollingUpdate") + field(2, rolling)))

    deployment = decode_protobuf(envelope("apps/v1", "Deployment", raw))

    assert deployment["spec"]["strategy"] == {
        "type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": "25%"}}


def test_maps_keep_empty_values_and_secret_bytes_are_base64():
    raw = (field(1, field(11, field(1, "a") + field(2, "")))
           + field(2, field(1, "k") + field(2, b"\x00\xff")) + field(2, field(1, "e")))

    secret = decode_protobuf(envelope("v1", "Secret", raw))

    assert secret["metadata"] == {"labels": {"a": ""}}
    assert secret["data"] == {"k": "AP8=", "e": ""}


def test_packed_and_unpacked_repeated_ints_both_decode():
    groups = field(4, varint(5) + varint(6)) + field(4, 7)  # supplementalGroups
    raw = field(2, field(14, groups))                        # spec.securityContext

    pod = decode_protobuf(envelope("v1", "Pod", raw))

    assert pod["spec"]["securityContext"] == {"supplementalGroups": [5, 6, 7]}


def test_unknown_fields_are_skipped_and_logged(caplog):
    raw = field(1, field(1, "n") + field(99, "future")) + field(77, 1)

    with caplog.at_level(logging.DEBUG, logger="pkube.apiserver.protobuf"):
        namespace = decode_protobuf(envelope("v1", "Namespace", raw))

    assert namespace == {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "n"}}
    assert "unknown field 99" in caplog.text


def test_inline_structs_are_flattened():
    volume = field(1, "cfg") + field(2, field(19, field(1, field(1, "app-config")) + field(3, 420)))
    env_from = field(3, field(1, field(1, "shared")))  # secretRef.name (inline reference)
    port = field(1, 0) + field(2, 8080)                                   # IntOrString 8080
    probe = field(1, field(3, field(1, port))) + field(3, 2)             # tcpSocket.port
    container = field(1, "c") + field(19, env_from) + field(10, probe)
    raw = field(2, field(1, volume) + field(2, container))

    pod = decode_protobuf(envelope("v1", "Pod", raw))

    assert pod["spec"]["volumes"] == [{"name": "cfg", "configMap": {"name": "app-config",
                                                                    "defaultMode": 420}}]
    assert pod["spec"]["containers"][0]["envFrom"] == [{"secretRef": {"name": "shared"}}]
    assert pod["spec"]["containers"][0]["livenessProbe"] == {"tcpSocket": {"port": 8080},
                                                             "timeoutSeconds": 2}


# --- whole objects: every kind decodes back to the JSON it was encoded from ------------------

POD = {
    "apiVersion": "v1", "kind": "Pod",
    "metadata": {
        "name": "web-0", "generateName": "web-", "namespace": "default", "uid": "u-1",
        "resourceVersion": "42", "generation": 3, "creationTimestamp": "2026-01-01T00:00:00Z",
        "deletionTimestamp": "2026-01-02T03:04:05Z", "deletionGracePeriodSeconds": 30,
        "labels": {"app": "web", "empty": ""}, "annotations": {"note": "x"},
        "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-1",
                             "uid": "u-2", "controller": True, "blockOwnerDeletion": False}],
        "finalizers": ["a/b"],
        "managedFields": [{"manager": "kubectl", "operation": "Update", "apiVersion": "v1",
                           "time": "2026-01-01T00:00:00Z", "fieldsType": "FieldsV1",
                           "fieldsV1": {"f:metadata": {"f:labels": {}}}}],
    },
    "spec": {
        "volumes": [
            {"name": "data", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}},
            {"name": "host", "hostPath": {"path": "/var/log", "type": "Directory"}},
            {"name": "sec", "secret": {"secretName": "s", "defaultMode": 256, "optional": True,
                                       "items": [{"key": "a", "path": "a.txt", "mode": 0}]}},
            {"name": "proj", "projected": {"sources": [
                {"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}},
                {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt",
                                                                      "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {
                    "apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}]}},
            {"name": "claim", "persistentVolumeClaim": {"claimName": "c", "readOnly": True}},
        ],
        "initContainers": [{"name": "init", "image": "busybox", "command": ["true"],
                            "restartPolicy": "Always"}],
        "containers": [{
            "name": "app", "image": "nginx:1.27", "command": ["nginx"],
            "args": ["-g", "daemon off;"],
            "workingDir": "/srv",
            "ports": [{"name": "http", "containerPort": 80, "protocol": "TCP", "hostPort": 8080,
                       "hostIP": "0.0.0.0"}],
            "envFrom": [{"prefix": "P_", "configMapRef": {"name": "cm", "optional": False}}],
            "env": [{"name": "A", "value": "1"},
                    {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                    {"name": "S", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
                    {"name": "C", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "k",
                                                                    "optional": True}}},
                    {"name": "L", "valueFrom": {"resourceFieldRef": {
                        "containerName": "app", "resource": "limits.cpu", "divisor": "1m"}}}],
            "resources": {"limits": {"cpu": "500m", "memory": "128Mi"},
                          "requests": {"cpu": "250m"}, "claims": [{"name": "gpu"}]},
            "resizePolicy": [{"resourceName": "cpu", "restartPolicy": "NotRequired"}],
            "volumeMounts": [{"name": "data", "mountPath": "/data", "readOnly": True,
                              "subPath": "x", "mountPropagation": "HostToContainer"}],
            "livenessProbe": {"httpGet": {"path": "/healthz", "port": "http", "scheme": "HTTP",
                                          "httpHeaders": [{"name": "X", "value": "y"}]},
                              "initialDelaySeconds": 3, "periodSeconds": 10,
                              "failureThreshold": 3, "terminationGracePeriodSeconds": 0},
            "readinessProbe": {"exec": {"command": ["cat", "/tmp/ready"]}, "timeoutSeconds": 1},
            "startupProbe": {"grpc": {"port": 9000, "service": "s"}},
            "lifecycle": {"preStop": {"sleep": {"seconds": 5}},
                          "postStart": {"tcpSocket": {"port": 80}}},
            "terminationMessagePath": "/dev/termination-log",
            "terminationMessagePolicy": "File", "imagePullPolicy": "IfNotPresent",
            "securityContext": {"privileged": False, "runAsUser": 0, "runAsNonRoot": False,
                                "readOnlyRootFilesystem": True, "allowPrivilegeEscalation": False,
                                "capabilities": {"add": ["NET_ADMIN"], "drop": ["ALL"]},
                                "seccompProfile": {"type": "RuntimeDefault"}},
            "stdin": True, "stdinOnce": True, "tty": True,
        }],
        "restartPolicy": "Always", "terminationGracePeriodSeconds": 30,
        "activeDeadlineSeconds": 600, "dnsPolicy": "ClusterFirst",
        "nodeSelector": {"kubernetes.io/os": "linux"}, "serviceAccountName": "default",
        "serviceAccount": "default", "automountServiceAccountToken": False, "nodeName": "n1",
        "hostNetwork": True, "hostPID": True, "hostIPC": True, "shareProcessNamespace": False,
        "securityContext": {"runAsUser": 1000, "runAsGroup": 1000, "fsGroup": 2000,
                            "supplementalGroups": [1, 2], "sysctls": [{"name": "a", "value": "b"}]},
        "imagePullSecrets": [{"name": "regcred"}], "hostname": "web-0", "subdomain": "web",
        "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [
                {"key": "zone", "operator": "In", "values": ["a", "b"]}]}]}},
                     "podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                         {"weight": 100, "podAffinityTerm": {
                             "labelSelector": {"matchLabels": {"app": "web"}},
                             "topologyKey": "kubernetes.io/hostname"}}]}},
        "schedulerName": "default-scheduler",
        "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists",
                         "effect": "NoExecute", "tolerationSeconds": 300}],
        "hostAliases": [{"ip": "10.0.0.1", "hostnames": ["db"]}],
        "priorityClassName": "high", "priority": 0,
        "dnsConfig": {"nameservers": ["1.1.1.1"], "searches": ["svc"],
                      "options": [{"name": "ndots", "value": "2"}]},
        "readinessGates": [{"conditionType": "x/ready"}], "runtimeClassName": "",
        "enableServiceLinks": True, "preemptionPolicy": "PreemptLowerPriority",
        "overhead": {"cpu": "10m"},
        "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "zone",
                                       "whenUnsatisfiable": "DoNotSchedule",
                                       "labelSelector": {"matchExpressions": [
                                           {"key": "app", "operator": "Exists"}]},
                                       "minDomains": 1}],
        "setHostnameAsFQDN": False, "os": {"name": "linux"}, "hostUsers": True,
        "schedulingGates": [{"name": "wait"}],
    },
    "status": {
        "phase": "Running", "hostIP": "10.0.0.5", "hostIPs": [{"ip": "10.0.0.5"}],
        "podIP": "10.244.0.7", "podIPs": [{"ip": "10.244.0.7"}],
        "startTime": "2026-01-01T00:00:01Z", "qosClass": "Burstable",
        "conditions": [{"type": "Ready", "status": "True",
                        "lastTransitionTime": "2026-01-01T00:00:05Z"}],
        "containerStatuses": [{
            "name": "app", "ready": True, "restartCount": 2, "image": "nginx:1.27",
            "imageID": "sha256:abc", "containerID": "pdocker://1", "started": True,
            "state": {"running": {"startedAt": "2026-01-01T00:00:02Z"}},
            "lastState": {"terminated": {"exitCode": 137, "signal": 9, "reason": "OOMKilled",
                                         "startedAt": "2026-01-01T00:00:00Z",
                                         "finishedAt": "2026-01-01T00:00:01Z"}}}],
    },
}

OBJECTS = [
    POD,
    {"apiVersion": "apps/v1", "kind": "ReplicaSet",
     "metadata": {"name": "web-1", "labels": {"app": "web"}},
     "spec": {"replicas": 0, "minReadySeconds": 5, "selector": {"matchLabels": {"app": "web"}},
              "template": {"metadata": {"labels": {"app": "web"}},
                           "spec": {"containers": [{"name": "c", "image": "i"}]}}},
     "status": {"replicas": 2, "readyReplicas": 1, "availableReplicas": 1,
                "fullyLabeledReplicas": 2, "observedGeneration": 4}},
    {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
     "spec": {"replicas": 2, "paused": True, "revisionHistoryLimit": 0,
              "progressDeadlineSeconds": 600, "selector": {"matchLabels": {"a": "b"}},
              "template": {"metadata": {}, "spec": {"containers": [{"name": "c"}]}},
              "strategy": {"type": "RollingUpdate",
                           "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0}}},
     "status": {"observedGeneration": 2, "replicas": 2, "updatedReplicas": 2,
                "collisionCount": 0,
                "conditions": [{"type": "Available", "status": "True", "reason": "Min",
                                "message": "ok", "lastUpdateTime": "2026-01-01T00:00:00Z",
                                "lastTransitionTime": "2026-01-01T00:00:00Z"}]}},
    {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
     "spec": {"type": "NodePort", "clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"],
              "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack", "selector": {"app": "web"},
              "ports": [{"name": "http", "protocol": "TCP", "port": 80, "targetPort": 8080,
                         "nodePort": 30080, "appProtocol": "http"}],
              "sessionAffinity": "ClientIP",
              "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 10800}},
              "externalTrafficPolicy": "Local", "internalTrafficPolicy": "Cluster",
              "allocateLoadBalancerNodePorts": False, "publishNotReadyAddresses": True},
     "status": {"loadBalancer": {"ingress": [{"ip": "1.2.3.4", "ports": [
         {"port": 80, "protocol": "TCP"}]}]}}},
    {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"},
     "spec": {"podCIDR": "10.244.0.0/24", "podCIDRs": ["10.244.0.0/24"], "unschedulable": True,
              "taints": [{"key": "k", "value": "v", "effect": "NoSchedule",
                          "timeAdded": "2026-01-01T00:00:00Z"}], "providerID": "pkube://n1"},
     "status": {"capacity": {"cpu": "2", "memory": "4Gi", "pods": "110"},
                "allocatable": {"cpu": "2"}, "phase": "Running",
                "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                                "lastHeartbeatTime": "2026-01-01T00:00:00Z"}],
                "addresses": [{"type": "InternalIP", "address": "10.0.0.5"}],
                "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
                "nodeInfo": {"machineID": "m", "kernelVersion": "6.18", "osImage": "Debian",
                             "containerRuntimeVersion": "pdocker://0.1",
                             "kubeletVersion": "v1.32.0", "operatingSystem": "linux",
                             "architecture": "amd64"},
                "images": [{"names": ["busybox:latest"], "sizeBytes": 4500000}]}},
    {"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "web"},
     "subsets": [{"addresses": [{"ip": "10.244.0.7", "nodeName": "n1", "targetRef": {
         "kind": "Pod", "name": "web-0", "namespace": "default"}}],
                  "notReadyAddresses": [{"ip": "10.244.0.8"}],
                  "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]}]},
    {"apiVersion": "v1", "kind": "Event", "metadata": {"name": "web-0.1"},
     "involvedObject": {"kind": "Pod", "name": "web-0", "fieldPath": "spec.containers{app}"},
     "reason": "Pulled", "message": "pulled", "source": {"component": "kubelet", "host": "n1"},
     "firstTimestamp": "2026-01-01T00:00:00Z", "lastTimestamp": "2026-01-01T00:00:09Z",
     "count": 2, "type": "Normal", "eventTime": "2026-01-01T00:00:00.250000Z",
     "series": {"count": 2, "lastObservedTime": "2026-01-01T00:00:09.000001Z"},
     "reportingComponent": "kubelet", "reportingInstance": "n1", "action": "Pull"},
    {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
     "metadata": {"name": "n1", "namespace": "kube-node-lease"},
     "spec": {"holderIdentity": "n1", "leaseDurationSeconds": 40,
              "acquireTime": "2026-01-01T00:00:00.000000Z",
              "renewTime": "2026-01-01T00:00:10.500000Z", "leaseTransitions": 0}},
    {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
     "metadata": {"name": "web-abc", "labels": {"kubernetes.io/service-name": "web"}},
     "addressType": "IPv4",
     "endpoints": [{"addresses": ["10.244.0.7"], "conditions": {"ready": False,
                                                               "serving": True,
                                                               "terminating": False},
                    "nodeName": "n1", "zone": "z", "hostname": "",
                    "targetRef": {"kind": "Pod", "name": "web-0"},
                    "hints": {"forZones": [{"name": "z"}]}}],
     "ports": [{"name": "", "port": 8080, "protocol": "TCP", "appProtocol": "http"}]},
    {"apiVersion": "autoscaling/v1", "kind": "Scale", "metadata": {"name": "web"},
     "spec": {"replicas": 3}, "status": {"replicas": 2, "selector": "app=web"}},
    {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ns"},
     "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Terminating", "conditions": [
         {"type": "NamespaceDeletionContentFailure", "status": "False"}]}},
    {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "sa"},
     "secrets": [{"name": "t"}], "imagePullSecrets": [{"name": "r"}],
     "automountServiceAccountToken": False},
    {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm"},
     "data": {"k": "v"}, "binaryData": {"b": "AAE="}, "immutable": False},
    {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "type": "Opaque",
     "data": {"k": "dg=="}, "stringData": {"x": "y"}, "immutable": True},
    {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "web-0"},
     "target": {"kind": "Node", "name": "n1"}},
    {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "web-0"},
     "deleteOptions": {"gracePeriodSeconds": 0, "propagationPolicy": "Foreground",
                       "preconditions": {"uid": "u-1"}, "dryRun": ["All"]}},
]


@pytest.mark.parametrize("obj", OBJECTS, ids=lambda obj: obj["kind"])
def test_every_kind_decodes_back_to_its_json(obj):
    message = KINDS[(obj["apiVersion"], obj["kind"])]
    body = {key: value for key, value in obj.items() if key not in ("apiVersion", "kind")}

    decoded = decode_protobuf(envelope(obj["apiVersion"], obj["kind"], encode(body, message)))

    assert decoded == obj


def test_schema_references_resolve():
    leaf_types = {"string", "bool", "int32", "int64", "bytes", "Time", "MicroTime", "Quantity",
                  "IntOrString", "FieldsV1", "RawExtension"}
    for message, fields in MESSAGES.items():
        for name, type_ in fields.values():
            base = type_.removeprefix("inline ").lstrip("*[]").partition("]")
            base = base[2] if type_.startswith("map[") else base[0]
            assert base in leaf_types or base in MESSAGES, f"{message}.{name}: {type_}"
    assert set(KINDS.values()) <= set(MESSAGES)


# --- robustness ------------------------------------------------------------------------------

def _mutations(rng: random.Random, valid: bytes):
    """Random bytes, truncations and byte flips of a valid body."""
    yield bytes(rng.getrandbits(8) for _ in range(rng.randrange(64)))
    yield MAGIC + bytes(rng.getrandbits(8) for _ in range(rng.randrange(64)))
    yield valid[:rng.randrange(len(valid))]
    flipped = bytearray(valid)
    for _ in range(rng.randrange(1, 4)):
        flipped[rng.randrange(4, len(flipped))] = rng.getrandbits(8)
    yield bytes(flipped)


def test_fuzzed_bodies_raise_only_protobuf_errors():
    rng = random.Random(1234)
    valids = [envelope(obj["apiVersion"], obj["kind"],
                       encode({k: v for k, v in obj.items() if k not in ("apiVersion", "kind")},
                              KINDS[(obj["apiVersion"], obj["kind"])])) for obj in OBJECTS]
    decoded = 0
    for _ in range(5000):
        for body in _mutations(rng, rng.choice(valids)):
            try:
                assert isinstance(decode_protobuf(body), dict)
                decoded += 1
            except ProtobufError:
                pass
    assert decoded > 0
