"""Whatever a client sends, the api/ functions answer with their own error type or a result,
never another exception (which the apiserver would turn into a 500). Seeded random shapes
grafted onto real objects."""

import copy
import random

import pytest

from pkube.api.defaults import apply_defaults
from pkube.api.patch import PatchError, json_merge_patch, json_patch, strategic_merge_patch, three_way_merge_patch
from pkube.api.selectors import SelectorError, label_selector_from_dict, parse_field_selector, parse_label_selector
from pkube.api.validation import Validator

SCALARS = [None, True, False, 0, -1, 1.5, 2**40, "", "x", "Bad Name!", "-1", "80", "500m", "$patch", "replace"]
KEYS = ["name", "image", "containers", "spec", "metadata", "ports", "port", "labels", "selector", "matchLabels",
        "matchExpressions", "env", "value", "template", "$patch", "$retainKeys", "$setElementOrder/containers",
        "$deleteFromPrimitiveList/finalizers", "finalizers", "containerPort", "tolerations", "resources",
        "limits", "cpu", "data", "stringData", "strategy", "rollingUpdate", "type", "volumes", "operator"]


def random_value(rng: random.Random, depth: int = 0):
    choice = rng.random()
    if depth > 3 or choice < 0.45:
        return rng.choice(SCALARS)
    if choice < 0.75:
        return {rng.choice(KEYS): random_value(rng, depth + 1) for _ in range(rng.randint(0, 4))}
    return [random_value(rng, depth + 1) for _ in range(rng.randint(0, 3))]


def graft(rng: random.Random, obj, value):
    """Replace one random node of `obj` (a deep copy) with `value`."""
    obj = copy.deepcopy(obj)
    node = obj
    for _ in range(rng.randint(1, 6)):
        children = list(node.items()) if isinstance(node, dict) else list(enumerate(node)) if isinstance(node, list) else []
        if not children:
            break
        key, child = rng.choice(children)
        if not isinstance(child, (dict, list)) or rng.random() < 0.3:
            node[key] = value
            return obj
        node = child
    if isinstance(node, dict):
        node[rng.choice(KEYS)] = value
    return obj


def base_objects():
    containers = [{"name": "c", "image": "busybox", "ports": [{"containerPort": 80}],
                   "env": [{"name": "A", "value": "1"}], "resources": {"limits": {"cpu": "1"}}}]
    template = {"metadata": {"labels": {"app": "a"}}, "spec": {"containers": containers}}
    return [
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "finalizers": ["a/b"]},
         "spec": {"containers": containers, "tolerations": [{"key": "k", "operator": "Exists"}]}},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
         "spec": {"selector": {"matchLabels": {"app": "a"}}, "template": template,
                  "strategy": {"type": "RollingUpdate"}}},
        {"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "r"},
         "spec": {"selector": {"matchLabels": {"app": "a"}}, "template": template}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
         "spec": {"selector": {"app": "a"}, "ports": [{"port": 80}], "clusterIP": "10.96.0.1"}},
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "stringData": {"a": "b"}},
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "n"}},
        {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n"}, "spec": {"taints": [{"key": "k"}]}},
        {"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "e"}, "subsets": [{"addresses": [{"ip": "1.2.3.4"}]}]},
        {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "metadata": {"name": "e"}, "endpoints": []},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "b"}, "immutable": True},
    ]


@pytest.mark.parametrize("seed", range(8))
def test_random_shapes_never_escape_as_other_exceptions(seed):
    rng = random.Random(seed)
    validator = Validator()
    for base in base_objects():
        for _ in range(12):
            obj = graft(rng, base, random_value(rng))
            apply_defaults(copy.deepcopy(obj))
            validator.validate(obj, old=base if rng.random() < 0.5 else None, strict=rng.random() < 0.5)
            validator.validate(base, old=obj)
            validator.unknown_fields(obj)
            patch = random_value(rng)
            json_merge_patch(base, patch)
            for attempt in (lambda: strategic_merge_patch(base, patch, base["kind"]),
                            lambda: strategic_merge_patch(base, obj, base["kind"]),
                            lambda: json_patch(base, [{"op": rng.choice(["add", "remove", "replace", "move",
                                                                         "copy", "test", 3]),
                                                       "path": rng.choice(["/spec", "/spec/containers/0", "/x/-",
                                                                           "", "/metadata/name", 5]),
                                                       "from": rng.choice(["/spec", "/metadata", None]),
                                                       "value": patch}]),
                            lambda: three_way_merge_patch(base, obj, base, base["kind"]),
                            lambda: three_way_merge_patch(obj, base, obj, base["kind"])):
                try:
                    attempt()
                except PatchError:
                    pass
            for parse in (lambda: label_selector_from_dict(patch if isinstance(patch, dict) else None),
                          lambda: parse_label_selector(str(patch)),
                          lambda: parse_field_selector(str(patch))):
                try:
                    parse()
                except SelectorError:
                    pass
