"""Fuzzing the apiserver (issue 12): hypothesis strategies of requests (manifests, query
strings, headers, content types, patches, malformed bodies), a target (a real apiserver
process on a real etcd) and the properties every answer must keep:

- no 5xx, and every answer (a watch's headers) within ``REQUEST_TIMEOUT``;
- the process never dies;
- nothing is stored by a rejected request (or a dry run): etcd's keys and their
  mod_revisions are the same before and after it, but for the apiserver's own lease;
- its memory stays flat (RSS at the start and the end, compared by the caller).

Used by tests/integration/test_apiserver_fuzz.py (a bounded, seeded run in `make test`) and
bench/fuzz.py (`make fuzz`: the long run, with schemathesis cases from the served OpenAPI).
"""

from __future__ import annotations

import base64
import contextlib
import functools
import json
import os
import socket
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import httpx
from hypothesis import strategies as st

from pkube.cluster.etcd import EtcdProcess, free_port

REPO = Path(__file__).resolve().parents[2]
REQUEST_TIMEOUT = 10.0          # seconds: an answer later than this is a hang
NAMESPACE = "fuzz"
NAMES = ("a", "b", "c")         # names the seeds use: updates and patches find objects
BACKGROUND_KEYS = ("/registry/leases/kube-system/apiserver-",)   # the apiserver's own renewals
WRITE_METHODS = ("POST", "PUT", "PATCH", "DELETE")


@dataclass(frozen=True)
class Resource:
    group_version: str      # "v1", "apps/v1"
    plural: str
    kind: str
    namespaced: bool = True

    def collection(self, namespace: str = NAMESPACE) -> str:
        root = "/api/v1" if self.group_version == "v1" else f"/apis/{self.group_version}"
        return f"{root}/namespaces/{namespace}/{self.plural}" if self.namespaced else f"{root}/{self.plural}"


RESOURCES = (
    Resource("v1", "configmaps", "ConfigMap"), Resource("v1", "secrets", "Secret"),
    Resource("v1", "pods", "Pod"), Resource("v1", "services", "Service"),
    Resource("v1", "serviceaccounts", "ServiceAccount"), Resource("v1", "events", "Event"),
    Resource("v1", "endpoints", "Endpoints"), Resource("v1", "persistentvolumeclaims", "PersistentVolumeClaim"),
    Resource("v1", "replicationcontrollers", "ReplicationController"),
    Resource("v1", "namespaces", "Namespace", False), Resource("v1", "nodes", "Node", False),
    Resource("apps/v1", "deployments", "Deployment"), Resource("apps/v1", "statefulsets", "StatefulSet"),
    Resource("apps/v1", "daemonsets", "DaemonSet"), Resource("apps/v1", "replicasets", "ReplicaSet"),
    Resource("batch/v1", "jobs", "Job"), Resource("batch/v1", "cronjobs", "CronJob"),
    Resource("coordination.k8s.io/v1", "leases", "Lease"),
    Resource("policy/v1", "poddisruptionbudgets", "PodDisruptionBudget"),
    Resource("autoscaling/v2", "horizontalpodautoscalers", "HorizontalPodAutoscaler"),
    Resource("discovery.k8s.io/v1", "endpointslices", "EndpointSlice"),
    Resource("networking.k8s.io/v1", "ingresses", "Ingress"),
    Resource("networking.k8s.io/v1", "networkpolicies", "NetworkPolicy"),
    Resource("rbac.authorization.k8s.io/v1", "roles", "Role"),
    Resource("apiextensions.k8s.io/v1", "customresourcedefinitions", "CustomResourceDefinition", False),
)
SUBRESOURCES = ("status", "scale", "binding", "eviction", "log", "token", "ephemeralcontainers", "nope")


@dataclass(frozen=True)
class FuzzRequest:
    """One request and the class of input it belongs to (for the report)."""

    label: str
    method: str
    path: str
    params: tuple = ()
    headers: tuple = ()
    body: Optional[bytes] = None

    @property
    def dry_run(self) -> bool:
        return any(k == "dryRun" and v == "All" for k, v in self.params)

    def describe(self) -> str:
        body = (self.body or b"")[:300]
        return f"[{self.label}] {self.method} {self.path} params={list(self.params)} headers={dict(self.headers)} body={body!r}"


# ---------------------------------------------------------------- strategies

@functools.cache
def _text(max_size: int = 20) -> st.SearchStrategy[str]:
    """Short strings, unicode (NULs, surrogates excluded by JSON-encodability) included."""
    return st.text(st.characters(exclude_categories=("Cs",)), max_size=max_size)


@functools.cache
def names() -> st.SearchStrategy[str]:
    return st.one_of(st.sampled_from(NAMES), st.sampled_from(NAMES), st.from_regex(r"[a-z]([-a-z0-9]{0,10}[a-z0-9])?", fullmatch=True),
                     _text(), st.sampled_from(["", ".", "..", "a" * 254, "A", "a/b", "a%2Fb", "\x00", "é"]))


@functools.cache
def json_values() -> st.SearchStrategy:
    """Any JSON value, shallow."""
    scalars = st.one_of(st.none(), st.booleans(), st.integers(-2 ** 70, 2 ** 70),
                        st.floats(allow_nan=False, allow_infinity=False), _text())
    return st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_text(8), inner, max_size=4),
                        max_leaves=12)


