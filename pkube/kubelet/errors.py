"""Errors the kubelet shows on a pod when it cannot set it up.

A `PodSetupError` carries the reason Kubernetes shows (in an Event and in a waiting
container's `state.waiting.reason`) and a one-line message (`str(error)`). Both kinds are
retried by the pod worker on its next sync: a missing Secret may be created later.
"""

from __future__ import annotations


class PodSetupError(Exception):
    """A pod or container cannot be set up; `reason` is what Kubernetes shows (FailedMount,
    CreateContainerConfigError, ...) and str(self) the message."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason
        self.message = message


class VolumeError(PodSetupError):
    """A volume of the pod cannot be made (a missing Secret, a failed hostPath check, a
    tmpfs that cannot be mounted): Kubernetes' FailedMount."""

    def __init__(self, message: str):
        super().__init__("FailedMount", message)


class ConfigError(PodSetupError):
    """A container's configuration cannot be made (a missing Secret, ConfigMap or key in
    its env, a volumeMount naming no volume): Kubernetes' CreateContainerConfigError."""

    def __init__(self, message: str):
        super().__init__("CreateContainerConfigError", message)
