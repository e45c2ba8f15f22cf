"""Validation of API objects: the kubernetes-validate JSON schemas (types, required fields,
unknown fields) plus the semantic rules of Kubernetes (names, labels, selectors, ports,
immutable fields on update).

Build one `Validator` per process and reuse it: it compiles each kind's schema on first use
into Python closures (pkube/api/schema_check.py; jsonschema for anything outside that subset) and
keeps them: a cold schema load costs ~10 ms, a warm Pod validation a small fraction of one.

    validator = Validator()
    problems = validator.validate(obj, old=None, strict=False)   # list of StatusCause dicts
    if problems: answer 422 with causes=problems, message=format_invalid(kind, name, problems)
"""

from __future__ import annotations

import json

import jsonschema
import orjson
from referencing import Registry, Resource

from pkube.api import causes, names
from pkube.api import validation_apps, validation_storage
from pkube.api import validation_batch, validation_networking
from pkube.api import validation_specs as specs
from pkube.api.causes import Cause, format_invalid
from pkube.api.defaults import apply_defaults
from pkube.api.jsonvalue import deep_copy, fitted
from pkube.api.schema_check import Compiler, Problems, UnsupportedSchema, field_path, type_problem
from pkube.api.schemas import SchemaNotFound, SchemaSet, shared_schema_set

__all__ = ["Cause", "Validator", "format_invalid", "CLUSTER_SCOPED_KINDS"]

CLUSTER_SCOPED_KINDS = frozenset({"Namespace", "Node"})
ANNOTATIONS_MAX_BYTES = 256 * 1024
VALID_BODIES_BYTES = 8 * 1024 * 1024  # valid bodies remembered, in all (then forgotten at once)
VALID_BODY_MAX_BYTES = 16 * 1024  # larger bodies are not remembered
VALID_BODY_OVERHEAD = 100  # a bytes object's header and its slot in the set
UNREMEMBERED_KINDS = frozenset({"Secret"})  # no copy of secret data is kept here
_PARTS = ("metadata", "status")
OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"  # checked on every write; the rest once per distinct body
_TYPE_ERRORS = ("type", "oneOf", "anyOf", "format", "const")
_POD_UPDATABLE_MESSAGE = (
    "pod updates may not change fields other than `spec.containers[*].image`,"
    "`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` "
    "(only additions to existing tolerations),`spec.terminationGracePeriodSeconds` "
    "(allow it to be set to 1 if it was previously negative)"
)


