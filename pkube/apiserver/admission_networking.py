"""kube-apiserver's ``DefaultIngressClass`` admission plugin: an Ingress created without
``spec.ingressClassName`` and without the ``kubernetes.io/ingress.class`` annotation gets the
default IngressClass, the one annotated ``ingressclass.kubernetes.io/is-default-class=true``
(the newest when several are); none when there is no default. It mutates on CREATE only; the
classes come from a watch of the store (``admission_storage.DefaultClass``)."""

from __future__ import annotations

from pkube.apiserver.admission_storage import DefaultClass

INGRESSCLASS_PREFIX = "/registry/ingressclasses/"
DEFAULT_CLASS_ANNOTATION = "ingressclass.kubernetes.io/is-default-class"
CLASS_ANNOTATION = "kubernetes.io/ingress.class"


def is_default_class(ingress_class: dict) -> bool:
    return ((ingress_class.get("metadata") or {}).get("annotations") or {}).get(DEFAULT_CLASS_ANNOTATION) == "true"


class DefaultIngressClass(DefaultClass):
    """See the module docstring. ``store`` is the apiserver's store (it feeds the cache)."""

    name, prefix, kind = "DefaultIngressClass", INGRESSCLASS_PREFIX, "Ingress"
    class_field, opt_out = "ingressClassName", CLASS_ANNOTATION
    is_default = staticmethod(is_default_class)
