"""pkube: a small but real Kubernetes in Python.

Every component lives under this one installed name, so that a wheel adds nothing else to a
user's site-packages: ``pkube.apiserver``, ``pkube.scheduler``, ``pkube.controllers``,
``pkube.kubelet``, ``pkube.proxy``, ``pkube.runtime`` (the container runtime library) and
``pkube.pdocker`` (its command line), ``pkube.kubectl`` (pkubectl), ``pkube.cluster`` (the
``pkube`` command), with ``pkube.api`` and ``pkube.client`` below them all.
"""