class Validator:
    """Validates objects of the kinds the apiserver serves; one instance per process.

    Not thread-safe while it warms up (two threads may compile the same schema twice, which
    is harmless); afterwards it only reads.
    """

    def __init__(self, schemas: SchemaSet | None = None, compiled: bool = True):
        """`compiled=False` checks schemas with jsonschema only (slower; used to cross-check)."""
        self.schemas = schemas or shared_schema_set()
        self.compiled = compiled
        self._registry: Registry | None = None
        self._schema_compiler: Compiler | None = None
        self._compiled: dict[tuple[str, str], object] = {}
        self._parts_checks: dict[tuple, object] = {}
        self._valid_bodies: set[bytes] = set()
        self._valid_bytes = 0

    def compiled_check_count(self) -> int:
        """How many compiled checks (of whole kinds and of their parts) are held: they are
        made on a kind's first validation and kept for the validator's life."""
        return len(self._compiled) + len(self._parts_checks)

    def validate(self, obj: dict, old: dict | None = None, strict: bool = False) -> list[Cause]:
        """All problems of `obj` (empty list = valid). `old` is the stored object on update.

        With `strict`, unknown fields are problems too (fieldValidation=Strict); otherwise
        they are ignored (see `unknown_fields` to warn about them).

        Everything but metadata and status is checked once per distinct content: a body
        (the object without them) found valid is remembered, and objects with that body
        again (the pods of one ReplicaSet, a pod's status writes) only have their metadata
        and status checked (no semantic rule reads status).
        """
        if not isinstance(obj, dict):
            return [causes.type_invalid("", obj, "must be an object")]
        body = self._body_key(obj)
        if body is not None and body in self._valid_bodies:
            found = self._metadata_and_status(obj, old, strict)
            if found is not None:
                return found
        found = self._everything(obj, old, strict)
        if not found and strict and body is not None and obj.get("kind") not in UNREMEMBERED_KINDS:
            self._remember_valid(body)
        return found

    def _everything(self, obj: dict, old: dict | None, strict: bool) -> list[Cause]:
        schema_causes, unknown = self._schema_problems(obj)
        found = list(schema_causes)
        if strict:
            found += [causes.make(causes.INVALID, path, f'unknown field "{path}"') for path in unknown]
        if any(c["reason"] == causes.TYPE_INVALID for c in schema_causes):
            return found  # shapes are wrong: semantic rules would only repeat the same problem
        found += metadata_causes(obj)
        found += specs.BY_KIND.get(_kind_of(obj), _nothing)(obj)
        if isinstance(old, dict):
            found += update_causes(obj, old)
        return _unique(found)

    def _metadata_and_status(self, obj: dict, old: dict | None, strict: bool) -> list[Cause] | None:
        """The problems of an object whose body is known valid: what `_everything` would
        find, computed from its metadata, its status (and `old`) alone; None when the
        kind's schema cannot be checked by parts."""
        checks = self._part_checks(obj.get("apiVersion"), obj.get("kind"))
        if checks is None:
            return None
        problems = Problems()
        for part, check in checks.items():
            if part in obj:
                check(obj[part], (part,), problems)
        found = list(problems.causes)
        if strict:
            found += [causes.make(causes.INVALID, path, f'unknown field "{path}"') for path in problems.unknown]
        if any(c["reason"] == causes.TYPE_INVALID for c in problems.causes):
            return found
        found += metadata_causes(obj)
        if isinstance(old, dict):
            found += update_causes(obj, old)
        return _unique(found)

    @staticmethod
    def _body_key(obj: dict) -> bytes | None:
        """The object without metadata and status as JSON bytes (None when it cannot be encoded)."""
        try:
            return orjson.dumps({key: value for key, value in obj.items() if key not in _PARTS})
        except TypeError:
            return None

    def _remember_valid(self, body: bytes) -> None:
        """Remember ``body`` as valid; the bodies' memory (a copy of each, of its own size:
        orjson's result holds 4 KiB or more, see jsonvalue.fitted) and each entry's own
        cost counted against VALID_BODIES_BYTES."""
        if len(body) > VALID_BODY_MAX_BYTES:
            return
        cost = len(body) + VALID_BODY_OVERHEAD
        if self._valid_bytes + cost > VALID_BODIES_BYTES:
            self._valid_bodies.clear()
            self._valid_bytes = 0
        self._valid_bodies.add(fitted(body))
        self._valid_bytes += cost

    def _part_checks(self, api_version, kind) -> dict | None:
        """The compiled checks of a kind's metadata and status properties, or None."""
        key = (api_version, kind)
        if key not in self._parts_checks:
            schema = self._kind_schema(api_version, kind)
            if schema is None:
                return None  # not cached: clients must not grow this table with made-up kinds
            self._parts_checks[key] = self._compile_parts(schema)
        return self._parts_checks[key]

    def _kind_schema(self, api_version, kind) -> dict | None:
        """The OpenAPI schema of a kind, or None for a kind (or a non-string name) without one."""
        if not isinstance(api_version, str) or not isinstance(kind, str):
            return None
        try:
            return self.schemas.kind_schema(api_version, kind)
        except SchemaNotFound:
            return None

    def _compile_parts(self, schema: dict) -> dict | None:
        if not self.compiled:
            return None
        properties = schema.get("properties") or {}
        if set(_PARTS) & set(schema.get("required") or []):
            return None  # a missing part would be a problem of the whole object
        try:
            return {part: self._compiler().compile(properties[part]) for part in _PARTS if part in properties}
        except UnsupportedSchema:
            return None

    def metadata_problems(self, obj: dict, old: dict | None = None, strict: bool = False) -> list[Cause]:
        """The problems of an object's metadata alone: what a custom resource needs from here
        (its own schema checks the rest). Unknown metadata fields count only with `strict`."""
        problems = Problems()
        if self.compiled and isinstance(obj.get("metadata"), dict):
            self._metadata_check()(obj["metadata"], ("metadata",), problems)
        found = list(problems.causes)
        if strict:
            found += [causes.make(causes.INVALID, path, f'unknown field "{path}"') for path in problems.unknown]
        if any(c["reason"] == causes.TYPE_INVALID for c in problems.causes):
            return found
        found += metadata_causes({"metadata": obj.get("metadata")})
        if isinstance(old, dict):
            found += update_causes({"metadata": obj.get("metadata")}, {"metadata": old.get("metadata")})
        return _unique(found)

    def _metadata_check(self):
        """The compiled check of ObjectMeta (built once)."""
        key = ("", "ObjectMeta")
        if key not in self._parts_checks:
            self._parts_checks[key] = self._compiler().compile({"$ref": "#/$defs/" + OBJECT_META})
        return self._parts_checks[key]

    def unknown_fields(self, obj: dict) -> list[str]:
        """Dotted paths of fields the schema does not know (for fieldValidation=Warn)."""
        if not isinstance(obj, dict):
            return []
        return self._schema_problems(obj)[1]

    def _schema_problems(self, obj: dict) -> tuple[list[Cause], list[str]]:
        api_version, kind = obj.get("apiVersion"), obj.get("kind")
        found = []
        if not api_version:
            found.append(causes.required("apiVersion"))
        if not kind:
            found.append(causes.required("kind"))
        if not isinstance(api_version, str) or not isinstance(kind, str):
            found += [causes.type_invalid(name, value, f"{name} in body must be of type string")
                      for name, value in (("apiVersion", api_version), ("kind", kind))
                      if value and not isinstance(value, str)]
        check = self._check(api_version, kind) if not found else None
        if check is None:
            return found, []
        problems = check(obj)
        return found + problems.causes, problems.unknown

    def _check(self, api_version, kind):
        """The compiled check of a kind (obj -> Problems), or None for kinds without a schema."""
        key = (api_version, kind)
        if key not in self._compiled:
            check = self._compile(api_version, kind)
            if check is None:
                return None  # not cached: clients must not grow this table with made-up kinds
            self._compiled[key] = check
        return self._compiled[key]

    def _compile(self, api_version, kind):
        schema = self._kind_schema(api_version, kind)
        if schema is None:
            return None
        if not self.compiled:
            return self._jsonschema_check(schema)
        try:
            check = self._compiler().compile(schema)
        except UnsupportedSchema:
            return self._jsonschema_check(schema)
        return lambda obj: _run(check, obj)

    def _compiler(self) -> Compiler:
        if self._schema_compiler is None:
            self._schema_compiler = Compiler(self.schemas.definitions)
        return self._schema_compiler

    def _jsonschema_check(self, schema: dict):
        """The generic (slower) path for schemas outside the compiled subset."""
        if self._registry is None:
            self._registry = Resource.from_contents(self.schemas.definitions_document) @ Registry()
        validator = jsonschema.Draft202012Validator(
            schema, registry=Resource.from_contents(schema) @ self._registry)
        return lambda obj: jsonschema_problems(validator, obj)


