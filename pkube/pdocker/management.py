"""pdocker's management verbs: `container prune`, `image prune`, `network ls`, `network prune`
and `system prune`.

A prune asks for confirmation (a y/N line on the terminal) unless -f; without -f and without a
terminal on stdin it refuses (UsageError) rather than wait for an answer nobody can give. It
prints Docker's report: a "Deleted ...:" section per kind, then "Total reclaimed space".
``register(add)`` adds the verbs to pdocker's parser (pkube/pdocker/parser.py); each handler is
``fn(rt, args) -> exit status``.
"""

from __future__ import annotations

import os
import sys

from pkube.pdocker.cliargs import UsageError
from pkube.pdocker.output import decimal_size, table

CONTAINERS = "all stopped containers"
NETWORKS = "the bridge network if no container uses it"
DANGLING_IMAGES = "all dangling images"
UNUSED_IMAGES = "all images without at least one container associated to them"


def register(add) -> None:
    """Add the management verbs through ``add(name, handler, help) -> subparser``; each verb's
    subcommand sets the handler (a verb without one is argparse's usage error)."""
    container = _group(add, "container", "manage containers")
    _prune_parser(container, cmd_container_prune, "remove all stopped containers")
    image = _group(add, "image", "manage images")
    _prune_parser(image, cmd_image_prune, "remove unused images").add_argument(
        "-a", "--all", action="store_true", help="every image no container uses, not only dangling ones")
    network = _group(add, "network", "manage networks")
    p = network.add_parser("ls", help="list networks")
    p.set_defaults(func=cmd_network_ls)
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("--no-trunc", action="store_true")
    _prune_parser(network, cmd_network_prune, "remove the bridge network when no container uses it")
    system = _group(add, "system", "manage pdocker's data")
    _prune_parser(system, cmd_system_prune, "remove stopped containers, the unused network and images").add_argument(
        "-a", "--all", action="store_true", help="every image no container uses, not only dangling ones")


def _group(add, name: str, help_text: str):
    """The subcommands of verb `name` (`pdocker network ls`)."""
    return add(name, None, help_text).add_subparsers(dest="subcommand", required=True)


def _prune_parser(group, handler, help_text: str):
    p = group.add_parser("prune", help=help_text)
    p.set_defaults(func=handler)
    p.add_argument("-f", "--force", action="store_true", help="do not ask for confirmation")
    return p


# ----- verbs -----

def cmd_container_prune(rt, args) -> int:
    return prune(rt, args, [CONTAINERS], [prune_containers])


def cmd_image_prune(rt, args) -> int:
    return prune(rt, args, [UNUSED_IMAGES if args.all else DANGLING_IMAGES],
                 [lambda rt: prune_images(rt, args.all)])


def cmd_network_prune(rt, args) -> int:
    return prune(rt, args, [NETWORKS], [prune_network], total=False)


def cmd_system_prune(rt, args) -> int:
    """Docker's order: containers first (they free the network and the images), then the
    network, then the images."""
    return prune(rt, args, [CONTAINERS, NETWORKS, UNUSED_IMAGES if args.all else DANGLING_IMAGES],
                 [prune_containers, prune_network, lambda rt: prune_images(rt, args.all)])


def cmd_network_ls(rt, args) -> int:
    """Docker's table of networks: the bridge network when it is set up, host and none."""
    from pkube.runtime.sha256 import sha256_hex
    net = rt.bridge_network
    networks = ([("bridge", "bridge", f"bridge {net.bridge} {net.subnet}")] if net.exists() else []) + \
        [("host", "host", "host"), ("none", "null", "none")]
    rows = [[sha256_hex(key.encode())[:None if args.no_trunc else 12], name, driver, "local"]
            for name, driver, key in networks]
    if args.quiet:
        print("\n".join(row[0] for row in rows))
        return 0
    print(table([["NETWORK ID", "NAME", "DRIVER", "SCOPE"]] + rows))
    return 0


# ----- pruning -----

def prune(rt, args, items: list[str], pruners: list, total: bool = True) -> int:
    """Confirm (unless -f), then run each of `pruners` (``fn(rt) -> (lines, bytes)``) in turn
    and print their sections, then the bytes freed when `total`. 1 when the user declines."""
    if not confirmed(args.force, items, f"{args.verb} prune"):
        print(f"{args.verb} prune has been cancelled", file=sys.stderr)
        return 1
    reclaimed = 0
    for pruner in pruners:
        lines, freed = pruner(rt)
        if lines:
            print("\n".join(lines) + "\n", flush=True)
        reclaimed += freed
    if total:
        print(f"Total reclaimed space: {decimal_size(reclaimed)}")
    return 0


