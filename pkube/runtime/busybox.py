"""The offline ``busybox:latest`` rootfs, made from the host's static busybox binary.

The tar is deterministic (sorted entries, the binary's own mtime everywhere), so the same host
binary always yields the same layer digest and the same image id. A host without a usable
static busybox gets ``BusyboxMissing``, an ``ImageError`` (so ``pdocker`` prints one line).
Paths are str or os.PathLike. Only the first run of a fresh store imports this module.
"""

from __future__ import annotations

import io
import os
import subprocess
import tarfile
from io import BufferedIOBase as BinaryIO   # typing's name for it

from pkube.runtime.errors import ImageError

HOST_BUSYBOX = "/bin/busybox"
BUSYBOX_REF = "busybox:latest"
DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

DIRECTORIES = {
    "bin": 0o755, "dev": 0o755, "etc": 0o755, "home": 0o755, "proc": 0o555, "root": 0o700,
    "sys": 0o555, "tmp": 0o1777, "usr": 0o755, "usr/bin": 0o755, "usr/sbin": 0o755,
    "sbin": 0o755, "var": 0o755, "var/tmp": 0o1777, "var/spool": 0o755, "var/www": 0o755,
}
PASSWD = ("root:x:0:0:root:/root:/bin/sh\n"
          "daemon:x:1:1:daemon:/usr/sbin:/bin/false\n"
          "bin:x:2:2:bin:/bin:/bin/false\n"
          "sys:x:3:3:sys:/dev:/bin/false\n"
          "www-data:x:33:33:www-data:/var/www:/bin/false\n"
          "nobody:x:65534:65534:nobody:/home:/bin/false\n")
GROUP = ("root:x:0:\ndaemon:x:1:\nbin:x:2:\nsys:x:3:\nadm:x:4:\ntty:x:5:\n"
         "wheel:x:10:root\nwww-data:x:33:\nusers:x:100:\nnogroup:x:65534:\n")


class BusyboxMissing(ImageError):
    """The host has no usable static busybox (the set-up installs busybox-static)."""


def image_config() -> dict:
    """The OCI "config" section of the busybox image."""
    return {"Env": [DEFAULT_PATH], "Cmd": ["sh"]}


def created_timestamp(busybox: str | os.PathLike = HOST_BUSYBOX) -> int:
    return int(_stat(busybox).st_mtime)


def write_rootfs_tar(fileobj: BinaryIO, busybox: str | os.PathLike = HOST_BUSYBOX) -> None:
    """Write the busybox rootfs as an uncompressed tar to fileobj."""
    mtime = created_timestamp(busybox)
    applets = _applets(busybox)
    with tarfile.open(fileobj=fileobj, mode="w|", format=tarfile.PAX_FORMAT) as tf:
        for name, mode in sorted(DIRECTORIES.items()):
            tf.addfile(_info(name, tarfile.DIRTYPE, mode, mtime))
        with open(busybox, "rb") as f:
            info = _info("bin/busybox", tarfile.REGTYPE, 0o755, mtime)
            info.size = _stat(busybox).st_size
            tf.addfile(info, f)
        for name, text in (("etc/passwd", PASSWD), ("etc/group", GROUP)):
            data = text.encode()
            info = _info(name, tarfile.REGTYPE, 0o644, mtime)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        for applet in applets:
            info = _info(applet, tarfile.SYMTYPE, 0o777, mtime)
            info.linkname = "/bin/busybox"
            tf.addfile(info)


def _applets(busybox: str | os.PathLike) -> list[str]:
    """Applet paths relative to / (e.g. "bin/ls"), as busybox itself lists them."""
    try:
        out = subprocess.run([os.fspath(busybox), "--list-full"], capture_output=True, text=True,
                             check=True).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        raise BusyboxMissing(f"cannot make the busybox image: {busybox} does not list its "
                             f"applets ({_reason(e)}): install busybox-static") from e
    names = {line.strip().lstrip("/") for line in out.splitlines() if line.strip()}
    names.discard("bin/busybox")
    parents_known = {n for n in names if os.path.dirname(n) in DIRECTORIES}
    return sorted(parents_known)


def _info(name: str, kind: bytes, mode: int, mtime: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.mtime = mtime
    return info


def _stat(busybox: str | os.PathLike) -> os.stat_result:
    try:
        return os.stat(busybox)
    except FileNotFoundError:
        raise BusyboxMissing(f"cannot make the busybox image: {busybox} not found: "
                             "install busybox-static") from None


def _reason(error: Exception) -> str:
    if isinstance(error, OSError):
        return error.strerror or str(error)
    return f"exit status {error.returncode}"