def _run(check, obj) -> Problems:
    problems = Problems()
    check(obj, (), problems)
    return problems


def _nothing(obj: dict) -> list:
    return []


def _kind_of(obj: dict) -> str | None:
    kind = obj.get("kind")
    return kind if isinstance(kind, str) else None


def _unique(found: list[Cause]) -> list[Cause]:
    """Each cause once; a schema's bare "Required value" gives way to a semantic check's
    worded one on the same field (Ingress paths: "Required value: pathType must be specified")."""
    worded = {c["field"] for c in found if c["reason"] == causes.REQUIRED and c["message"] != "Required value"}
    seen, result = set(), []
    for cause in found:
        key = (cause["reason"], cause["field"], cause["message"])
        if key == (causes.REQUIRED, cause["field"], "Required value") and cause["field"] in worded:
            continue
        if key not in seen:
            seen.add(key)
            result.append(cause)
    return result


# --- schema errors through jsonschema --------------------------------------------------------

def jsonschema_problems(validator, obj) -> Problems:
    """jsonschema's errors for `obj` as Problems (the same causes the compiled checks give)."""
    problems = Problems()
    for error in validator.iter_errors(obj):
        if error.validator == "additionalProperties":
            problems.unknown += _unknown_paths(error)
        else:
            problems.causes += _schema_cause(error)
    return problems


