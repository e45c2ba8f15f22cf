"""Finding a pod's runtime records from the names the kubelet's API is given
(namespace, pod name, container name), through the labels the kubelet puts on them.

Sandboxes carry `io.kubernetes.pod.{uid,name,namespace}`; containers carry the same and
`io.kubernetes.container.{name,attempt}` (the restart count, a decimal string). Pods are
addressed by name, so records of an earlier pod of the same name (another uid) may still
be there: the newest sandbox decides which uid is meant.
"""

from __future__ import annotations

from pkube.kubelet.containers import (CONTAINER_ATTEMPT, CONTAINER_NAME, POD_NAME, POD_NAMESPACE, POD_UID,  # noqa: F401
                                SANDBOX_ATTEMPT)


def attempt_of(record, label: str = CONTAINER_ATTEMPT) -> int:
    """The record's attempt number (a missing or malformed label counts as 0)."""
    try:
        return int(record.labels.get(label, "0"))
    except ValueError:
        return 0


def _newest_first(records, label: str) -> list:
    """By attempt, then creation time, newest first (records with equal attempts happen
    when a kubelet lost count: the later one is the current one)."""
    return sorted(records, key=lambda r: (attempt_of(r, label), r.created), reverse=True)


def pod_sandbox(runtime, namespace: str, pod: str):
    """The newest sandbox (running or not) of pod `namespace/pod`; None when there is none.
    Blocks (reads the runtime's store)."""
    labels = {POD_NAMESPACE: namespace, POD_NAME: pod}
    sandboxes = runtime.list(all=True, labels=labels, kind="sandbox")
    return (_newest_first(sandboxes, SANDBOX_ATTEMPT) or [None])[0]


def container_instances(runtime, namespace: str, pod: str, container: str) -> list:
    """Every record of `container` in pod `namespace/pod`, newest attempt first, limited to
    the pod uid of the newest sandbox when there is one. Blocks."""
    labels = {POD_NAMESPACE: namespace, POD_NAME: pod, CONTAINER_NAME: container}
    records = runtime.list(all=True, labels=labels)
    sandbox = pod_sandbox(runtime, namespace, pod)
    if sandbox is not None:
        records = [r for r in records if r.labels.get(POD_UID) == sandbox.labels.get(POD_UID)]
    return _newest_first(records, CONTAINER_ATTEMPT)


def find_container(runtime, namespace: str, pod: str, container: str, previous: bool = False):
    """The current instance of `container` (highest attempt), or with `previous` the one
    just before it; None when there is no such instance. Blocks."""
    instances = container_instances(runtime, namespace, pod, container)
    index = 1 if previous else 0
    return instances[index] if len(instances) > index else None


def current_by_pod(records) -> dict[str, dict[str, object]]:
    """The current instance (highest attempt) of each container among `records`, by pod
    uid then container name; records without a pod uid are left out. Pure."""
    pods: dict[str, dict[str, object]] = {}
    for record in _newest_first(records, CONTAINER_ATTEMPT):
        uid = record.labels.get(POD_UID)
        if uid is not None:
            pods.setdefault(uid, {}).setdefault(record.labels.get(CONTAINER_NAME, record.name), record)
    return pods


def pod_containers(runtime, uid: str, running_only: bool = True) -> dict[str, object]:
    """The current instance of each container of the pod with `uid`, by container name
    (running ones only unless `running_only` is False). Blocks."""
    return current_by_pod(runtime.list(all=not running_only, labels={POD_UID: uid})).get(uid, {})
