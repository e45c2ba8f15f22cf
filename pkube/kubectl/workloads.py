"""``run``, ``create deployment``, ``expose``, ``set image`` and ``set env``: the objects
kubectl builds for them (pure functions), and the writes that send them.

The builders return exactly what kubectl 1.32 sends (``-o yaml --dry-run=client`` shows it),
so a pod made by ``pkubectl run`` and one made by ``kubectl run`` are the same object.
"""

from __future__ import annotations

import json
import random
import string
from typing import Iterable, Optional

from pkube.kubectl.errors import CliError

RESTART_POLICIES = ("Always", "OnFailure", "Never")
SERVICE_TYPES = ("ClusterIP", "NodePort", "LoadBalancer", "ExternalName")
PROTOCOLS = ("TCP", "UDP", "SCTP")
CONFLICT_RETRIES = 5


# ---------------------------------------------------------------- run / create deployment

def parse_labels(text: str) -> dict:
    """``a=b,c=d`` as a dict; raises CliError like kubectl for a pair without ``=``."""
    labels = {}
    for pair in filter(None, text.split(",")):
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise CliError(f"invalid label spec: {pair}")
        labels[key] = value
    return labels


def parse_env(pairs: Iterable[str]) -> list[dict]:
    """``--env K=V`` flags as a container's env list (in order)."""
    env = []
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise CliError(f"invalid env: {pair}")
        env.append({"name": key, "value": value})
    return env


def pod_for_run(name: str, image: str, *, port: Optional[int] = None, env: Iterable[str] = (),
                labels: Optional[str] = None, annotations: Iterable[str] = (), restart: str = "Always",
                command: bool = False, args: Iterable[str] = (), image_pull_policy: Optional[str] = None,
                stdin: bool = False, tty: bool = False) -> dict:
    """The Pod ``kubectl run NAME --image=IMAGE ...`` creates: one container named NAME, the
    words after ``--`` as its args (its command with ``--command``), labels ``run=NAME``
    unless ``--labels`` is given; ``stdin`` (``-i``) and ``tty`` (``-t``) for a session attached
    to it."""
    if restart not in RESTART_POLICIES:
        raise CliError(f"invalid restart policy: {restart}")
    container: dict = {"name": name, "image": image}
    words = list(args)
    if words:
        container["command" if command else "args"] = words
    if env:
        container["env"] = parse_env(env)
    if image_pull_policy:
        container["imagePullPolicy"] = image_pull_policy
    if port is not None and port >= 0:
        container["ports"] = [{"containerPort": port}]
    container["resources"] = {}
    if stdin:
        container.update(stdin=True, stdinOnce=True)
    if tty:
        container["tty"] = True
    meta: dict = {"name": name, "labels": parse_labels(labels) if labels else {"run": name}}
    if annotations:
        meta["annotations"] = {k: v for k, _, v in (a.partition("=") for a in annotations)}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta,
            "spec": {"containers": [container], "restartPolicy": restart, "dnsPolicy": "ClusterFirst"},
            "status": {}}


def container_name_for_image(image: str, suffix=None) -> str:
    """kubectl create deployment's container name: the image's last path part without tag or
    digest; ``_`` and ``.`` become ``-`` plus a random 5-letter suffix (kubectl's
    sanitizeAndUniquify)."""
    name = image.rsplit("/", 1)[-1].split(":", 1)[0].split("@", 1)[0]
    if "_" in name or "." in name:
        tail = suffix or "".join(random.choices(string.ascii_lowercase + string.digits, k=5))
        name = f"{name.replace('_', '-').replace('.', '-')}-{tail}"
    return name


def deployment_for_create(name: str, images: list[str], *, replicas: int = 1, port: Optional[int] = None,
                          command: Iterable[str] = ()) -> dict:
    """The Deployment ``kubectl create deployment NAME --image=...`` creates: labels and selector
    ``app=NAME``, one container per image, ``-- COMMAND`` as every container's command,
    ``--port`` on the first container only."""
    if not images:
        raise CliError("required flag(s) \"image\" not set")
    if len(images) > 1 and command:
        raise CliError("cannot specify multiple --image options and command")
    if replicas < 0:
        raise CliError("--replicas must be a non-negative integer")
    containers = []
    for image in images:
        container: dict = {"name": container_name_for_image(image), "image": image}
        if command:
            container["command"] = list(command)
        if port is not None and port >= 0 and not containers:
            container["ports"] = [{"containerPort": port}]
        container["resources"] = {}
        containers.append(container)
    labels = {"app": name}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "labels": dict(labels)},
            "spec": {"replicas": replicas, "selector": {"matchLabels": dict(labels)}, "strategy": {},
                     "template": {"metadata": {"labels": dict(labels)}, "spec": {"containers": containers}}},
            "status": {}}


