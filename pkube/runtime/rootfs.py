"""A container's filesystem: its directories, its init layer and its overlay.

ROOT/containers/<id>/ holds `upper/` (the read-write layer), `work/` (overlay's workdir),
`init/` (the init layer: /etc/hosts, /etc/hostname, /etc/resolv.conf, a lowerdir above the
image's layers, never committed) and `merged/` (the mountpoint; the shim mounts the overlay
there inside the container's private mount namespace, so it vanishes with the container).
"""

from __future__ import annotations

import os

PAGE_LIMIT = 4000
HOST_RESOLV_CONF = "/etc/resolv.conf"


class RootfsError(Exception):
    """A rootfs operation failed or a path escapes the container."""


def make_dirs(cdir: str | os.PathLike) -> None:
    """Create a new container directory with upper, work, init/etc and merged (one mkdir
    each: metadata operations are what a start costs on a slow disk)."""
    cdir = os.fspath(cdir)
    os.mkdir(cdir)
    for name in ("upper", "work", "init", "init/etc", "merged"):
        os.mkdir(f"{cdir}/{name}")


def lower_dirs(cdir: str | os.PathLike, layer_dirs: list) -> list[str]:
    """Overlay lowerdirs, topmost first: the init layer, then the image's layers (which
    come lowest first; str or PathLike)."""
    return [os.path.join(cdir, "init")] + [os.fspath(d) for d in reversed(layer_dirs)]


def overlay_options(cdir: str | os.PathLike, layer_dirs: list) -> str:
    """The overlay mount data; raises RootfsError when it exceeds one page."""
    cdir = os.fspath(cdir)
    data = (f"lowerdir={':'.join(lower_dirs(cdir, layer_dirs))},"
            f"upperdir={os.path.join(cdir, 'upper')},workdir={os.path.join(cdir, 'work')}")
    if len(data) > PAGE_LIMIT:
        raise RootfsError(f"overlay options for {cdir} exceed one page ({len(data)} bytes): too many layers")
    return data


def host_resolv_conf(path: str | os.PathLike = HOST_RESOLV_CONF) -> str:
    """The host's resolv.conf without loopback nameservers (unreachable from a container);
    Google's resolver when none is left, like Docker."""
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except OSError:
        lines = []
    kept = [l for l in lines if not (l.startswith("nameserver") and l.split()[1:2]
                                     and l.split()[1].startswith(("127.", "::1")))]
    if not any(l.startswith("nameserver") for l in kept):
        kept += ["nameserver 8.8.8.8", "nameserver 8.8.4.4"]
    return "\n".join(kept) + "\n"


def write_init_layer(cdir: str | os.PathLike, hostname: str, ip: str | None) -> None:
    """(Re)write /etc/hosts, /etc/hostname and /etc/resolv.conf of the init layer; called
    before each start, while no overlay uses the layer."""
    etc = os.path.join(cdir, "init", "etc")
    hosts = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback",
             "fe00::0\tip6-localnet", "ff00::0\tip6-mcastprefix", "ff02::1\tip6-allnodes",
             "ff02::2\tip6-allrouters"]
    if ip:
        hosts.append(f"{ip}\t{hostname}")
    _write_if_changed(os.path.join(etc, "hosts"), "\n".join(hosts) + "\n")
    _write_if_changed(os.path.join(etc, "hostname"), hostname + "\n")
    _write_if_changed(os.path.join(etc, "resolv.conf"), host_resolv_conf())


def _write_if_changed(path: str, text: str) -> None:
    try:
        with open(path) as f:
            if f.read() == text:
                return
    except FileNotFoundError:
        pass
    with open(path, "w") as f:
        f.write(text)


def readonly_options(cdir: str | os.PathLike, layer_dirs: list) -> str:
    """Overlay data for a read-only view: the read-write layer as the top lowerdir (its
    whiteouts work there too), no upperdir, so it may be mounted while the container runs."""
    return "lowerdir=" + ":".join([os.path.join(cdir, "upper")] + lower_dirs(cdir, layer_dirs))