def _unknown_paths(error) -> list[str]:
    known = set((error.schema.get("properties") or {}).keys())
    instance = error.instance if isinstance(error.instance, dict) else {}
    return [field_path(tuple(error.absolute_path) + (key,)) for key in instance if key not in known]


def _schema_cause(error) -> list[Cause]:
    """One jsonschema error as StatusCauses (empty when it is not a real problem)."""
    path = tuple(error.absolute_path)
    if error.validator == "required":
        missing = error.message.split("'")[1] if "'" in error.message else ""
        return [causes.required(field_path(path + (missing,)))]
    if error.instance is None:
        return []  # null means "not set" to Kubernetes' decoder
    if error.validator == "enum":
        return [causes.not_supported(field_path(path), error.instance, error.validator_value)]
    if error.validator in _TYPE_ERRORS:
        return [type_problem(path, error.instance, _expected_types(error.schema))]
    return [causes.invalid(field_path(path), error.instance, error.message)]


def _expected_types(schema: dict) -> list[str]:
    options = schema.get("oneOf") or schema.get("anyOf") or [schema]
    kinds = []
    for option in options:
        kind = option.get("type") if isinstance(option, dict) else None
        for name in (kind if isinstance(kind, list) else [kind]):
            if name and name not in kinds:
                kinds.append(name)
    return kinds


# --- metadata ----------------------------------------------------------------------------------

RBAC_KINDS = ("Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding")


def name_check(kind: str):
    """The names.* check that a kind's metadata.name must pass."""
    if kind == "Namespace":
        return names.dns1123_label
    if kind == "Service":
        return names.dns1035_label
    if kind in RBAC_KINDS:
        return names.path_segment_name
    return names.dns1123_subdomain


def metadata_causes(obj: dict) -> list[Cause]:
    """metadata.name/generateName, namespace, labels, annotations, finalizers."""
    kind = _kind_of(obj)
    metadata = obj.get("metadata")
    if not isinstance(metadata, dict):
        return [causes.required("metadata.name", "name or generateName is required")]
    found = _name_causes(metadata, name_check(kind))
    namespace = metadata.get("namespace")
    if kind in CLUSTER_SCOPED_KINDS and namespace:
        found.append(causes.forbidden("metadata.namespace", "not allowed on this type"))
    elif namespace:
        found += specs.syntax("metadata.namespace", namespace, names.dns1123_label)
    found += specs.label_map("metadata.labels", metadata.get("labels"))
    found += annotations_causes(metadata.get("annotations"))
    for index, finalizer in enumerate(specs.as_list(metadata.get("finalizers"))):
        found += specs.syntax(f"metadata.finalizers[{index}]", finalizer, names.qualified_name)
    return found


def _name_causes(metadata: dict, check) -> list[Cause]:
    name, generate_name = metadata.get("name"), metadata.get("generateName")
    found = []
    if isinstance(generate_name, str) and generate_name:
        # a prefix may end in "-": validate it as if a random suffix followed
        masked = generate_name[:-1] + "a" if generate_name.endswith("-") else generate_name
        found += [causes.invalid("metadata.generateName", generate_name, problem)
                  for problem in check(masked)]
    if name:
        found += specs.syntax("metadata.name", name, check)
    elif not generate_name:
        found.append(causes.required("metadata.name", "name or generateName is required"))
    return found