def confirmed(force: bool, items: list[str], what: str) -> bool:
    """True with -f, else Docker's question on stdout and whether the user answers y. Raises
    UsageError when stdin is not a terminal (nobody to answer: a script must pass -f)."""
    if force:
        return True
    if not sys.stdin.isatty():
        raise UsageError(f"{what} asks for confirmation and stdin is not a terminal: use -f to prune without asking")
    if len(items) == 1:
        warning = f"WARNING! This will remove {items[0]}.\n"
    else:
        warning = "WARNING! This will remove:\n" + "".join(f"  - {item}\n" for item in items) + "\n"
    print(warning + "Are you sure you want to continue? [y/N] ", end="", flush=True)
    return sys.stdin.readline().strip().lower() in ("y", "yes")


def prune_containers(rt) -> tuple[list[str], int]:
    """Remove every container that does not run (exited, or created and never started); one
    started or removed meanwhile is left alone. Returns Docker's "Deleted Containers:" section
    and the bytes of their writable layers."""
    from pkube.runtime.errors import ContainerError
    deleted, freed = [], 0
    for state in rt.list(all=True):
        if state.running:
            continue
        size = tree_bytes(os.path.join(rt.store.dir(state.id), "upper"))
        try:
            rt.remove(state.id)
        except ContainerError:   # started (Conflict) or removed (NoSuchContainer) meanwhile
            continue
        deleted.append(state.id)
        freed += size
    return (["Deleted Containers:"] + deleted if deleted else []), freed


def prune_images(rt, unused: bool) -> tuple[list[str], int]:
    """Remove the dangling images (no tag; digest references go with them), or with `unused`
    every image, untagging each tag in turn; images containers use stay. Returns Docker's
    "Deleted Images:" section and the bytes of the layers deleted."""
    from pkube.pdocker.images import images_in_use
    in_use = images_in_use(rt)
    doomed = [i for i in rt.images.list() if i.id not in in_use and (unused or not i.repo_tags)]
    layers = rt.images.layers
    sizes = {d: layers.size(d) for image in doomed for d in image.diff_ids if layers.exists(d)}
    lines = [line for image in doomed for line in _remove_image(rt, image, in_use)]
    freed = sum(sizes.get(line.partition(": ")[2], 0) for line in lines if line.startswith("Deleted: "))
    return (["Deleted Images:"] + [line[0].lower() + line[1:] for line in lines] if lines else []), freed


def _remove_image(rt, image, in_use: set[str]) -> list[str]:
    """rmi of each of the image's tags (of its id when it has none); rmi's lines. An image
    tagged, used or removed meanwhile keeps what is left."""
    from pkube.runtime.errors import ImageError
    lines = []
    for ref in image.repo_tags or [image.id]:
        try:
            lines += rt.images.remove(ref, in_use=in_use)
        except ImageError:
            break
    return lines


def prune_network(rt) -> tuple[list[str], int]:
    """Tear down the bridge network (bridge, veths, firewall table, state) when no container
    uses it; when some do, one line naming them, and it stays. Returns Docker's "Deleted
    Networks:" section (or that line) and 0 bytes."""
    net = rt.bridge_network
    users = bridge_users(rt, net)
    if users:
        return [f"Kept network bridge ({net.bridge}): in use by {', '.join(users)}"], 0
    if not net.exists():
        return [], 0
    net.teardown()
    return ["Deleted Networks:", "bridge"], 0


def bridge_users(rt, net) -> list[str]:
    """The names of the containers and sandboxes on the bridge network, running or to be when
    started, then the short keys of any other attachment the network records."""
    states = rt.list(all=True) + rt.list(all=True, kind="sandbox")
    names = {s.id: s.name for s in states
             if s.spec.get("network", "bridge") == "bridge" and not s.spec.get("sandbox_id")}
    return list(names.values()) + [key[:12] for key in net.endpoints() if key not in names]


def tree_bytes(path: str) -> int:
    """The bytes of the files under `path` (0 when it is gone): Docker's SizeRw for an upper
    directory."""
    total = 0
    for top, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(top, name)).st_size
            except OSError:   # removed meanwhile
                pass
    return total
