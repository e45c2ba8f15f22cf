"""Defaults the Kubernetes apiserver fills in on create and update (pkg/apis/*/v1/defaults.go),
plus the default tolerations of the DefaultTolerationSeconds admission plugin for Pods.

`apply_defaults(obj)` is called by the apiserver on every create and update, after decoding
and before validation. It only fills what is missing: a value the client set is never changed
(except Secret.stringData, which is folded into data as Kubernetes does). It never allocates
cluster resources (clusterIP, nodePort): the apiserver does that.
"""

from __future__ import annotations

import base64

from pkube.api import autoscaling
from pkube.api import crd as crds
from pkube.api import defaults_batch
from pkube.api import validation_apps, validation_limitrange, validation_networking, validation_storage

DEFAULT_TOLERATION_SECONDS = 300
NOT_READY_TAINT = "node.kubernetes.io/not-ready"
UNREACHABLE_TAINT = "node.kubernetes.io/unreachable"
DEFAULT_SECRET_MODE = 0o644  # 420


def apply_defaults(obj: dict) -> dict:
    """Fill the defaults of `obj` in place (by its kind) and return it; unknown kinds untouched.

    Never raises: on a malformed object (a field of the wrong JSON type) defaulting stops where
    the shape is wrong, and validation, which runs next, reports the field.
    """
    if not isinstance(obj, dict):
        return obj
    kind = obj.get("kind")
    handler = _BY_KIND.get(kind) if isinstance(kind, str) else None
    if handler is not None:
        try:
            handler(obj)
        except (AttributeError, TypeError):
            pass  # malformed input: validation names the offending field
    return obj


def image_pull_policy(image: str) -> str:
    """Always for `:latest` or an untagged image without digest, IfNotPresent otherwise."""
    if "@" in image:
        return "IfNotPresent"
    last_component = image.rsplit("/", 1)[-1]
    if ":" not in last_component:
        return "Always"
    return "Always" if last_component.rsplit(":", 1)[1] == "latest" else "IfNotPresent"


# --- pods --------------------------------------------------------------------------------------

def _default_pod(pod: dict) -> None:
    spec = pod.setdefault("spec", {})
    default_pod_spec(spec)
    spec.setdefault("priority", 0)
    spec.setdefault("preemptionPolicy", "PreemptLowerPriority")
    spec.setdefault("serviceAccountName", spec.get("serviceAccount") or "default")
    spec.setdefault("serviceAccount", spec["serviceAccountName"])
    _add_default_tolerations(spec)


def default_pod_spec(spec: dict) -> None:
    """Defaults of a PodSpec, shared by Pods and the pod templates of workloads."""
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("securityContext", {})
    spec.setdefault("enableServiceLinks", True)
    host_network = bool(spec.get("hostNetwork"))
    for field in ("initContainers", "containers", "ephemeralContainers"):
        for container in spec.get(field) or []:
            if isinstance(container, dict):
                _default_container(container, host_network)
    for volume in spec.get("volumes") or []:
        if isinstance(volume, dict):
            _default_volume(volume)


def default_requests_from_limits(resources) -> None:
    """A container's request of each resource it has a limit for and no request is the limit."""
    if isinstance(resources, dict) and isinstance(resources.get("limits"), dict):
        requests = resources.setdefault("requests", {})
        if isinstance(requests, dict):
            for name, quantity in resources["limits"].items():
                requests.setdefault(name, quantity)


def _default_container(container: dict, host_network: bool) -> None:
    if isinstance(container.get("image"), str):
        container.setdefault("imagePullPolicy", image_pull_policy(container["image"]))
    container.setdefault("terminationMessagePath", "/dev/termination-log")
    container.setdefault("terminationMessagePolicy", "File")
    default_requests_from_limits(container.setdefault("resources", {}))
    for port in container.get("ports") or []:
        if isinstance(port, dict):
            port.setdefault("protocol", "TCP")
            if host_network and "containerPort" in port:
                port.setdefault("hostPort", port["containerPort"])
    for probe_field in ("livenessProbe", "readinessProbe", "startupProbe"):
        if isinstance(container.get(probe_field), dict):
            _default_probe(container[probe_field])
    for env in container.get("env") or []:
        field_ref = (env.get("valueFrom") or {}).get("fieldRef") if isinstance(env, dict) else None
        if isinstance(field_ref, dict):
            field_ref.setdefault("apiVersion", "v1")


def _default_probe(probe: dict) -> None:
    probe.setdefault("timeoutSeconds", 1)
    probe.setdefault("periodSeconds", 10)
    probe.setdefault("successThreshold", 1)
    probe.setdefault("failureThreshold", 3)
    if isinstance(probe.get("httpGet"), dict):
        probe["httpGet"].setdefault("path", "/")
        probe["httpGet"].setdefault("scheme", "HTTP")


_VOLUME_SOURCES = (
    "hostPath", "emptyDir", "secret", "configMap", "persistentVolumeClaim", "projected",
    "downwardAPI", "nfs", "csi", "ephemeral", "image",
)


def _default_volume(volume: dict) -> None:
    if not any(source in volume for source in _VOLUME_SOURCES):
        volume["emptyDir"] = {}
    for source in ("secret", "configMap", "downwardAPI", "projected"):
        if isinstance(volume.get(source), dict):
            volume[source].setdefault("defaultMode", DEFAULT_SECRET_MODE)
    if isinstance(volume.get("hostPath"), dict):
        volume["hostPath"].setdefault("type", "")