@functools.cache
def label_maps() -> st.SearchStrategy:
    keys = st.one_of(st.from_regex(r"([a-z]{1,5}\.io/)?[a-z][a-z0-9]{0,8}", fullmatch=True), _text(10),
                     st.sampled_from(["app", "a/b/c", "-x", "x" * 64, "k8s.io/" + "y" * 63]))
    values = st.one_of(st.sampled_from(["web", "db", ""]), _text(10), st.integers(), st.none(), st.just("v" * 64))
    return st.dictionaries(keys, values, max_size=4)


def metadata(resource: Resource) -> st.SearchStrategy[dict]:
    optional = {
        "labels": label_maps(), "annotations": st.dictionaries(_text(10), st.one_of(_text(), json_values()), max_size=3),
        "generateName": st.one_of(st.just("gen-"), _text()), "namespace": st.sampled_from([NAMESPACE, "other", "", 7]),
        "resourceVersion": st.one_of(st.sampled_from(["", "0", "1", "-1", "abc", "99999999999999999999"]), json_values()),
        "uid": st.one_of(_text(), st.just("00000000-0000-0000-0000-000000000000")),
        "finalizers": st.one_of(st.lists(st.sampled_from(["kubernetes", "example.com/f", "x", "", "a/b/c"]), max_size=3), json_values()),
        "ownerReferences": st.one_of(st.lists(st.fixed_dictionaries({
            "apiVersion": st.sampled_from(["v1", "apps/v1", ""]), "kind": st.sampled_from(["ReplicaSet", "x", ""]),
            "name": names(), "uid": _text()}, optional={"controller": st.booleans(), "blockOwnerDeletion": json_values()}),
            max_size=2), json_values()),
        "deletionTimestamp": st.sampled_from(["2020-01-01T00:00:00Z", "not a time"]),
        "creationTimestamp": st.sampled_from(["2020-01-01T00:00:00Z", "not a time", None]),
        "managedFields": json_values(),
    }
    md = st.fixed_dictionaries({"name": names()}, optional=optional)
    return st.one_of(md, md, md, json_values())


@functools.cache
def quantities() -> st.SearchStrategy:
    return st.one_of(st.sampled_from(["1", "100m", "1Gi", "0.5", "-1", "1e3", "1E", "1.5.5", "", "9" * 40, "1Ki",
                                      "999999999999999999999999Ei", "NaN", "+1"]), st.integers(), st.floats(allow_nan=False), _text(6))


@functools.cache
def containers() -> st.SearchStrategy:
    return st.lists(st.fixed_dictionaries({"name": names(), "image": st.one_of(st.just("busybox"), _text())}, optional={
        "command": st.one_of(st.lists(_text()), json_values()),
        "ports": st.lists(st.fixed_dictionaries({"containerPort": st.one_of(st.integers(-1, 70000), json_values())},
                                                optional={"protocol": st.sampled_from(["TCP", "UDP", "SCTP", "x"]), "name": names()}), max_size=3),
        "resources": st.fixed_dictionaries({}, optional={"limits": st.dictionaries(st.sampled_from(["cpu", "memory", "x"]), quantities()),
                                                         "requests": st.dictionaries(st.sampled_from(["cpu", "memory", "x"]), quantities())}),
        "env": st.one_of(st.lists(st.fixed_dictionaries({"name": _text()}, optional={"value": json_values(), "valueFrom": json_values()}), max_size=3), json_values()),
        "volumeMounts": json_values(), "livenessProbe": json_values(), "securityContext": json_values(),
    }), max_size=3)


@functools.cache
def pod_specs() -> st.SearchStrategy:
    return st.fixed_dictionaries({"containers": st.one_of(containers(), json_values())}, optional={
        "initContainers": containers(), "volumes": json_values(), "nodeName": names(), "restartPolicy": st.sampled_from(["Always", "Never", "x"]),
        "affinity": json_values(), "tolerations": json_values(), "terminationGracePeriodSeconds": json_values(),
        "hostNetwork": json_values(), "priority": json_values(), "overhead": json_values(), "ephemeralContainers": json_values()})


@functools.cache
def selectors() -> st.SearchStrategy:
    return st.one_of(st.fixed_dictionaries({}, optional={"matchLabels": label_maps(), "matchExpressions": st.lists(st.fixed_dictionaries(
        {"key": _text(), "operator": st.sampled_from(["In", "NotIn", "Exists", "DoesNotExist", "Gt", "x"])},
        optional={"values": st.one_of(st.lists(_text(), max_size=3), json_values())}), max_size=2)}), json_values())


@functools.cache
def templates() -> st.SearchStrategy:
    return st.fixed_dictionaries({"metadata": st.fixed_dictionaries({}, optional={"labels": label_maps()}), "spec": pod_specs()})