class mounted:
    """`with mounted(cdir, layer_dirs, writable) as root:` the container's merged rootfs,
    mounted on the host for the duration at a scratch mountpoint (`root`, a str).
    Read-only unless `writable`, which only a stopped container allows (its upperdir must
    not serve two overlays). Raises syscalls.SyscallError when the mount fails."""

    def __init__(self, cdir: str | os.PathLike, layer_dirs: list, writable: bool = False):
        self.cdir = os.fspath(cdir)
        self.layer_dirs = layer_dirs
        self.writable = writable
        self.target = os.path.join(self.cdir, f"mnt-{os.getpid()}")

    def __enter__(self) -> str:
        from pkube.runtime import syscalls   # ctypes: only loaded by the few commands that mount
        os.makedirs(self.target, exist_ok=True)
        if self.writable:
            data, flags = overlay_options(self.cdir, self.layer_dirs), 0
        else:
            data, flags = readonly_options(self.cdir, self.layer_dirs), syscalls.MS_RDONLY
        try:
            syscalls.mount("overlay", self.target, "overlay", flags, data)
        except BaseException:
            os.rmdir(self.target)
            raise
        return self.target

    def __exit__(self, *exc) -> None:
        from pkube.runtime import syscalls
        try:
            syscalls.umount2(self.target, syscalls.MNT_DETACH)
        finally:
            os.rmdir(self.target)


def remove_dir(cdir: str | os.PathLike) -> None:
    """Remove a container directory; refuses when something is still mounted under it."""
    cdir = os.fspath(cdir)
    with open("/proc/self/mountinfo") as f:
        prefix = cdir + "/"
        busy = [line.split()[4] for line in f if line.split()[4].startswith(prefix)]
    if busy:
        raise RootfsError(f"remove {cdir}: still mounted: {', '.join(busy)}")
    remove_tree(cdir)


