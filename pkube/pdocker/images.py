"""pdocker's image verbs: images, rmi, tag, import, load, save, pull, push, build, history,
login, logout.

``register(add)`` adds them to pdocker's parser (pkube/pdocker/parser.py); each handler is
``fn(rt, args) -> exit status`` and raises ImageError subclasses for bad input, which
pkube/pdocker/cli.py prints as one line.
"""

from __future__ import annotations

import os
import sys

from pkube.pdocker.flags import key_values
from pkube.pdocker.output import ProgressBars, ago, decimal_size, table
from pkube.runtime import archive
from pkube.runtime.errors import ImageError
from pkube.runtime.imagestore import Image
from pkube.runtime.reference import normalize_ref, split_ref

NONE = "<none>"


def register(add) -> None:
    """Add the image verbs through ``add(name, handler, help) -> subparser``."""
    p = add("images", cmd_images, "list images")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("-a", "--all", action="store_true")
    p.add_argument("--no-trunc", action="store_true")
    p.add_argument("repository", nargs="?")
    p = add("rmi", cmd_rmi, "remove images")
    p.add_argument("-f", "--force", action="store_true")
    p.add_argument("images", nargs="+")
    p = add("tag", cmd_tag, "create a tag TARGET_IMAGE that refers to SOURCE_IMAGE")
    p.add_argument("source")
    p.add_argument("target")
    p = add("import", cmd_import, "import a rootfs tarball as an image")
    p.add_argument("-c", "--change", action="append", default=[])
    p.add_argument("-m", "--message", default="")
    p.add_argument("file")
    p.add_argument("repository", nargs="?")
    p = add("load", cmd_load, "load images from a tar archive (docker save or OCI layout)")
    p.add_argument("-i", "--input")
    p.add_argument("-q", "--quiet", action="store_true")
    p = add("save", cmd_save, "save images to a tar archive (docker save + OCI layout)")
    p.add_argument("-o", "--output")
    p.add_argument("images", nargs="+")
    for name, fn in (("pull", cmd_pull), ("push", cmd_push)):
        p = add(name, fn, f"{name} an image {'from' if name == 'pull' else 'to'} a registry")
        p.add_argument("-q", "--quiet", action="store_true")
        p.add_argument("name")
    p = add("build", cmd_build, "build an image from a Dockerfile")
    p.add_argument("-t", "--tag")
    p.add_argument("-f", "--file")
    p.add_argument("--build-arg", action="append", default=[])
    p.add_argument("--no-cache", action="store_true")
    p.add_argument("--target")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("context")
    p = add("login", cmd_login, "log in to a registry")
    p.add_argument("-u", "--username")
    p.add_argument("-p", "--password")
    p.add_argument("--password-stdin", action="store_true")
    p.add_argument("server", nargs="?", default="")
    p = add("logout", cmd_logout, "log out from a registry")
    p.add_argument("server", nargs="?", default="")
    p = add("history", cmd_history, "show the history of an image")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("--no-trunc", action="store_true")
    p.add_argument("image")


# ---------------------------------------------------------------------------------------------
# Handlers


def cmd_images(rt, args) -> int:
    images = rt.images.list(all=args.all)
    rows = []
    for image in images:
        for repo, tag in _repo_tags(image):
            if args.repository and not _repo_matches(repo, args.repository):
                continue
            rows.append([repo, tag, _id(image, args.no_trunc), ago(image.created),
                         decimal_size(image.size)])
    if args.quiet:
        for image_id in dict.fromkeys(r[2] for r in rows):
            print(image_id)
        return 0
    print(table([["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"]] + rows))
    return 0


def images_in_use(rt) -> set[str]:
    """The ids of the images some container uses, running or not: rmi and prune keep them."""
    return {getattr(state, "image_id", None) for state in rt.list(all=True)}


def cmd_rmi(rt, args) -> int:
    in_use = images_in_use(rt)
    failed = 0
    for ref in args.images:
        try:
            for line in rt.images.remove(ref, force=args.force, in_use=in_use):
                print(line)
        except ImageError as e:
            print(f"pdocker: error: {e}", file=sys.stderr)
            failed = 1
    return failed


def cmd_tag(rt, args) -> int:
    _image(rt, args.source)
    rt.images.tag(args.source, args.target)
    return 0


def cmd_import(rt, args) -> int:
    ref = normalize_ref(args.repository) if args.repository else None
    if args.file == "-":
        image = rt.images.import_tar(sys.stdin.buffer, ref, args.change, args.message)
    else:
        image = rt.images.import_tar(_existing(args.file), ref, args.change, args.message)
    print(image.id)
    return 0


def cmd_load(rt, args) -> int:
    say = (lambda line: None) if args.quiet else print
    if args.input:
        with open(_existing(args.input), "rb") as f:
            archive.load(rt.images, f, progress=say)
    elif sys.stdin.isatty():
        raise ImageError("requested load from stdin, but stdin is empty (use -i FILE)")
    else:
        archive.load(rt.images, sys.stdin.buffer, progress=say)
    return 0


def cmd_save(rt, args) -> int:
    for ref in args.images:
        _image(rt, ref)  # fail before writing anything
    if args.output:
        with open(args.output, "wb") as f:
            archive.save(rt.images, args.images, f)
    elif sys.stdout.isatty():
        raise ImageError("cowardly refusing to save to a terminal. Use the -o flag or redirect")
    else:
        archive.save(rt.images, args.images, sys.stdout.buffer)
    return 0