def specs(resource: Resource) -> st.SearchStrategy[dict]:
    """The kind's fields around metadata (spec, data, ...), plausible or not."""
    kind = resource.kind
    if kind in ("ConfigMap", "Secret"):
        return st.fixed_dictionaries({}, optional={
            "data": st.one_of(st.dictionaries(_text(12), st.one_of(_text(), st.just("aGVsbG8="), st.just("!!notbase64"))), json_values()),
            "binaryData": st.one_of(st.dictionaries(_text(8), st.sampled_from(["aGVsbG8=", "?", ""])), json_values()),
            "stringData": json_values(), "immutable": json_values(),
            "type": st.sampled_from(["Opaque", "kubernetes.io/tls", "kubernetes.io/service-account-token", "x", ""])})
    if kind == "Pod":
        return st.fixed_dictionaries({"spec": st.one_of(pod_specs(), json_values())}, optional={"status": json_values()})
    if kind == "Service":
        return st.fixed_dictionaries({"spec": st.fixed_dictionaries({}, optional={
            "type": st.sampled_from(["ClusterIP", "NodePort", "LoadBalancer", "ExternalName", "x"]),
            "clusterIP": st.sampled_from(["None", "", "10.96.0.10", "10.96.0.10", "1.2.3.4", "::1", "x", "10.111.222.1"]),
            "clusterIPs": json_values(), "selector": label_maps(), "externalName": _text(),
            "ports": st.lists(st.fixed_dictionaries({"port": st.one_of(st.integers(-1, 70000), json_values())}, optional={
                "nodePort": st.one_of(st.integers(29990, 32800), json_values()), "targetPort": st.one_of(st.integers(-1, 70000), _text()),
                "protocol": st.sampled_from(["TCP", "UDP", "x"]), "name": names()}), max_size=3),
            "ipFamilies": json_values(), "sessionAffinity": json_values()})})
    if kind in ("Deployment", "ReplicaSet", "StatefulSet", "DaemonSet", "ReplicationController"):
        return st.fixed_dictionaries({"spec": st.fixed_dictionaries({}, optional={
            "replicas": st.one_of(st.integers(-5, 2 ** 40), json_values()), "selector": selectors(), "template": st.one_of(templates(), json_values()),
            "strategy": json_values(), "serviceName": names(), "minReadySeconds": json_values(), "updateStrategy": json_values()})})
    if kind in ("Job", "CronJob"):
        job = st.fixed_dictionaries({}, optional={"template": st.one_of(templates(), json_values()), "completions": json_values(),
                                                  "parallelism": st.one_of(st.integers(-1, 2 ** 33), json_values()), "completionMode": json_values(),
                                                  "backoffLimit": json_values(), "selector": selectors()})
        cron = st.fixed_dictionaries({"schedule": st.sampled_from(["* * * * *", "@hourly", "61 * * * *", "", "x y z", "*/0 * * * *"])},
                                     optional={"jobTemplate": st.fixed_dictionaries({}, optional={"spec": job}), "timeZone": _text()})
        return st.fixed_dictionaries({"spec": job if kind == "Job" else cron})
    if kind == "Ingress":
        backend = st.one_of(st.fixed_dictionaries({}, optional={"service": st.fixed_dictionaries({}, optional={
            "name": names(), "port": st.fixed_dictionaries({}, optional={"name": names(), "number": st.integers(-1, 70000)})}),
            "resource": json_values()}), json_values())
        path = st.fixed_dictionaries({"backend": backend}, optional={
            "path": st.sampled_from(["/", "/a", "a", "", "/a//b", "/a/..", "%2F"]), "pathType": st.sampled_from(
                ["Prefix", "Exact", "ImplementationSpecific", "x", None])})
        rule = st.fixed_dictionaries({}, optional={"host": st.sampled_from(["a.example.com", "*.a.com", "a*.com", "1.2.3.4", ""]),
                                                   "http": st.one_of(st.fixed_dictionaries({"paths": st.lists(path, max_size=2)}), json_values())})
        return st.fixed_dictionaries({"spec": st.fixed_dictionaries({}, optional={
            "rules": st.one_of(st.lists(rule, max_size=2), json_values()), "defaultBackend": backend, "tls": json_values(),
            "ingressClassName": names()})}, optional={"status": json_values()})
    if kind == "NetworkPolicy":
        port = st.fixed_dictionaries({}, optional={"port": st.one_of(st.integers(-1, 70000), names()), "endPort": json_values(),
                                                   "protocol": st.sampled_from(["TCP", "UDP", "SCTP", "ICMP", None])})
        peer = st.fixed_dictionaries({}, optional={"podSelector": selectors(), "namespaceSelector": selectors(),
                                                   "ipBlock": st.fixed_dictionaries({}, optional={
                                                       "cidr": st.sampled_from(["10.0.0.0/8", "10.0.0.0/33", "x", "::/0"]),
                                                       "except": json_values()})})
        rule = st.fixed_dictionaries({}, optional={"ports": st.lists(port, max_size=2), "from": st.lists(peer, max_size=2),
                                                   "to": st.lists(peer, max_size=2)})
        return st.fixed_dictionaries({"spec": st.fixed_dictionaries({}, optional={
            "podSelector": selectors(), "ingress": st.lists(rule, max_size=2), "egress": st.one_of(st.lists(rule, max_size=2), json_values()),
            "policyTypes": st.one_of(st.lists(st.sampled_from(["Ingress", "Egress", "x"]), max_size=3), json_values())})})
    if kind == "CustomResourceDefinition":
        return st.fixed_dictionaries({"spec": st.fixed_dictionaries({}, optional={
            "group": st.sampled_from(["example.com", "", "x", "a.b"]), "scope": st.sampled_from(["Namespaced", "Cluster", "x"]),
            "names": st.fixed_dictionaries({}, optional={"plural": names(), "kind": _text(), "singular": names(), "shortNames": json_values()}),
            "versions": st.one_of(st.lists(st.fixed_dictionaries({"name": st.sampled_from(["v1", "v1beta1", "", "x"]), "served": json_values(),
                                                                  "storage": json_values()}, optional={"schema": json_values()}), max_size=2), json_values())})})
    return st.fixed_dictionaries({}, optional={"spec": json_values(), "data": json_values(), "status": json_values(),
                                              "rules": json_values(), "endpoints": json_values(), "subsets": json_values()})


def manifests(resource: Resource) -> st.SearchStrategy[dict]:
    """An object for ``resource``: the right apiVersion and kind mostly, a wrong one sometimes."""
    head = st.fixed_dictionaries({"apiVersion": st.sampled_from([resource.group_version] * 4 + ["v2", "", "apps/v1"]),
                                  "kind": st.sampled_from([resource.kind] * 4 + ["Pod", "", "Status"]),
                                  "metadata": metadata(resource)})
    return st.builds(lambda h, rest: {**rest, **h}, head, specs(resource))