def annotations_causes(annotations) -> list[Cause]:
    """Annotation keys are qualified names (case-insensitive); total size ≤ 256 KiB."""
    found, total = [], 0
    for key, value in specs.as_dict(annotations).items():
        found += specs.syntax("metadata.annotations", key.lower() if isinstance(key, str) else key,
                              names.qualified_name)
        total += len(str(key)) + len(str(value or ""))
    if total > ANNOTATIONS_MAX_BYTES:
        found.append(causes.too_long("metadata.annotations", ANNOTATIONS_MAX_BYTES))
    return found


# --- updates -----------------------------------------------------------------------------------

def update_causes(new: dict, old: dict) -> list[Cause]:
    """Changes that an update may not make: identity metadata and each kind's frozen fields.

    Fields the apiserver owns (uid, creationTimestamp, a Service's allocated clusterIP) are
    compared only when the new object carries them: the apiserver copies them from `old`.
    """
    found = []
    new_meta, old_meta = specs.as_dict(new.get("metadata")), specs.as_dict(old.get("metadata"))
    for field in ("name", "namespace"):
        if (new_meta.get(field) or "") != (old_meta.get(field) or ""):
            found.append(causes.invalid(f"metadata.{field}", new_meta.get(field), "field is immutable"))
    for field in ("uid", "creationTimestamp"):
        if new_meta.get(field) and new_meta.get(field) != old_meta.get(field):
            found.append(causes.invalid(f"metadata.{field}", new_meta.get(field), "field is immutable"))
    return found + _UPDATE_BY_KIND.get(_kind_of(new), _no_update_rules)(new, old)


def _no_update_rules(new: dict, old: dict) -> list[Cause]:
    return []


def _pod_update(new: dict, old: dict) -> list[Cause]:
    """Kubernetes defaults objects as it reads them from etcd; so do we, for a stored pod
    written before a default existed."""
    found = _container_state_transitions(new, old)
    if new.get("spec") == old.get("spec"):
        return found  # every other rule compares the two specs (status writes keep the spec)
    new_spec, old_spec = (_defaulted_pod_spec(o) for o in (new, old))
    found += _active_deadline_update(new_spec, old_spec)
    found += _tolerations_update(new_spec, old_spec)
    if _without_mutable_pod_fields(new_spec, old_spec) != _without_mutable_pod_fields(old_spec, old_spec):
        found.append(causes.forbidden("spec", _POD_UPDATABLE_MESSAGE))
    return found


def _container_state_transitions(new: dict, old: dict) -> list[Cause]:
    """Kubernetes' ValidateContainerStateTransition: a container its pod will not restart
    (restartPolicy Never, or OnFailure after exit code 0) may not leave its terminated state,
    so a late status write of a finished pod cannot make it look running again."""
    policy = specs.as_dict(old.get("spec")).get("restartPolicy") or "Always"
    if policy == "Always":
        return []
    found, new_statuses = [], _container_statuses(new)
    for i, old_status in enumerate(_container_statuses(old)):
        terminated = specs.as_dict(old_status.get("state")).get("terminated")
        if not isinstance(terminated, dict) or (policy == "OnFailure" and terminated.get("exitCode", 0) != 0):
            continue
        if any(s.get("name") == old_status.get("name") and not specs.as_dict(s.get("state")).get("terminated")
               for s in new_statuses):
            found.append(causes.forbidden(f"status.containerStatuses[{i}].state",
                                          "may not be transitioned to non-terminated state"))
    return found


def _container_statuses(pod: dict) -> list[dict]:
    return [specs.as_dict(s) for s in specs.as_list(specs.as_dict(pod.get("status")).get("containerStatuses"))]


def _defaulted_pod_spec(pod: dict) -> dict:
    spec = deep_copy(specs.as_dict(pod.get("spec")))
    return apply_defaults({"kind": "Pod", "spec": spec})["spec"]