def _add_default_tolerations(spec: dict) -> None:
    """The DefaultTolerationSeconds admission: tolerate not-ready/unreachable for 300 s."""
    tolerations = spec.get("tolerations") or []
    for key in (NOT_READY_TAINT, UNREACHABLE_TAINT):
        if not any(_tolerates_no_execute(t, key) for t in tolerations if isinstance(t, dict)):
            tolerations.append({
                "key": key, "operator": "Exists", "effect": "NoExecute",
                "tolerationSeconds": DEFAULT_TOLERATION_SECONDS,
            })
    spec["tolerations"] = tolerations


def _tolerates_no_execute(toleration: dict, key: str) -> bool:
    if toleration.get("effect") not in (None, "", "NoExecute"):
        return False
    return toleration.get("key") in (key, None, "")


def _default_template(workload: dict) -> None:
    template = workload.setdefault("spec", {}).setdefault("template", {})
    if isinstance(template, dict):
        default_pod_spec(template.setdefault("spec", {}))


# --- workloads ---------------------------------------------------------------------------------

def _default_deployment(deployment: dict) -> None:
    spec = deployment.setdefault("spec", {})
    spec.setdefault("replicas", 1)
    strategy = spec.setdefault("strategy", {})
    strategy.setdefault("type", "RollingUpdate")
    if strategy["type"] == "RollingUpdate":
        rolling = strategy.setdefault("rollingUpdate", {})
        rolling.setdefault("maxUnavailable", "25%")
        rolling.setdefault("maxSurge", "25%")
    spec.setdefault("revisionHistoryLimit", 10)
    spec.setdefault("progressDeadlineSeconds", 600)
    _default_template(deployment)


def _default_replica_set(replica_set: dict) -> None:
    replica_set.setdefault("spec", {}).setdefault("replicas", 1)
    _default_template(replica_set)


# --- services and endpoints --------------------------------------------------------------------

def _default_service(service: dict) -> None:
    spec = service.setdefault("spec", {})
    spec.setdefault("type", "ClusterIP")
    spec.setdefault("sessionAffinity", "None")
    for port in spec.get("ports") or []:
        if isinstance(port, dict):
            port.setdefault("protocol", "TCP")
            if "port" in port:
                port.setdefault("targetPort", port["port"])
    if spec["type"] == "ExternalName":
        return
    spec.setdefault("internalTrafficPolicy", "Cluster")
    if spec["type"] in ("NodePort", "LoadBalancer"):
        spec.setdefault("externalTrafficPolicy", "Cluster")
    if spec["type"] == "LoadBalancer":
        spec.setdefault("allocateLoadBalancerNodePorts", True)
    spec.setdefault("ipFamilies", ["IPv4"])
    spec.setdefault("ipFamilyPolicy", "SingleStack")


def _default_endpoints(endpoints: dict) -> None:
    for subset in endpoints.get("subsets") or []:
        for port in (subset.get("ports") or []) if isinstance(subset, dict) else []:
            if isinstance(port, dict):
                port.setdefault("protocol", "TCP")


def _default_endpoint_slice(slice_: dict) -> None:
    for port in slice_.get("ports") or []:
        if isinstance(port, dict):
            port.setdefault("protocol", "TCP")


# --- config and namespaces ---------------------------------------------------------------------

def _default_secret(secret: dict) -> None:
    secret.setdefault("type", "Opaque")
    string_data = secret.pop("stringData", None)
    if isinstance(string_data, dict) and string_data:
        data = secret.get("data") or {}
        for key, value in string_data.items():
            data[key] = base64.b64encode(str(value).encode()).decode()
        secret["data"] = data


def _default_namespace(namespace: dict) -> None:
    spec = namespace.setdefault("spec", {})
    spec.setdefault("finalizers", ["kubernetes"])
    namespace.setdefault("status", {}).setdefault("phase", "Active")


def _default_nothing(obj: dict) -> None:
    return None


_BY_KIND = {
    "Pod": _default_pod,
    "Deployment": _default_deployment,
    "ReplicaSet": _default_replica_set,
    "DaemonSet": lambda obj: validation_apps.default_daemon_set(obj, _default_template),
    "StatefulSet": lambda obj: validation_apps.default_stateful_set(obj, _default_template),
    "Service": _default_service,
    "Endpoints": _default_endpoints,
    "EndpointSlice": _default_endpoint_slice,
    "Secret": _default_secret,
    "ConfigMap": _default_nothing,
    "Namespace": _default_namespace,
    "HorizontalPodAutoscaler": autoscaling.default_horizontal_pod_autoscaler,
    "PersistentVolume": validation_storage.default_persistent_volume,
    "PersistentVolumeClaim": validation_storage.default_persistent_volume_claim,
    "StorageClass": validation_storage.default_storage_class,
    "LimitRange": validation_limitrange.default_limit_range,
    "NetworkPolicy": validation_networking.default_network_policy,
    "IngressClass": validation_networking.default_ingress_class,
    "Job": defaults_batch.default_job,
    "CronJob": defaults_batch.default_cron_job,
    "ReplicationController": defaults_batch.default_replication_controller,
    "CustomResourceDefinition": crds.default_crd,
}