def paths_for(resource: Resource) -> st.SearchStrategy[str]:
    """The collection or an item of ``resource``, in the fuzz namespace mostly."""
    namespace = st.sampled_from([NAMESPACE] * 6 + ["default", "kube-system", "nope", "a" * 70])
    return st.builds(lambda ns, name, sub, kind: (resource.collection(ns) + ("" if kind == 0 else f"/{_quote(name)}")
                                                  + (f"/{sub}" if kind == 2 else "")),
                     namespace, names(), st.sampled_from(SUBRESOURCES), st.sampled_from([0, 1, 1, 1, 2]))


def _quote(name: str) -> str:
    from urllib.parse import quote
    return quote(name, safe="") or "%20"


SELECTOR_SAMPLES = ("app=web", "app!=web", "app in (web,db)", "app notin (x)", "!app", "app", "a=b,c=d", "app==web",
                    "app in (", "=", "a b", "app>1", "x" * 300, "metadata.name=a", "spec.nodeName=", "status.phase!=Running",
                    "metadata.namespace==fuzz", "nope=1", "a=b=c", "(", ",,,", "app in ()", "\x00")


@functools.cache
def query_params() -> st.SearchStrategy[tuple]:
    """Query strings of list, watch, get, write and delete calls, legal and not."""
    ints = st.one_of(st.integers(-10, 10), st.integers(-2 ** 70, 2 ** 70), st.sampled_from(["", "x", "1.5", "0x10", "1e3", " 1"]))
    values = {
        "labelSelector": st.one_of(st.sampled_from(SELECTOR_SAMPLES), _text()),
        "fieldSelector": st.one_of(st.sampled_from(SELECTOR_SAMPLES), _text()),
        "limit": ints, "continue": st.one_of(st.sampled_from(["", "x", "eyJ2IjoibWV0YS5rOHMuaW8vdjEiLCJydiI6MSwic3RhcnQiOiJhIn0",
                                                              base64.urlsafe_b64encode(b'{"rv":-1,"start":"\\u0000"}').decode()]), _text()),
        "resourceVersion": st.one_of(st.sampled_from(["", "0", "1", "-1", "abc", "99999999999999", "1.0"]), ints),
        "resourceVersionMatch": st.sampled_from(["NotOlderThan", "Exact", "x", ""]),
        "watch": st.sampled_from(["true", "1", "false", "x", ""]), "timeoutSeconds": st.one_of(st.sampled_from(["0", "1", "1"]), ints),
        "allowWatchBookmarks": st.sampled_from(["true", "x"]), "sendInitialEvents": st.sampled_from(["true", "false", "x"]),
        "dryRun": st.sampled_from(["All", "All", "x", "", "None"]), "fieldManager": st.one_of(st.sampled_from(["fuzz", "", "m" * 200]), _text()),
        "fieldValidation": st.sampled_from(["Strict", "Warn", "Ignore", "x"]), "force": st.sampled_from(["true", "x"]),
        "propagationPolicy": st.sampled_from(["Foreground", "Background", "Orphan", "x", ""]),
        "gracePeriodSeconds": ints, "orphanDependents": st.sampled_from(["true", "false", "x"]), "pretty": st.sampled_from(["true", "x"]),
        "container": names(), "follow": st.sampled_from(["true", "x"]), "tailLines": ints, "limitBytes": ints,
        "_garbage": _text(),
    }
    pair = st.one_of([st.tuples(st.just(k), v.map(str)) for k, v in sorted(values.items())])
    return st.lists(pair, max_size=4).map(tuple)


CONTENT_TYPES = ("application/json", "application/json", "application/json", "application/yaml",
                 "application/vnd.kubernetes.protobuf", "application/json; charset=utf-16", "text/plain", "",
                 "application/json;;;", "multipart/form-data; boundary=x", "application/x-www-form-urlencoded", "*/*")
PATCH_TYPES = ("application/json-patch+json", "application/merge-patch+json", "application/strategic-merge-patch+json",
               "application/apply-patch+yaml", "application/apply-patch+json", "application/json", "application/x-nope")
ACCEPTS = ("application/json", "application/json;as=Table;v=v1;g=meta.k8s.io", "application/yaml",
           "application/vnd.kubernetes.protobuf", "application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io",
           "application/json;as=Table;v=v9;g=x", "text/html", "*/*", "", "application/json;stream=watch", "a/b;;=")


@functools.cache
def headers() -> st.SearchStrategy[tuple]:
    """Accept, Accept-Encoding, Content-Encoding and odd header values (what httpx can send)."""
    return st.lists(st.one_of(
        st.tuples(st.just("Accept"), st.sampled_from(ACCEPTS)),
        st.tuples(st.just("Accept-Encoding"), st.sampled_from(["gzip", "br", "x", "identity;q=0"])),
        st.tuples(st.just("Content-Encoding"), st.sampled_from(["gzip", "deflate", "x"])),
        st.tuples(st.sampled_from(["User-Agent", "X-Fuzz", "Impersonate-User", "Impersonate-Group", "Authorization"]),
                  st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7e), max_size=40).map(str.strip)),
    ), max_size=3).map(tuple)