# ---------------------------------------------------------------- expose

def selector_of(obj: dict) -> dict:
    """The label selector a Service exposing ``obj`` uses (kubectl's MapBasedSelectorForObject)."""
    kind, spec = obj.get("kind"), obj.get("spec") or {}
    if kind == "Pod":
        labels = (obj.get("metadata") or {}).get("labels") or {}
        if not labels:
            raise CliError("the pod has no labels and cannot be exposed")
        return dict(labels)
    if kind == "Service":
        if not spec.get("selector"):
            raise CliError("the service has no pod selector set")
        return dict(spec["selector"])
    if kind in ("Deployment", "ReplicaSet", "ReplicationController", "StatefulSet", "DaemonSet"):
        selector = spec.get("selector") or {}
        if kind == "ReplicationController":
            return dict(selector)
        if selector.get("matchExpressions"):
            raise CliError(f"couldn't convert expressions - \"{selector['matchExpressions']}\" to map-based selector format")
        return dict(selector.get("matchLabels") or {})
    raise CliError(f"cannot expose a {kind}")


def ports_of(obj: dict) -> list[tuple[int, str]]:
    """(port, protocol) of every port ``obj`` declares: its containers' ports, or a
    Service's ports (kubectl's PortsForObject and ProtocolsForObject)."""
    spec = obj.get("spec") or {}
    if obj.get("kind") == "Service":
        return [(p["port"], p.get("protocol") or "TCP") for p in spec.get("ports") or [] if "port" in p]
    pod_spec = spec if obj.get("kind") == "Pod" else (spec.get("template") or {}).get("spec") or {}
    return [(p["containerPort"], p.get("protocol") or "TCP")
            for c in pod_spec.get("containers") or [] for p in c.get("ports") or [] if "containerPort" in p]


def _target_port(text: Optional[str], port: int):
    if not text:
        return port
    return int(text) if text.isdigit() else text


def service_for_expose(obj: dict, *, name: Optional[str] = None, port: Optional[int] = None,
                       target_port: Optional[str] = None, service_type: Optional[str] = None,
                       protocol: Optional[str] = None, selector: Optional[str] = None,
                       labels: Optional[str] = None) -> dict:
    """The Service ``kubectl expose`` makes for ``obj``: named like it, labelled like it,
    selecting its pods, with ``--port`` or the ports it declares (``port-1``, ``port-2``...
    when several); targetPort is ``--target-port`` or the port itself."""
    if service_type and service_type not in SERVICE_TYPES:
        raise CliError(f"invalid service type: {service_type}")   # kubectl: unknown type
    if protocol and protocol not in PROTOCOLS:
        raise CliError(f"invalid protocol {protocol}")
    if port is not None:
        ports = [(port, protocol or _first_protocol(obj))]
    else:
        ports = [(p, protocol or proto) for p, proto in ports_of(obj)]
        if not ports:
            raise CliError("couldn't find port via --port flag or introspection")
    service_ports = []
    for index, (number, proto) in enumerate(ports, start=1):
        entry = {"name": f"port-{index}"} if len(ports) > 1 else {}
        entry.update(port=number, protocol=proto, targetPort=_target_port(target_port, number))
        service_ports.append(entry)
    meta = obj.get("metadata") or {}
    own_labels = parse_labels(labels) if labels else dict(meta.get("labels") or {})
    spec: dict = {"ports": service_ports, "selector": parse_labels(selector) if selector else selector_of(obj)}
    if service_type:
        spec["type"] = service_type
    metadata = {"name": name or meta.get("name", "")}
    if own_labels:
        metadata["labels"] = own_labels
    return {"apiVersion": "v1", "kind": "Service", "metadata": metadata, "spec": spec,
            "status": {"loadBalancer": {}}}


def _first_protocol(obj: dict) -> str:
    declared = ports_of(obj)
    return declared[0][1] if declared else "TCP"


# ---------------------------------------------------------------- set image / set env

def pod_spec_of(obj: dict) -> dict:
    """The pod spec inside ``obj`` (a Pod's own spec, else its template's); CliError when
    ``obj`` has none."""
    spec = obj.get("spec") or {}
    if obj.get("kind") == "Pod":
        return spec
    template = spec.get("template")
    if not isinstance(template, dict):
        raise CliError(f"{obj.get('kind', 'object')}/{(obj.get('metadata') or {}).get('name', '')} "
                       "has no pod template")
    return template.setdefault("spec", {})


def parse_image_pairs(words: list[str]) -> dict:
    """``CONTAINER=IMAGE`` words (``*`` for every container) as {container: image}."""
    images = {}
    for word in words:
        container, sep, image = word.partition("=")
        if not sep or not container or not image:
            raise CliError(f"invalid image spec: {word}: expected CONTAINER=IMAGE")
        images[container] = image
    return images


