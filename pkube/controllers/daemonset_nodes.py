"""Which nodes run a DaemonSet's pod, and which node a daemon pod is for (pure).

``node_should_run`` is Kubernetes' NodeShouldRunDaemonPod: the template's
nodeName, nodeSelector and required node affinity must match the node, and
the node's NoSchedule/NoExecute taints must be tolerated by the template's
tolerations plus those Kubernetes adds to every daemon pod (not-ready and
unreachable NoExecute without tolerationSeconds; disk-, memory-, pid-pressure
and unschedulable NoSchedule; network-unavailable NoSchedule for hostNetwork
pods). A node whose untolerated taints are all NoSchedule keeps a pod it
already runs. ``EligibilityCache`` remembers the answers per node between
passes. A daemon pod names its node by a required node affinity
(``with_node_affinity``); ``target_node`` reads it back.
"""

from __future__ import annotations

import copy
from typing import Optional

from pkube.api.selectors import (DOES_NOT_EXIST, EXISTS, GREATER, IN, LESS, NOT_IN, LabelSelector, SelectorError,
                           make_requirement)
from pkube.api.tolerations import tolerated
from pkube.controllers import history

NODE_OPERATORS = {"In": IN, "NotIn": NOT_IN, "Exists": EXISTS, "DoesNotExist": DOES_NOT_EXIST,
                  "Gt": GREATER, "Lt": LESS}
NO_EXECUTE_KEYS = ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable")
NO_SCHEDULE_KEYS = ("node.kubernetes.io/disk-pressure", "node.kubernetes.io/memory-pressure",
                    "node.kubernetes.io/pid-pressure", "node.kubernetes.io/unschedulable")
NETWORK_UNAVAILABLE = "node.kubernetes.io/network-unavailable"
HARD_EFFECTS = ("NoSchedule", "NoExecute")


def daemon_tolerations(pod_spec: dict) -> list[dict]:
    """The template's tolerations plus the ones Kubernetes adds to every daemon pod."""
    tolerations = list(pod_spec.get("tolerations") or [])
    wanted = [{"key": k, "operator": "Exists", "effect": "NoExecute"} for k in NO_EXECUTE_KEYS]
    wanted += [{"key": k, "operator": "Exists", "effect": "NoSchedule"} for k in NO_SCHEDULE_KEYS]
    if pod_spec.get("hostNetwork"):
        wanted.append({"key": NETWORK_UNAVAILABLE, "operator": "Exists", "effect": "NoSchedule"})
    for toleration in wanted:
        tolerations = [t for t in tolerations if not (t.get("key") == toleration["key"]
                                                      and t.get("effect") == toleration["effect"])]
        tolerations.append(toleration)
    return tolerations


def _selector(expressions) -> LabelSelector:
    return LabelSelector([make_requirement(e.get("key", ""), NODE_OPERATORS[e.get("operator")],
                                           [str(v) for v in e.get("values") or []])
                          for e in expressions or []])


def term_matches(term: dict, node: dict) -> bool:
    """A node selector term: label expressions AND field expressions (metadata.name); empty
    matches nothing. Raises SelectorError (or KeyError on an unknown operator) on a bad term."""
    labels, fields = _selector(term.get("matchExpressions")), _selector(term.get("matchFields"))
    if labels.empty and fields.empty:
        return False
    return (labels.matches(node["metadata"].get("labels") or {})
            and fields.matches({"metadata.name": node["metadata"]["name"]}))


def fits_affinity(pod_spec: dict, node: dict) -> bool:
    """nodeSelector and the required node affinity of ``pod_spec`` match ``node``."""
    labels = node["metadata"].get("labels") or {}
    if any(labels.get(k) != v for k, v in (pod_spec.get("nodeSelector") or {}).items()):
        return False
    required = (((pod_spec.get("affinity") or {}).get("nodeAffinity") or {})
                .get("requiredDuringSchedulingIgnoredDuringExecution"))
    if required is None:
        return True
    return any(term_matches(t, node) for t in required.get("nodeSelectorTerms") or [])