@functools.cache
def json_patches() -> st.SearchStrategy:
    pointers = st.one_of(st.sampled_from(["/metadata/labels/a", "/metadata/labels", "/data/x", "/spec/replicas", "/spec/containers/0/image",
                                          "/spec/containers/-", "/metadata/name", "/metadata/resourceVersion", "", "/", "a", "/x/~2",
                                          "/spec/containers/99", "/spec/containers/-1", "/metadata/finalizers/0", "/kind", "/~1/~0"]), _text())
    op = st.fixed_dictionaries({"op": st.sampled_from(["add", "remove", "replace", "move", "copy", "test", "x", ""]), "path": pointers},
                               optional={"value": json_values(), "from": pointers})
    return st.one_of(st.lists(op, max_size=4), json_values())


@functools.cache
def strategic_patches() -> st.SearchStrategy:
    directive = st.sampled_from([{"$patch": "delete"}, {"$patch": "replace"}, {"$patch": "x"}, {"$retainKeys": ["a"]},
                                 {"$setElementOrder/containers": [{"name": "a"}]}, {"$deleteFromPrimitiveList/finalizers": ["x"]},
                                 {"spec": {"containers": [{"name": "a", "$patch": "delete"}]}},
                                 {"spec": {"containers": [{"$patch": "replace"}]}}, {"metadata": {"$patch": "delete"}},
                                 {"spec": {"$setElementOrder/containers": "x"}}])
    return st.one_of(directive, st.dictionaries(_text(8), json_values(), max_size=3),
                     st.builds(lambda a, b: {**a, **b}, directive, st.fixed_dictionaries({}, optional={
                         "metadata": st.fixed_dictionaries({}, optional={"labels": label_maps()}), "data": json_values(),
                         "spec": json_values()})))


@functools.cache
def malformed_bodies() -> st.SearchStrategy[tuple[str, bytes]]:
    """(class, body) of bytes no parser should choke on."""
    depth = st.sampled_from([64, 1000, 10_000, 100_000])
    return st.one_of(
        st.tuples(st.just("deep-json-list"), depth.map(lambda n: b"[" * n + b"]" * n)),
        st.tuples(st.just("deep-json-object"), depth.map(lambda n: b'{"a":' * n + b"1" + b"}" * n)),
        st.tuples(st.just("deep-manifest"), depth.map(lambda n: b'{"metadata":{"name":"a"},"data":{"x":' + b'{"a":' * n + b"1" + b"}" * n + b"}}")),
        st.tuples(st.just("huge-string"), st.sampled_from([1, 2, 5]).map(
            lambda mib: b'{"metadata":{"name":"a"},"data":{"x":"' + b"x" * (mib * 1024 * 1024) + b'"}}')),
        st.tuples(st.just("huge-name"), st.just(b'{"metadata":{"name":"' + b"a" * 100_000 + b'"}}')),
        st.tuples(st.just("nul"), st.sampled_from([b'{"metadata":{"name":"a\\u0000b"}}', b'{"metadata":{"name":"a\x00b"}}',
                                                  b"\x00" * 100, b'{"data":{"\\u0000":"\\u0000"},"metadata":{"name":"a"}}'])),
        st.tuples(st.just("bad-utf8"), st.sampled_from([b'{"metadata":{"name":"\xff\xfe"}}', b"\xef\xbb\xbf{}", b'{"a":"\\ud800"}',
                                                       b'{"metadata":{"name":"a","labels":{"\\udfff":"x"}}}'])),
        st.tuples(st.just("numbers"), st.sampled_from([b'{"spec":{"replicas":1e999}}', b'{"spec":{"replicas":' + b"9" * 5000 + b"}}",
                                                      b'{"spec":{"replicas":-0.0}}', b"NaN", b'{"a":Infinity}', b"1" * 10000])),
        st.tuples(st.just("json-syntax"), st.sampled_from([b"", b"{", b"}", b"[]", b"null", b"true", b'"x"', b"{'a':1}", b'{"a":1,}',
                                                          b'{"metadata":{"name":"a"}}{"x":1}', b'{"a":1,"a":2}'])),
        st.tuples(st.just("yaml-bomb"), st.just(b"a: &a [x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\n"
                                                b"c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\n"
                                                b"e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\nf: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\n"
                                                b"g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]\nh: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]\n"
                                                b"metadata: {name: a}\n")),
        st.tuples(st.just("yaml-odd"), st.sampled_from([b"!!python/object/apply:os.system ['true']", b"- a\n- b", b"a: !!binary x",
                                                       b"metadata: {name: [1]}", b"%YAML 9.9\n---\na: 1", b"? [a]\n: 1", b":"])),
        st.tuples(st.just("random-bytes"), st.binary(max_size=300)),
    )


def _body(obj) -> bytes:
    return json.dumps(obj, ensure_ascii=False).encode("utf-8", "surrogatepass")