def set_images(obj: dict, images: dict) -> dict:
    """A copy of ``obj`` with the containers (and init containers) renamed in ``images`` on
    their new image; CliError naming the first container that does not exist."""
    updated = json.loads(json.dumps(obj))
    spec = pod_spec_of(updated)
    everything = [c for key in ("initContainers", "containers") for c in spec.get(key) or []]
    for name, image in images.items():
        matching = [c for c in everything if name in ("*", c.get("name"))]
        if not matching:
            raise CliError(f"unable to find container named \"{name}\"")
        for container in matching:
            container["image"] = image
    return updated


def parse_env_changes(words: list[str]) -> tuple[list[dict], list[str]]:
    """``K=V`` settings (in order) and ``K-`` removals of ``set env``."""
    settings, removals = [], []
    for word in words:
        if "=" in word:
            key, _, value = word.partition("=")
            if not key:
                raise CliError(f"invalid env: {word}")
            settings.append({"name": key, "value": value})
        elif word.endswith("-") and len(word) > 1:
            removals.append(word[:-1])
        else:
            raise CliError(f"invalid env: {word}: expected KEY=VALUE or KEY-")
    return settings, removals


def set_env(obj: dict, settings: list[dict], removals: list[str], container: Optional[str] = None,
            warn=None) -> dict:
    """A copy of ``obj`` with ``settings`` set (replacing same-named entries in place) and
    ``removals`` removed in the selected containers (all, or those matching ``container``,
    ``*`` allowed); ``warn`` hears kubectl's warning when none matches."""
    import fnmatch

    updated = json.loads(json.dumps(obj))
    spec = pod_spec_of(updated)
    chosen = [c for c in spec.get("containers") or [] if fnmatch.fnmatchcase(c.get("name", ""), container or "*")]
    if not chosen and warn is not None:
        meta = obj.get("metadata") or {}
        warn(f"Warning: {obj.get('kind')}/{meta.get('name', '')} does not have any containers matching \"{container}\"")
    for c in chosen:
        env = [e for e in c.get("env") or [] if e.get("name") not in removals]
        for setting in settings:
            existing = next((e for e in env if e.get("name") == setting["name"]), None)
            if existing is None:
                env.append(dict(setting))
            else:
                existing.clear()
                existing.update(setting)
        if env:
            c["env"] = env
        else:
            c.pop("env", None)
    return updated


def env_listing(obj: dict, container: Optional[str] = None) -> str:
    """``set env --list``: ``# Deployment web, container nginx`` then ``K=V`` lines."""
    import fnmatch

    kind, name = obj.get("kind", ""), (obj.get("metadata") or {}).get("name", "")
    lines = []
    for c in pod_spec_of(obj).get("containers") or []:
        if not fnmatch.fnmatchcase(c.get("name", ""), container or "*"):
            continue
        lines.append(f"# {kind} {name}, container {c.get('name', '')}")
        for e in c.get("env") or []:
            if "value" in e or "valueFrom" not in e:
                lines.append(f"{e.get('name')}={e.get('value', '')}")
            else:
                lines.append(f"# {e.get('name')} from {next(iter(e['valueFrom']), 'unknown')}")
    return "".join(line + "\n" for line in lines)


def pod_spec_patch(before: dict, after: dict) -> Optional[dict]:
    """A JSON merge patch moving ``before``'s containers to ``after``'s, guarded by the
    resourceVersion read (a concurrent writer makes it a Conflict); None when nothing changed."""
    old, new = pod_spec_of(before), pod_spec_of(after)
    changed = {key: new.get(key) for key in ("initContainers", "containers") if old.get(key) != new.get(key)}
    if not changed:
        return None
    spec_patch: dict = changed
    if after.get("kind") != "Pod":
        spec_patch = {"template": {"spec": changed}}
    return {"metadata": {"resourceVersion": (before.get("metadata") or {}).get("resourceVersion")},
            "spec": spec_patch}


def update_pod_spec(session, target, change) -> bool:
    """Read ``target``, apply ``change`` (a pure function of the object), and merge-patch the
    containers that changed; retried on Conflict. False when there was nothing to change."""
    from pkube.client.errors import Conflict

    from pkube.kubectl.mutate import send_patch

    for attempt in range(CONFLICT_RETRIES):
        current = session.get_json(target.path)
        current.setdefault("kind", target.resource.kind)
        patch = pod_spec_patch(current, change(current))
        if patch is None:
            return False
        try:
            send_patch(session, target, patch, "merge")
            return True
        except Conflict:
            if attempt == CONFLICT_RETRIES - 1:
                raise
    return False
