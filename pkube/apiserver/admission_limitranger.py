"""kube-apiserver's ``LimitRanger`` admission plugin (plugin/pkg/admission/limitranger):

- ``mutate``, on Pod CREATE: each container and init container gets its namespace's
  Container-type defaults (``default`` → limits, ``defaultRequest`` → requests) for the
  resources it does not set, and the pod the ``kubernetes.io/limit-ranger`` annotation naming
  them. A limit the user set is its request first, as the pod's API defaults do upstream
  before admission runs.
- ``validate``, on Pod CREATE and PersistentVolumeClaim CREATE and UPDATE: min, max and
  maxLimitRequestRatio of the Container and Pod types, and the storage request of a claim
  against the PersistentVolumeClaim type; the first LimitRange refused answers 403 Forbidden
  with upstream's messages (several in brackets).

The namespaces' LimitRanges come from a watch of the store (``WatchedObjects``).
"""

from __future__ import annotations

from typing import Optional

from pkube.api.defaults import default_requests_from_limits
from pkube.api.quantity import QuantityError, milli_value
from pkube.api.validation_limitrange import CLAIM, CONTAINER, POD
from pkube.apiserver import errors
from pkube.apiserver.admission import CREATE, UPDATE, AdmissionRequest
from pkube.apiserver.admission_storage import WatchedObjects

LIMITRANGE_PREFIX = "/registry/limitranges/"
ANNOTATION = "kubernetes.io/limit-ranger"
CONTAINER_FIELDS = (("containers", "container"), ("initContainers", "init container"))


def _dict(value) -> dict:
    return value if isinstance(value, dict) else {}


def _containers(pod: dict):
    """(container, what upstream calls it in the annotation) for each container and init container."""
    spec = _dict(pod.get("spec"))
    for field, word in CONTAINER_FIELDS:
        for container in spec.get(field) or []:
            if isinstance(container, dict):
                yield container, word


def container_defaults(limit_range: dict) -> tuple[dict, dict]:
    """(limits, requests) a container without them gets from ``limit_range``'s Container items."""
    limits, requests = {}, {}
    for item in _dict(limit_range.get("spec")).get("limits") or []:
        if isinstance(item, dict) and item.get("type") == CONTAINER:
            requests.update(_dict(item.get("defaultRequest")))
            limits.update(_dict(item.get("default")))
    return limits, requests


def merge_defaults(pod: dict, limits: dict, requests: dict) -> None:
    """mergePodResourceRequirements: fill each container's missing limits and requests and
    annotate the pod with what was set."""
    notes = []
    for container, word in _containers(pod):
        resources = container.setdefault("resources", {})
        if not isinstance(resources, dict):
            continue
        default_requests_from_limits(resources)
        for section, defaults, noun in (("requests", requests, "request"), ("limits", limits, "limit")):
            have = resources.setdefault(section, {})
            if not isinstance(have, dict):
                continue
            added = sorted(name for name in defaults if name not in have)
            have.update({name: defaults[name] for name in added})
            if added:
                notes.append(f"{', '.join(added)} {noun} for {word} {container.get('name', '')}")
            if not have:
                del resources[section]
    if notes:
        metadata = pod.setdefault("metadata", {})
        metadata.setdefault("annotations", {})[ANNOTATION] = "LimitRanger plugin set: " + "; ".join(notes)


def _milli(text) -> Optional[int]:
    """The quantity's MilliValue (upstream compares those); None if unparsable."""
    try:
        return milli_value(text)
    except QuantityError:
        return None


def min_violation(kind: str, name: str, enforced, requests: dict, limits: dict) -> Optional[str]:
    if name not in requests:
        return f"minimum {name} usage per {kind} is {enforced}.  No request is specified"
    if _lt(requests[name], enforced):
        return f"minimum {name} usage per {kind} is {enforced}, but request is {requests[name]}"
    if name in limits and _lt(limits[name], enforced):
        return f"minimum {name} usage per {kind} is {enforced}, but limit is {limits[name]}"
    return None


def max_violation(kind: str, name: str, enforced, requests: dict, limits: dict) -> Optional[str]:
    if name not in limits:
        return f"maximum {name} usage per {kind} is {enforced}.  No limit is specified"
    if _lt(enforced, limits[name]):
        return f"maximum {name} usage per {kind} is {enforced}, but limit is {limits[name]}"
    if name in requests and _lt(enforced, requests[name]):
        return f"maximum {name} usage per {kind} is {enforced}, but request is {requests[name]}"
    return None


def max_request_violation(kind: str, name: str, enforced, requests: dict) -> Optional[str]:
    """maxRequestConstraint: a claim's request against the max (a claim has no limit)."""
    if name not in requests:
        return f"maximum {name} usage per {kind} is {enforced}.  No request is specified"
    if _lt(enforced, requests[name]):
        return f"maximum {name} usage per {kind} is {enforced}, but request is {requests[name]}"
    return None


def ratio_violation(kind: str, name: str, enforced, requests: dict, limits: dict) -> Optional[str]:
    request, limit = _milli(requests.get(name, 0)) or 0, _milli(limits.get(name, 0)) or 0
    if request == 0:
        return f"{name} max limit to request ratio per {kind} is {enforced}, but no request is specified or request is 0"
    if limit == 0:
        return f"{name} max limit to request ratio per {kind} is {enforced}, but no limit is specified or limit is 0"
    ratio = limit / request
    if ratio * 1000 > (_milli(enforced) or 0):
        return f"{name} max limit to request ratio per {kind} is {enforced}, but provided ratio is {ratio:f}"
    return None