def writes(resource: Resource) -> st.SearchStrategy[FuzzRequest]:
    """create, update, patch and delete of ``resource`` with plausible and broken bodies."""
    item = st.builds(lambda name: f"{resource.collection()}/{name}", st.sampled_from(NAMES))
    create = st.builds(lambda p, q, h, m: FuzzRequest("create", "POST", p, q, (("Content-Type", "application/json"), *h), _body(m)),
                       st.just(resource.collection()), query_params(), headers(), manifests(resource))
    update = st.builds(lambda p, q, h, m: FuzzRequest("update", "PUT", p, q, (("Content-Type", "application/json"), *h), _body(m)),
                       item, query_params(), headers(), manifests(resource))
    patch = st.one_of(
        st.builds(lambda p, q, b: FuzzRequest("json-patch", "PATCH", p, q, (("Content-Type", PATCH_TYPES[0]),), _body(b)), item, query_params(), json_patches()),
        st.builds(lambda p, q, b: FuzzRequest("merge-patch", "PATCH", p, q, (("Content-Type", PATCH_TYPES[1]),), _body(b)), item, query_params(),
                  st.one_of(manifests(resource), json_values())),
        st.builds(lambda p, q, b: FuzzRequest("strategic-merge-patch", "PATCH", p, q, (("Content-Type", PATCH_TYPES[2]),), _body(b)), item,
                  query_params(), strategic_patches()),
        st.builds(lambda p, q, t, b: FuzzRequest("apply-or-odd-patch", "PATCH", p, q, (("Content-Type", t),), _body(b)), item, query_params(),
                  st.sampled_from(PATCH_TYPES[3:]), st.one_of(manifests(resource), json_values())))
    delete = st.builds(lambda p, q, b: FuzzRequest("delete", "DELETE", p, q, (("Content-Type", "application/json"),), b), st.one_of(item, paths_for(resource)),
                       query_params(), st.one_of(st.none(), st.builds(_body, st.fixed_dictionaries({}, optional={
                           "kind": st.just("DeleteOptions"), "apiVersion": st.just("v1"), "propagationPolicy": st.sampled_from(["Orphan", "x"]),
                           "gracePeriodSeconds": json_values(), "preconditions": json_values(), "dryRun": json_values()}))))
    return st.one_of(create, create, update, patch, patch, delete)


def broken(resource: Resource) -> st.SearchStrategy[FuzzRequest]:
    """Malformed bodies under any content type, to create, update or patch."""
    return st.builds(lambda m, p, ct, body: FuzzRequest(body[0], m, p, (), (("Content-Type", ct),), body[1]),
                     st.sampled_from(["POST", "PUT", "PATCH"]), st.one_of(st.just(resource.collection()), paths_for(resource)),
                     st.sampled_from(CONTENT_TYPES + PATCH_TYPES), malformed_bodies())


def reads(resource: Resource) -> st.SearchStrategy[FuzzRequest]:
    """get, list and watch with any query string and Accept."""
    return st.builds(lambda p, q, h: FuzzRequest("read" if not any(k == "watch" for k, _ in q) else "watch", "GET", p, q, h),
                     paths_for(resource), query_params(), headers())


def odd_paths() -> st.SearchStrategy[FuzzRequest]:
    """Paths and methods no route expects."""
    segment = st.one_of(st.sampled_from(["api", "apis", "v1", "namespaces", NAMESPACE, "pods", "watch", "..", "%00", "%2e%2e",
                                         "openapi", "version", "healthz", "proxy", "x" * 2000, "%ff", "~"]), _text().map(_quote))
    return st.builds(lambda m, segs, q: FuzzRequest("odd-path", m, "/" + "/".join(segs), q),
                     st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD", "TRACE"]),
                     st.lists(segment, max_size=7), query_params())


def leaf_paths(obj, prefix: tuple = ()) -> list[tuple]:
    """Every path into ``obj`` (dict keys and list indexes), the root excluded."""
    paths = []
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) else ()
    for key, value in items:
        paths.append(prefix + (key,))
        paths += leaf_paths(value, prefix + (key,))
    return paths


def mutate(obj: dict, path: tuple, value, insert: Optional[str]) -> dict:
    """A copy of ``obj`` with the value at ``path`` replaced by ``value`` (or, with ``insert``,
    a new key ``insert`` added in the dict there)."""
    copy = json.loads(json.dumps(obj))
    parent = copy
    for key in path[:-1]:
        parent = parent[key]
    if insert is not None and isinstance(parent[path[-1]], dict):
        parent[path[-1]][insert] = value
    else:
        parent[path[-1]] = value
    return copy


def odd_values() -> st.SearchStrategy:
    """Values that stress a field: wrong types, extremes, unicode, NULs, long strings."""
    return st.one_of(json_values(), quantities(), st.sampled_from(
        [None, "", " ", "\x00", "a\x00b", "é" * 300, "x" * 70_000, -1, 0, 2 ** 31, 2 ** 63, -2 ** 63, 1.5, 1e308, True, [], {},
         [None], {"": None}, "2020-13-45T99:99:99Z", "../../etc", "${x}", "{{x}}", "\u202e", "0x1F", "+1", "1_000"]))


def mutants(resource: Resource) -> st.SearchStrategy[FuzzRequest]:
    """A valid object of the kind with one or two fields changed to odd values: the requests
    that reach the deep checks (validation, defaulting, admission, allocators, storage)."""
    def build(method, name, picks, query):
        obj = seed_object(resource, name)
        if method == "POST":     # a new object each time: not an AlreadyExists before any check
            obj["metadata"]["generateName"] = obj["metadata"].pop("name") + "-"
        for index, value, insert in picks:
            paths = leaf_paths(obj)
            obj = mutate(obj, paths[index % len(paths)], value, insert)
        path = resource.collection() + ("" if method == "POST" else f"/{_quote(seed_object(resource, name)['metadata']['name'])}")
        return FuzzRequest("mutant-" + method.lower(), method, path, query, (("Content-Type", "application/json"),), _body(obj))
    pick = st.tuples(st.integers(0, 10_000), odd_values(), st.one_of(st.none(), st.none(), _text(12)))
    return st.builds(build, st.sampled_from(["POST", "POST", "PUT"]), st.sampled_from(NAMES),
                     st.lists(pick, min_size=1, max_size=2),
                     st.one_of(st.just(()), st.just(()), query_params()))