def cmd_pull(rt, args) -> int:
    from pkube.runtime.registry import RemoteRef, pull
    remote = RemoteRef.parse(args.name)
    bar = ProgressBars(sys.stdout, quiet=args.quiet)
    if not args.quiet:
        print(f"{remote.reference}: Pulling from {remote.repository}")
    image = pull(rt.images, args.name, progress=bar.update)
    bar.finish()
    if not args.quiet:
        print(f"Status: Downloaded image for {normalize_ref(args.name)} ({image.short_id})")
    print(normalize_ref(args.name))
    return 0


def cmd_push(rt, args) -> int:
    """Docker's output, ending ``TAG: digest: sha256:... size: N`` (N: the manifest's bytes)."""
    from pkube.runtime.registry import RegistryClient, RemoteRef, push
    remote = RemoteRef.parse(args.name)
    _image(rt, args.name)
    bar = ProgressBars(sys.stdout, quiet=args.quiet)
    if not args.quiet:
        print(f"The push refers to repository [{remote.registry}/{remote.repository}]")
    with RegistryClient() as client:
        digest = push(rt.images, args.name, progress=bar.update, client=client)
        size = _manifest_size(client, remote, digest)
    bar.finish()
    print(f"{remote.reference}: digest: {digest} size: {size}")
    return 0


def _manifest_size(client, remote, digest: str) -> int:
    """Bytes of the manifest the registry stores under ``digest`` (just pushed): the
    Content-Length of a HEAD, else the length of a GET's body. Raises RegistryError."""
    from pkube.runtime.registry import MANIFEST_ACCEPT, RegistryError
    url = f"{remote.base_url}/manifests/{digest}"

    def fetch(method: str):
        resp = client.request(method, url, remote, "pull,push", headers={"Accept": MANIFEST_ACCEPT})
        if resp.status_code != 200:
            raise RegistryError(f"{method} {url}: status {resp.status_code} after the push")
        return resp

    length = fetch("HEAD").headers.get("Content-Length", "")
    return int(length) if length.isdigit() else len(fetch("GET").content)


def cmd_build(rt, args) -> int:
    from pkube.runtime.build import build
    context = args.context
    dockerfile = args.file or None
    if dockerfile is not None and not os.path.isabs(dockerfile) and not os.path.exists(dockerfile):
        dockerfile = os.path.join(context, dockerfile)
    runner_factory = getattr(rt, "build_runner", None)
    image = build(rt.images, context, dockerfile, args.tag,
                  runner=runner_factory() if runner_factory else None,
                  build_args=_build_args(args.build_arg),
                  progress=(lambda line: None) if args.quiet else print,
                  no_cache=args.no_cache, target=args.target)
    if args.quiet:
        print(image.id)
    return 0


def cmd_login(rt, args) -> int:
    from pkube.runtime.registry import login
    password = args.password
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    if not args.username or password is None:
        raise ImageError("login needs -u USER and -p PASSWORD (or --password-stdin)")
    login(args.server, args.username, password)
    print("Login Succeeded")
    return 0


def cmd_logout(rt, args) -> int:
    from pkube.runtime.registry import logout
    server = args.server or "docker.io"
    if logout(args.server):
        print(f"Removing login credentials for {server}")
    else:
        print(f"Not logged in to {server}")
    return 0


def cmd_history(rt, args) -> int:
    image = _image(rt, args.image)
    rows = []
    layers = iter(reversed(image.diff_ids))
    sizes = {d: rt.images.layers.size(d) for d in image.diff_ids if rt.images.layers.exists(d)}
    for index, entry in enumerate(reversed(image.history)):
        size = 0 if entry.get("empty_layer") else sizes.get(next(layers, ""), 0)
        created_by = entry.get("created_by", "")
        if not args.no_trunc and len(created_by) > 45:
            created_by = created_by[:44] + "…"
        rows.append([_id(image, args.no_trunc) if index == 0 else NONE, ago(entry.get("created", "")),
                     created_by, decimal_size(size), entry.get("comment", "")])
    if args.quiet:
        print(_id(image, args.no_trunc))
        return 0
    print(table([["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"]] + rows))
    return 0


# ---------------------------------------------------------------------------------------------
# Formatting


def _repo_tags(image: Image) -> list[tuple[str, str]]:
    if not image.repo_tags:
        return [(NONE, NONE)]
    return [(split_ref(t)[0], split_ref(t)[1] or "latest") for t in image.repo_tags]


def _repo_matches(repo: str, wanted: str) -> bool:
    name, tag, _ = split_ref(wanted)
    return repo == name or repo == split_ref(normalize_ref(wanted))[0]


def _id(image: Image, no_trunc: bool) -> str:
    return image.id if no_trunc else image.short_id


def _image(rt, ref: str) -> Image:
    """The image ``ref`` names; busybox is made offline on first use, as ``run`` does."""
    finder = getattr(rt, "image", None)
    return finder(ref) if callable(finder) else rt.images.get(ref)


def _existing(path: str) -> str:
    """`path`, which must exist (ImageError otherwise)."""
    if not os.path.exists(path):
        raise ImageError(f"open {path}: no such file or directory")
    return path


def _build_args(pairs: list[str]) -> dict[str, str]:
    return key_values(pairs, lambda pair: ImageError(f"invalid --build-arg {pair!r}: expected KEY=value"))