def _lt(a, b) -> bool:
    """a < b, both quantities; an unparsable one (refused by validation) compares as not less."""
    a, b = _milli(a), _milli(b)
    return a is not None and b is not None and a < b


def _check(kind: str, item: dict, requests: dict, limits: dict) -> list[str]:
    """The min, max and ratio messages of one item against one container's or the pod's totals."""
    found = [min_violation(kind, k, v, requests, limits) for k, v in _dict(item.get("min")).items()]
    found += [max_violation(kind, k, v, requests, limits) for k, v in _dict(item.get("max")).items()]
    found += [ratio_violation(kind, k, v, requests, limits) for k, v in _dict(item.get("maxLimitRequestRatio")).items()]
    return [message for message in found if message]


def _resources(container: dict) -> tuple[dict, dict]:
    resources = _dict(container.get("resources"))
    return _dict(resources.get("requests")), _dict(resources.get("limits"))


def pod_totals(pod: dict) -> tuple[dict, dict]:
    """(requests, limits) of the pod as resourcehelper.PodRequests/PodLimits count them: the sum
    over its containers, or the largest init container's when that is more (a limit only when
    every container has one). Values in thousandths."""
    spec = _dict(pod.get("spec"))
    totals = []
    for index in (0, 1):
        apps, inits = {}, {}
        for container in spec.get("containers") or []:
            for name, text in _resources(_dict(container))[index].items():
                apps[name] = apps.get(name, 0) + (_milli(text) or 0)
        for container in spec.get("initContainers") or []:
            for name, text in _resources(_dict(container))[index].items():
                inits[name] = max(inits.get(name, 0), _milli(text) or 0)
        totals.append({name: max(apps.get(name, 0), inits.get(name, 0)) for name in {*apps, *inits}})
    return totals[0], totals[1]


def _shown(totals: dict) -> dict:
    """Totals in thousandths as quantities to compare and print (`1500m`, `2`)."""
    return {name: (f"{milli // 1000}" if milli % 1000 == 0 else f"{milli}m") for name, milli in totals.items()}


def pod_violations(limit_range: dict, pod: dict) -> list[str]:
    """PodValidateLimitFunc: the messages of every Container and Pod item the pod breaks."""
    found = []
    for item in _dict(limit_range.get("spec")).get("limits") or []:
        item = _dict(item)
        if item.get("type") == CONTAINER:
            for container, _ in _containers(pod):
                found += _check(CONTAINER, item, *_resources(container))
        elif item.get("type") == POD:
            requests, limits = pod_totals(pod)
            found += _check(POD, item, _shown(requests), _shown(limits))
    return found


def claim_violations(limit_range: dict, claim: dict) -> list[str]:
    """PersistentVolumeClaimValidateLimitFunc: min and max of the claim's requests."""
    requests = _dict(_dict(_dict(claim.get("spec")).get("resources")).get("requests"))
    found = []
    for item in _dict(limit_range.get("spec")).get("limits") or []:
        if _dict(item).get("type") == CLAIM:
            found += [min_violation(CLAIM, k, v, requests, {}) for k, v in _dict(item.get("min")).items()]
            found += [max_request_violation(CLAIM, k, v, requests) for k, v in _dict(item.get("max")).items()]
    return [message for message in found if message]


def aggregate(messages: list[str]) -> str:
    """utilerrors.NewAggregate's text: one message alone, several (without repeats) in brackets."""
    unique = list(dict.fromkeys(messages))
    return unique[0] if len(unique) == 1 else "[" + ", ".join(unique) + "]"


class LimitRanger(WatchedObjects):
    """See the module docstring. ``store`` is the apiserver's store (it feeds the cache)."""

    name, prefix = "LimitRanger", LIMITRANGE_PREFIX

    @staticmethod
    def key(obj: dict):
        return obj["metadata"].get("namespace", ""), obj["metadata"]["name"]

    def ranges(self, namespace: str) -> list[dict]:
        """The namespace's LimitRanges, by name."""
        return [self.objects[key] for key in sorted(self.objects) if key[0] == namespace]

    def _applies(self, request: AdmissionRequest) -> bool:
        if request.subresource or not isinstance(request.obj, dict):
            return False
        if request.old and _dict(request.old.get("metadata")).get("deletionTimestamp"):
            return False
        if request.kind == "Pod":
            return request.operation == CREATE
        return request.kind == "PersistentVolumeClaim" and request.operation in (CREATE, UPDATE)

    def mutate(self, request: AdmissionRequest) -> None:
        if request.kind != "Pod" or not self._applies(request):
            return
        for limit_range in self.ranges(request.target.namespace or ""):
            merge_defaults(request.obj, *container_defaults(limit_range))

    def validate(self, request: AdmissionRequest) -> None:
        """Refuse (403) what the first LimitRange that objects to it forbids."""
        if not self._applies(request):
            return
        check = pod_violations if request.kind == "Pod" else claim_violations
        for limit_range in self.ranges(request.target.namespace or ""):
            messages = check(limit_range, request.obj)
            if messages:
                name = _dict(request.obj.get("metadata")).get("name") or ""
                plural = request.target.info.plural
                subject = f'{plural} "{name}"' if name else plural
                raise errors.forbidden(f"{subject} is forbidden: {aggregate(messages)}")