def watches(resource: Resource) -> st.SearchStrategy[FuzzRequest]:
    """watch=true on a collection or an item, with any other parameters."""
    return st.builds(lambda p, q, h: FuzzRequest("watch", "GET", p, (("watch", "true"), *q), h),
                     paths_for(resource), query_params(), headers())


@functools.cache
def request_classes() -> tuple:
    """The classes of request a run draws from (each as likely): writes (create, update,
    patches, delete) four times, mutants of valid objects four times, reads three times,
    broken bodies twice, watches and odd paths once in every fifteen."""
    def over_resources(make):
        return st.one_of(*[make(resource) for resource in RESOURCES])
    write, read, broken_body = over_resources(writes), over_resources(reads), over_resources(broken)
    mutant = over_resources(mutants)
    return (write, read, mutant, broken_body, write, over_resources(watches), mutant, write, broken_body, read, mutant,
            write, odd_paths(), mutant, read)


# ---------------------------------------------------------------- raw bytes on the socket

RAW_REQUESTS = (
    b"GET /api/v1/namespaces HTTP/1.1\r\nHost: x\r\nX-Nul: a\x00b\r\n\r\n",
    b"GET /api/v1/namespaces\x00 HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /api/v1/namespaces/fuzz/configmaps?labelSelector=a%00b HTTP/1.1\r\nHost: x\r\n\r\n",
    b"POST /api/v1/namespaces/fuzz/configmaps HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 99999\r\n\r\n{}",
    b"POST /api/v1/namespaces/fuzz/configmaps HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
    b"POST /api/v1/namespaces/fuzz/configmaps HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"GET / HTTP/9.9\r\n\r\n", b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03", b"GARBAGE\r\n\r\n",
    b"GET /api/v1/" + b"a" * 100_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /api HTTP/1.1\r\nHost: x\r\n" + b"X-Big: " + b"y" * 200_000 + b"\r\n\r\n",
    b"GET /api HTTP/1.1\r\nHost: x\r\nAccept: \xff\xfe\r\n\r\n",
    b"POST /api/v1/namespaces/fuzz/configmaps HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\xc3\xa9\r\nContent-Length: 2\r\n\r\n{}",
)


