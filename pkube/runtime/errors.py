"""The runtime library's errors about containers, images and layers. Every message is fit for
a user (pdocker prints it as its one line; the kubelet puts it in a pod's status).

The other modules' errors stay with their concern (SpecError in spec, IllegalTransition in
state, StartError in process, CgroupError, NetworkError, RootfsError ...); these
are here because several modules raise them and none of those should import another only
to name an error.
"""


class ContainerError(Exception):
    """Base of the container errors."""


class NoSuchContainer(ContainerError):
    """No container (or sandbox) matches the given id, id prefix or name."""


class Conflict(ContainerError):
    """The operation conflicts with the current state (name taken, running, ...)."""


class ImageError(Exception):
    """Base of the image errors."""


class ImageNotFound(ImageError):
    """No image matches the given reference or id."""


class InvalidReference(ImageError):
    """The text is not a valid image reference."""


class ImageConflict(ImageError):
    """The image cannot be removed as asked (in use, or referenced by several tags)."""


class LayerError(Exception):
    """A layer could not be stored (bad digest, unreadable archive). Not retryable as is."""


class UnsafeLayer(LayerError):
    """A layer tar tried to escape its directory or create a device: refused, nothing kept."""
