"""Image references: Docker's `name[:tag][@digest]`, validated and normalized to the short
form the image store keys its tags by ("busybox" -> "busybox:latest",
"docker.io/library/x" -> "x:latest").

`stored_ref_key` gives the same key by string work alone (no `re`): a `pdocker run` looks up
a stored reference on every start, and stored references were validated when stored.
"""

from __future__ import annotations

from pkube.runtime.errors import InvalidReference

NAME_PATTERN = r"^[a-z0-9]+([._-]+[a-z0-9]+)*(/[a-z0-9]+([._-]+[a-z0-9]+)*)*$"
HOST_PATTERN = r"^([a-zA-Z0-9.-]+(:[0-9]+)?|\[[0-9a-fA-F:]+\](:[0-9]+)?)$"
TAG_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$"
DIGEST_PATTERN = r"^sha256:[0-9a-f]{64}$"
HEX_DIGITS = "0123456789abcdef"


def split_ref(ref: str) -> tuple[str, str | None, str | None]:
    """(name, tag, digest) of a reference; name keeps its registry host if it has one."""
    name, digest = ref, None
    if "@" in ref:
        name, digest = ref.split("@", 1)
    tag = None
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        name, tag = name.rsplit(":", 1)
    return name, tag, digest


def normalize_ref(ref: str) -> str:
    """Canonical short form: "busybox" -> "busybox:latest"; "docker.io/library/x" -> "x:latest".

    Raises InvalidReference with a user-facing message.
    """
    if not isinstance(ref, str) or not ref.strip():
        raise InvalidReference("invalid reference format: empty image name")
    name, tag, digest = _ref_parts(ref)
    import re   # here, not at the top: looking up a stored reference needs no validation
    _validate_name(ref, name)
    if tag is not None and not re.match(TAG_PATTERN, tag):
        raise InvalidReference(f"invalid reference format: bad tag in {ref!r}")
    if digest is not None and not re.match(DIGEST_PATTERN, digest):
        raise InvalidReference(f"invalid reference format: bad digest in {ref!r}")
    return _ref_key(name, tag, digest)


def stored_ref_key(ref: str) -> str | None:
    """What normalize_ref(ref) returns when `ref` is valid, by string work alone (no
    validation, no `re`): the key to look a reference up among the stored ones, which were
    all validated when stored. None for a reference no stored key can match (not a str,
    blank, an empty tag)."""
    if not isinstance(ref, str) or not ref.strip():
        return None
    name, tag, digest = _ref_parts(ref)
    return None if tag == "" else _ref_key(name, tag, digest)


def _ref_parts(ref: str) -> tuple[str, str | None, str | None]:
    name, tag, digest = split_ref(ref.strip())
    return _strip_docker_hub(name), tag, digest


def _ref_key(name: str, tag: str | None, digest: str | None) -> str:
    if digest is not None:
        return f"{name}:{tag}@{digest}" if tag else f"{name}@{digest}"
    return f"{name}:{tag or 'latest'}"


def looks_like_id(ref: str) -> bool:
    """Whether `ref` can be an image id or id prefix: [sha256:]1-64 lowercase hex digits."""
    if not isinstance(ref, str):
        return False
    hexpart = ref[len("sha256:"):] if ref.startswith("sha256:") else ref
    return 1 <= len(hexpart) <= 64 and all(c in HEX_DIGITS for c in hexpart)


def _strip_docker_hub(name: str) -> str:
    for prefix in ("docker.io/library/", "index.docker.io/library/", "docker.io/", "index.docker.io/"):
        if name.startswith(prefix):
            return name[len(prefix):]
    return name


def _validate_name(ref: str, name: str) -> None:
    import re
    first, _, rest = name.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost" or first.startswith("[")):
        if not re.match(HOST_PATTERN, first) or not re.match(NAME_PATTERN, rest):
            raise InvalidReference(f"invalid reference format: {ref!r}")
        return
    if not re.match(NAME_PATTERN, name):
        raise InvalidReference(f"invalid reference format: {ref!r} (repository names are "
                               "lowercase letters, digits and separators)")