def remove_file(path: str | os.PathLike) -> None:
    """Unlink `path`; a file already gone is fine (Path.unlink(missing_ok=True) without
    pathlib)."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def remove_tree(top: str | os.PathLike) -> None:
    """shutil.rmtree(top, ignore_errors=True), for the one tree every `run --rm` removes:
    importing shutil imports zlib, bz2 and lzma (2 ms). Like rmtree, it works on directory
    descriptors (os.fwalk) and never follows a symlink planted in the tree."""
    try:
        for _, dirs, files, dir_fd in os.fwalk(top, topdown=False):   # dir_fd: valid in the loop only
            for name in files:
                _ignore_oserror(os.unlink, name, dir_fd=dir_fd)
            for name in dirs:   # fwalk lists links to directories here too
                try:
                    os.rmdir(name, dir_fd=dir_fd)
                except NotADirectoryError:
                    _ignore_oserror(os.unlink, name, dir_fd=dir_fd)
                except OSError:
                    pass
    except OSError:   # `top` is gone (or was never there)
        pass
    _ignore_oserror(os.rmdir, top)


def _ignore_oserror(fn, *args, **kwargs) -> None:
    try:
        fn(*args, **kwargs)
    except OSError:
        pass


# ----- docker cp: archives made and unpacked inside a chroot of the container's root -----
#
# Resolving container paths from the host and copying there races with a container that
# swaps a directory for a symlink between the check and the copy. So, like Docker, the
# container side of a copy runs in a forked child chrooted into the container's root (the
# running process's /proc/<pid>/root, or the stopped container's overlay mounted on the
# host): whatever links the container plants, they resolve inside it. The host side is a
# tar stream through a pipe, unpacked with tarfile's "tar" filter (no absolute paths, no
# '..', no links leaving the destination).


def _child_run(root: str, work, fd: int, err_w: int) -> None:
    code = 0
    try:
        import tarfile   # before the chroot: modules are not found inside the container
        # No user/group names: looking them up inside the chroot would load the
        # container's NSS libraries into this process (Docker's CVE-2019-14271).
        tarfile.pwd = tarfile.grp = None
        os.chroot(root)
        os.chdir("/")
        work(fd)
    except BaseException as e:   # reported to the parent through err_w
        os.write(err_w, str(e).encode()[:1000] or type(e).__name__.encode())
        code = 1
    finally:
        os._exit(code)


def _fork_in_root(root: str, work, child_end: int, parent_end: int) -> tuple[int, int]:
    """Start work(child_end) in a child chrooted at `root`; (pid, error pipe read end)."""
    err_r, err_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(parent_end)
        os.close(err_r)
        _child_run(root, work, child_end, err_w)
    os.close(child_end)
    os.close(err_w)
    return pid, err_r


def _reap(pid: int, err_r: int, what: str) -> None:
    with os.fdopen(err_r, "rb") as f:
        message = f.read().decode(errors="replace")
    _, status = os.waitpid(pid, 0)
    if status != 0:
        raise RootfsError(f"{what}: {message or 'failed'}")


def _renamed(tar, new_top: str):
    """The members of a streamed tar with their first path component replaced."""
    for member in tar:
        parts = member.name.split("/", 1)
        member.name = new_top + ("/" + parts[1] if len(parts) > 1 else "")
        if member.islnk():
            link = member.linkname.split("/", 1)
            member.linkname = new_top + ("/" + link[1] if len(link) > 1 else "")
        yield member


def _unpack(fileobj, dst: str, default_name: str) -> None:
    """Unpack a one-entry-tree tar at `dst` (docker cp rules: into `dst` when it is an
    existing directory, else as `dst`)."""
    import tarfile
    if os.path.isdir(dst):
        dest_dir, name = dst, default_name
    else:
        dest_dir, name = os.path.dirname(dst) or ".", os.path.basename(dst)
        if not os.path.isdir(dest_dir):
            raise RootfsError(f"no such directory: {dest_dir}")
    with tarfile.open(fileobj=fileobj, mode="r|") as tar:
        for member in _renamed(tar, name):
            tar.extract(member, dest_dir, numeric_owner=True, filter="tar")


def _pack(path: str, fileobj) -> None:
    import tarfile
    if not os.path.lexists(path):
        raise RootfsError(f"no such file or directory: {path}")
    with tarfile.open(fileobj=fileobj, mode="w|") as tar:
        tar.add(path, arcname=os.path.basename(path.rstrip("/")) or "root")


def copy_in(root: str | os.PathLike, src: str | os.PathLike, dst: str) -> None:
    """Copy host path `src` to container path `dst` (inside `root`)."""
    root, src = os.fspath(root), os.fspath(src)
    if not os.path.lexists(src):
        raise RootfsError(f"no such file or directory: {src}")
    r, w = os.pipe()

    def unpack(fd: int) -> None:
        with os.fdopen(fd, "rb") as f:
            _unpack(f, dst, os.path.basename(os.path.normpath(src)))

    pid, err_r = _fork_in_root(root, unpack, r, w)
    try:
        with os.fdopen(w, "wb") as f:
            _pack(src, f)
    except BrokenPipeError:
        pass   # the child failed: its message follows
    _reap(pid, err_r, f"copy {src} to {dst}")


def copy_out(root: str | os.PathLike, src: str, dst: str | os.PathLike) -> None:
    """Copy container path `src` (inside `root`) to host path `dst`."""
    root, dst = os.fspath(root), os.fspath(dst)
    r, w = os.pipe()

    def pack(fd: int) -> None:
        with os.fdopen(fd, "wb") as f:
            _pack(src, f)

    pid, err_r = _fork_in_root(root, pack, w, r)
    try:
        with os.fdopen(r, "rb") as f:
            _unpack(f, dst, os.path.basename(src.rstrip("/")) or "root")
    except Exception:
        _reap(pid, err_r, f"copy {src} to {dst}")
        raise
    _reap(pid, err_r, f"copy {src} to {dst}")


def tar_tree(root: str | os.PathLike, fileobj) -> None:
    """A tar of the filesystem at `root` without crossing into other filesystems (like
    `tar --one-file-system`): mountpoints such as /proc, /sys, /dev and volumes appear as
    empty directories. Symlinks are stored, never followed."""
    import tarfile
    device = os.stat(root).st_dev   # stat: /proc/PID/root is a link to follow
    with tarfile.open(fileobj=fileobj, mode="w|") as tar:
        for dirpath, dirnames, filenames in os.walk(root):
            rel = os.path.relpath(dirpath, root)
            for name in sorted(dirnames) + sorted(filenames):
                full = os.path.join(dirpath, name)
                arcname = name if rel == "." else f"{rel}/{name}"
                tar.add(full, arcname=arcname, recursive=False)
            dirnames[:] = [d for d in sorted(dirnames)
                           if os.lstat(os.path.join(dirpath, d)).st_dev == device]