def _without_mutable_pod_fields(spec: dict, old_spec: dict) -> dict:
    """A copy of `spec` with the fields an update may change replaced by the old values."""
    spec = deep_copy(spec)
    for field in ("containers", "initContainers"):
        old_containers = specs.as_list(old_spec.get(field))
        for index, container in enumerate(specs.as_list(spec.get(field))):
            if isinstance(container, dict) and index < len(old_containers):
                container["image"] = specs.as_dict(old_containers[index]).get("image")
    for field in ("activeDeadlineSeconds", "terminationGracePeriodSeconds", "tolerations"):
        spec.pop(field, None)
    return spec


def _active_deadline_update(new_spec: dict, old_spec: dict) -> list[Cause]:
    old_deadline, new_deadline = old_spec.get("activeDeadlineSeconds"), new_spec.get("activeDeadlineSeconds")
    if old_deadline is None or (specs.is_int(new_deadline) and specs.is_int(old_deadline)
                                and new_deadline <= old_deadline):
        return []
    return [causes.invalid("spec.activeDeadlineSeconds", new_deadline,
                           "must be less than or equal to previous value")]


def _tolerations_update(new_spec: dict, old_spec: dict) -> list[Cause]:
    new_tolerations = [json.dumps(_toleration_identity(t), sort_keys=True)
                       for t in specs.as_list(new_spec.get("tolerations"))]
    for toleration in specs.as_list(old_spec.get("tolerations")):
        if json.dumps(_toleration_identity(toleration), sort_keys=True) not in new_tolerations:
            return [causes.forbidden("spec.tolerations", "existing toleration can not be modified "
                                                         "except its tolerationSeconds")]
    return []


def _toleration_identity(toleration) -> dict:
    toleration = dict(specs.as_dict(toleration))
    toleration.pop("tolerationSeconds", None)
    toleration.setdefault("operator", "Equal")
    return {k: v for k, v in toleration.items() if v not in (None, "")}


def _selector_update(new: dict, old: dict) -> list[Cause]:
    new_selector = specs.as_dict(new.get("spec")).get("selector")
    old_selector = specs.as_dict(old.get("spec")).get("selector")
    if old_selector is not None and new_selector != old_selector:
        return [causes.invalid("spec.selector", new_selector, "field is immutable")]
    return []


def _service_update(new: dict, old: dict) -> list[Cause]:
    new_spec, old_spec = specs.as_dict(new.get("spec")), specs.as_dict(old.get("spec"))
    old_ip, new_ip = old_spec.get("clusterIP"), new_spec.get("clusterIP")
    if not old_ip or new_spec.get("type") == "ExternalName" or new_ip == old_ip:
        return []
    return [causes.invalid("spec.clusterIP", new_ip or "", "field is immutable")]


def _immutable_data_update(new: dict, old: dict) -> list[Cause]:
    if not old.get("immutable"):
        return []
    if not new.get("immutable"):
        return [causes.forbidden("immutable", "field is immutable when `immutable` is set")]
    for field in ("data", "binaryData"):
        if (new.get(field) or {}) != (old.get(field) or {}):
            return [causes.forbidden(field, "field is immutable when `immutable` is set")]
    return []


def _node_update(new: dict, old: dict) -> list[Cause]:
    old_cidr = specs.as_dict(old.get("spec")).get("podCIDR")
    new_cidr = specs.as_dict(new.get("spec")).get("podCIDR")
    if old_cidr and new_cidr != old_cidr:
        return [causes.forbidden("spec.podCIDR", "node updates may not change podCIDR except from \"\" to valid")]
    return []


_UPDATE_BY_KIND = {
    "Pod": _pod_update,
    "Deployment": _selector_update,
    "ReplicaSet": _selector_update,
    "Job": validation_batch.job_update,
    "DaemonSet": validation_apps.daemon_set_update,
    "StatefulSet": validation_apps.stateful_set_update,
    "PersistentVolume": validation_storage.persistent_volume_update,
    "PersistentVolumeClaim": validation_storage.persistent_volume_claim_update,
    "StorageClass": validation_storage.storage_class_update,
    "IngressClass": validation_networking.ingress_class_update,
    "Service": _service_update,
    "Secret": _immutable_data_update,
    "ConfigMap": _immutable_data_update,
    "Node": _node_update,
}