def node_should_run(ds: dict, node: dict) -> tuple[bool, bool]:
    """(should run a daemon pod, should keep one it runs) — Kubernetes' NodeShouldRunDaemonPod."""
    pod_spec = history.template_of(ds).get("spec") or {}
    if pod_spec.get("nodeName") and pod_spec["nodeName"] != node["metadata"]["name"]:
        return False, False
    try:
        if not fits_affinity(pod_spec, node):
            return False, False
    except (SelectorError, KeyError):
        return False, False
    tolerations = daemon_tolerations(pod_spec)
    taints = [t for t in (node.get("spec") or {}).get("taints") or [] if t.get("effect") in HARD_EFFECTS]
    untolerated = [t for t in taints if not tolerated(tolerations, t)]
    if not untolerated:
        return True, True
    return False, not any(t.get("effect") == "NoExecute" for t in untolerated)


def target_node(pod: dict) -> Optional[str]:
    """The node a daemon pod is for: its nodeName, else the one its affinity's matchFields names."""
    spec = pod.get("spec") or {}
    if spec.get("nodeName"):
        return spec["nodeName"]
    required = (((spec.get("affinity") or {}).get("nodeAffinity") or {})
                .get("requiredDuringSchedulingIgnoredDuringExecution") or {})
    for term in required.get("nodeSelectorTerms") or []:
        for expr in term.get("matchFields") or []:
            if expr.get("key") == "metadata.name" and expr.get("operator") == "In" and \
                    len(expr.get("values") or []) == 1:
                return expr["values"][0]
    return None


def with_node_affinity(pod_spec: dict, node_name: str) -> dict:
    """``pod_spec`` (copied) with its required node affinity replaced by ``metadata.name In
    [node_name]`` (Kubernetes' ReplaceDaemonSetPodNodeNameNodeAffinity) and the daemon tolerations."""
    spec = copy.deepcopy(pod_spec)
    node_affinity = spec.setdefault("affinity", {}).setdefault("nodeAffinity", {})
    node_affinity["requiredDuringSchedulingIgnoredDuringExecution"] = {"nodeSelectorTerms": [
        {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node_name]}]}]}
    spec["tolerations"] = daemon_tolerations(spec)
    return spec


def eligibility(ds: dict, nodes: list[dict]) -> dict[str, tuple[bool, bool]]:
    """node name -> ``node_should_run(ds, node)`` for every node."""
    return {n["metadata"]["name"]: node_should_run(ds, n) for n in nodes}


def placement_fields(ds: dict) -> str:
    """What of ``ds`` ``node_should_run`` reads (its template's placement), as one comparable text."""
    spec = history.template_of(ds).get("spec") or {}
    return repr([spec.get(f) for f in ("nodeName", "nodeSelector", "affinity", "tolerations", "hostNetwork")])


class EligibilityCache:
    """``eligibility`` of each DaemonSet, remembered per node: a node's answer is computed again
    only when the node (its resourceVersion) or the set's placement fields changed."""

    def __init__(self):
        self._sets: dict[str, tuple[str, dict]] = {}       # set key -> (placement, {node: (rv, answer)})

    def runs(self, key: str, ds: dict, nodes: list[dict]) -> dict[str, tuple[bool, bool]]:
        """``eligibility(ds, nodes)`` for the set of ``key``."""
        placement = placement_fields(ds)
        known_placement, known = self._sets.get(key, ("", {}))
        if known_placement != placement:
            known = {}
        fresh = {}
        for node in nodes:
            name, rv = node["metadata"]["name"], node["metadata"].get("resourceVersion")
            hit = known.get(name)
            fresh[name] = hit if hit is not None and hit[0] == rv and rv else (rv, node_should_run(ds, node))
        self._sets[key] = (placement, fresh)
        return {name: answer for name, (_, answer) in fresh.items()}

    def forget(self, key: str) -> None:
        self._sets.pop(key, None)
