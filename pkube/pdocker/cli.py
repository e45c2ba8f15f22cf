"""pdocker's entry point: parse the command line, make the runtime, run the verb.

Errors are translated here, once: one line `pdocker: error: ...` on stderr and exit 125
(Docker's code for usage and daemon errors); `run` exits with the container's code, 126/127
when its command cannot be run.
"""

from __future__ import annotations

import os
import sys

from pkube.pdocker.cliargs import UsageError
from pkube.pdocker.parser import build_parser, requested_verb
from pkube.runtime import process
from pkube.runtime.errors import ContainerError, ImageError, LayerError
from pkube.runtime.runtime import Runtime
from pkube.runtime.spec import SpecError
from pkube.runtime.state import IllegalTransition

EXIT_USAGE = 125

# errors of the library's modules that bad input or a refused request raises, by module: a
# module not imported cannot have raised its error, so none is imported only to name it
LIBRARY_ERRORS = (("runtime.network", "NetworkError"), ("runtime.cgroups", "CgroupError"),
                  ("runtime.rootfs", "RootfsError"), ("runtime.dockerfile", "DockerfileError"),
                  ("runtime.ipam", "IpamError"), ("runtime.portmap", "FirewallError"),
                  ("runtime.netlink", "NetlinkError"))


def main(argv: list[str] | None = None) -> int:
    """Entry point of `pdocker`; returns the exit status."""
    argv = sys.argv[1:] if argv is None else argv
    try:
        args = build_parser(requested_verb(argv)).parse_args(argv)
        if getattr(args, "command", None) and args.command[:1] == ["--"]:
            args.command = args.command[1:]
        return args.func(open_runtime(args), args) or 0
    except BrokenPipeError:   # `pdocker ps | head`: the reader left, nothing to report
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        return 130
    except Exception as e:
        if not isinstance(e, user_errors()):
            raise
        message = e.strerror if isinstance(e, OSError) and e.strerror and not e.filename else str(e)
        print(f"pdocker: error: {message}", file=sys.stderr)
        return EXIT_USAGE


def user_errors() -> tuple[type[BaseException], ...]:
    """The exception types pdocker reports as one line (anything else is a bug: a traceback)."""
    errors: list[type[BaseException]] = [ContainerError, ImageError, LayerError, SpecError, IllegalTransition, UsageError,
                                         process.StartError, process.BuildError, OSError, ValueError,
                                         TimeoutError]
    for module, name in LIBRARY_ERRORS:
        if module in sys.modules:
            errors.append(getattr(sys.modules[module], name))
    return tuple(errors)


def open_runtime(args) -> Runtime:
    """The Runtime of the global options; its bridge network is made on first use."""
    return Runtime(args.root, network=LazyNetwork(args), cgroup_parent=args.cgroup_parent)


class LazyNetwork:
    """A BridgeNetwork made on first use, with the global --bridge/--subnet/--nft-table
    options: commands that attach no container to the bridge never import the network
    modules (netlink, nftables rules)."""

    def __init__(self, args):
        self.args = args
        self.net = None

    def __getattr__(self, name):
        if self.net is None:
            from pkube.runtime.network import BridgeNetwork
            a = self.args
            self.net = BridgeNetwork(os.path.join(a.root, "network"), bridge=a.bridge, subnet=a.subnet,
                                     nft_table=a.nft_table)
        return getattr(self.net, name)


if __name__ == "__main__":
    sys.exit(main())