def raw_exchange(port: int, data: bytes, timeout: float = REQUEST_TIMEOUT) -> Optional[int]:
    """Send ``data`` and half-close; the status code answered, or None when the server closed
    without one. Raises TimeoutError when it neither answers nor closes within ``timeout``."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        with contextlib.suppress(OSError):
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        try:
            first = sock.recv(64)
        except ConnectionResetError:
            return None
        except socket.timeout:
            raise TimeoutError("no answer") from None
    parts = first.split(b" ", 2)
    return int(parts[1]) if first.startswith(b"HTTP/") and len(parts) > 1 and parts[1].isdigit() else None


# ---------------------------------------------------------------- the target and its properties

@dataclass
class Findings:
    """What a run saw: counts per class, and each broken property with its request."""

    sent: int = 0
    by_label: Counter = field(default_factory=Counter)
    by_code: Counter = field(default_factory=Counter)
    problems: list = field(default_factory=list)
    slowest: float = 0.0
    timing: Counter = field(default_factory=Counter)    # seconds per class; "stored": etcd listings

    def problem(self, what: str, request: FuzzRequest, detail: str = "") -> None:
        self.problems.append(f"{what}: {request.describe()} -> {detail[:500]}")


class Target:
    """A real etcd and a real apiserver process (``python -m pkube.apiserver``) in ``workdir``."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.etcd = EtcdProcess(workdir / "etcd", log_path=workdir / "etcd.log")
        self.port = free_port()
        self.proc: Optional[subprocess.Popen] = None
        self.etcd_client: Optional[httpx.Client] = None
        self.url = f"http://127.0.0.1:{self.port}"

    def start(self) -> "Target":
        self.etcd.start()
        self.etcd_client = httpx.Client(base_url=self.etcd.endpoint, timeout=10)
        with open(self.workdir / "apiserver.log", "wb") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "pkube.apiserver", "--etcd-servers", self.etcd.endpoint,
                                          "--port", str(self.port), "--log-level", "warning"], cwd=REPO, stdout=log,
                                         stderr=subprocess.STDOUT, env={**os.environ, "PYTHONPATH": str(REPO)})
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"apiserver exited with {self.proc.returncode}: {self.log_tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url + "/readyz", timeout=1).status_code == 200:
                    return self
            time.sleep(0.1)
        raise RuntimeError("apiserver not ready within 60 s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.etcd.stop()
        if self.etcd_client is not None:
            self.etcd_client.close()

    def log_tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join((self.workdir / "apiserver.log").read_text(errors="replace").splitlines()[-lines:])
        return ""

    def rss(self) -> int:
        """The apiserver's resident memory, bytes."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stored(self) -> dict[bytes, str]:
        """Every etcd key and its mod_revision but the apiserver's own renewals (etcd's JSON gateway)."""
        everything = base64.b64encode(b"\0").decode()
        doc = self.etcd_client.post("/v3/kv/range", json={"key": everything, "range_end": everything,
                                                           "keys_only": True}).json()
        keys = {base64.b64decode(kv["key"]): kv["mod_revision"] for kv in doc.get("kvs", [])}
        return {k: v for k, v in keys.items() if not k.decode(errors="replace").startswith(BACKGROUND_KEYS)}

    def seed(self, client: httpx.Client) -> None:
        """The fuzz namespace and an object named a, b and c of each kind there (409s ignored)."""
        client.post("/api/v1/namespaces", json={"metadata": {"name": NAMESPACE}})
        for resource in RESOURCES:
            for name in NAMES:
                client.post(resource.collection(), json=seed_object(resource, name))


def seed_object(resource: Resource, name: str) -> dict:
    """A valid object of the kind, for updates and patches to find."""
    labels = {"app": "web"}
    template = {"metadata": {"labels": labels}, "spec": {"containers": [{"name": "a", "image": "busybox"}]}}
    spec = {
        "Pod": {"spec": template["spec"]},
        "Service": {"spec": {"selector": labels, "ports": [{"port": 80}]}},
        "ConfigMap": {"data": {"x": "1"}}, "Secret": {"stringData": {"x": "1"}},
        "Deployment": {"spec": {"selector": {"matchLabels": labels}, "template": template}},
        "ReplicaSet": {"spec": {"selector": {"matchLabels": labels}, "template": template}},
        "DaemonSet": {"spec": {"selector": {"matchLabels": labels}, "template": template}},
        "StatefulSet": {"spec": {"selector": {"matchLabels": labels}, "template": template, "serviceName": "a"}},
        "ReplicationController": {"spec": {"selector": labels, "template": template}},
        "Job": {"spec": {"template": {**template, "spec": {**template["spec"], "restartPolicy": "Never"}}}},
        "CronJob": {"spec": {"schedule": "@hourly", "jobTemplate": {"spec": {"template": {
            **template, "spec": {**template["spec"], "restartPolicy": "Never"}}}}}},
        "Lease": {"spec": {"holderIdentity": "x"}},
        "PodDisruptionBudget": {"spec": {"minAvailable": 1, "selector": {"matchLabels": labels}}},
        "Ingress": {"spec": {"rules": [{"host": "a.example.com", "http": {"paths": [
            {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "a", "port": {"number": 80}}}}]}}]}},
        "NetworkPolicy": {"spec": {"podSelector": {"matchLabels": labels}, "ingress": [{"ports": [{"port": 80}]}]}},
        "PersistentVolumeClaim": {"spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}},
        "Event": {"involvedObject": {"kind": "Pod", "name": "a", "namespace": NAMESPACE}, "reason": "X", "message": "x"},
        "HorizontalPodAutoscaler": {"spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "a"},
                                             "maxReplicas": 2}},
    }.get(resource.kind, {})
    md = {"name": f"fz-{name}" if resource.kind == "Namespace" else name, "labels": labels}
    return {"apiVersion": resource.group_version, "kind": resource.kind, "metadata": md, **spec}


def kubernetes_timeout(code: int, text: str) -> bool:
    """The one 5xx Kubernetes answers by design to a client's input: a read at a
    resourceVersion newer than the store's, after waiting for it (504, reason Timeout,
    'Too large resource version')."""
    return code == 504 and '"reason":"Timeout"' in text.replace(" ", "") and "Too large resource version" in text


class Fuzzer:
    """Sends requests to a Target one at a time and checks the properties after each."""

    def __init__(self, target: Target, findings: Optional[Findings] = None):
        self.target = target
        self.findings = findings or Findings()
        self.client = httpx.Client(base_url=target.url, timeout=REQUEST_TIMEOUT)

    def close(self) -> None:
        self.client.close()

    def send(self, request: FuzzRequest) -> Optional[int]:
        """Send ``request``, record what it broke; its status code (None: no answer)."""
        found = self.findings
        found.sent += 1
        found.by_label[request.label] += 1
        check_stored = request.method in WRITE_METHODS
        t0 = time.monotonic()
        before = self.target.stored() if check_stored else None
        began = time.monotonic()
        found.timing["stored"] += began - t0
        try:
            code, text = self._exchange(request)
        except httpx.TimeoutException:
            found.problem("hang", request, f"no answer within {REQUEST_TIMEOUT}s")
            return None
        except httpx.HTTPError as err:
            code, text = None, repr(err)
        elapsed = time.monotonic() - began
        found.timing[request.label] += elapsed
        found.slowest = max(found.slowest, elapsed)
        found.by_code[code] += 1
        if code is None or (code >= 500 and not kubernetes_timeout(code, text)):
            found.problem("5xx" if code else "no-answer", request, f"{code} {text}")
        if not self.target.alive():
            found.problem("crash", request, self.target.log_tail())
            raise RuntimeError("the apiserver died")
        if check_stored and (code is None or code >= 400 or request.dry_run):
            after = self.target.stored()
            if after != before:
                changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
                found.problem("stored-by-rejected" if code is None or code >= 400 else "stored-by-dry-run", request,
                              f"{code} {text[:200]} changed {changed[:5]}")
        return code

    def _exchange(self, request: FuzzRequest) -> tuple[Optional[int], str]:
        """The status and (the start of) the body. A GET answered 200 is closed once its headers
        came: it may be a watch (``watch=`` with any value but 0 or false is one, as in
        Kubernetes), whose body never ends."""
        with self.client.stream(request.method, request.path, params=list(request.params), headers=list(request.headers),
                                content=request.body) as response:
            if request.method == "GET" and response.status_code == 200:
                return 200, ""
            return response.status_code, response.read()[:2000].decode(errors="replace")

    def send_raw(self, data: bytes) -> None:
        """One of RAW_REQUESTS: an answer below 500, or the connection closed, in time."""
        request = FuzzRequest("raw-bytes", "RAW", repr(data[:80]))
        self.findings.sent += 1
        self.findings.by_label["raw-bytes"] += 1
        try:
            code = raw_exchange(self.target.port, data)
        except (TimeoutError, OSError) as err:
            self.findings.problem("hang", request, repr(err))
            return
        self.findings.by_code[code] += 1
        if code is not None and code >= 500:
            self.findings.problem("5xx", request, str(code))
