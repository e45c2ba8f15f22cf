"""pdocker's command-line parser: the global options and the verbs of pkube/pdocker/containers.py,
pkube/pdocker/reports.py, pkube/pdocker/images.py and pkube/pdocker/management.py.

Only the verb on the command line gets a parser, and the verb modules are imported in turn
until one registers it: a `pdocker run` neither records every verb's options nor imports the
image verbs (docs/runtime.md §11.1). An unknown verb, or none, gets the full parser, so that
help and errors list every verb.
"""

from __future__ import annotations

import os

from pkube.pdocker.cliargs import Parser
from pkube.runtime.runtime import DEFAULT_ROOT

GLOBAL_OPTIONS_WITH_VALUE = ("--root", "--bridge", "--subnet", "--nft-table", "--cgroup-parent")


def requested_verb(argv: list[str]) -> str | None:
    """The verb of a command line (the first word after the global options), or None."""
    i = 0
    while i < len(argv):
        word = argv[i]
        if word in GLOBAL_OPTIONS_WITH_VALUE:
            i += 2
        elif word.startswith("-"):
            i += 1
        else:
            return word
    return None


def build_parser(verb: str | None = None) -> Parser:
    """pdocker's parser; with `verb`, only that verb's subparser is built (the full parser
    when no module registers `verb`)."""
    parser = Parser(prog="pdocker", description="A Docker-like CLI for the pkube runtime.")
    add_global_options(parser)
    subparsers = parser.add_subparsers(dest="verb", required=True)
    only = _OnlyVerb(subparsers, verb) if verb is not None else None

    def add(name, fn, help_text, **kwargs):
        target = only if only is not None else subparsers
        p = target.add_parser(name, help=help_text, **kwargs)
        p.set_defaults(func=fn)
        return p

    for module in _verb_modules():
        module.register(add)
        if only is not None and only.found:
            return parser
    return parser if only is None else build_parser()


def add_global_options(parser: Parser) -> None:
    """The options before the verb; each defaults to a PDOCKER_* environment variable."""
    parser.add_argument("--root", default=os.environ.get("PDOCKER_ROOT", os.fspath(DEFAULT_ROOT)),
                        help="state directory (default %(default)s)")
    parser.add_argument("--bridge", default=os.environ.get("PDOCKER_BRIDGE", "pkube0"),
                        help="bridge of the bridge network (default %(default)s)")
    parser.add_argument("--subnet", default=os.environ.get("PDOCKER_SUBNET", "10.88.0.0/16"))
    parser.add_argument("--nft-table", default=os.environ.get("PDOCKER_NFT_TABLE", "pkube"))
    parser.add_argument("--cgroup-parent", default=os.environ.get("PDOCKER_CGROUP_PARENT", "pkube"))


def _verb_modules():
    """The modules of pdocker's verbs, each imported when the parser gets to it: the most
    used first."""
    from pkube.pdocker import containers
    yield containers
    from pkube.pdocker import reports
    yield reports
    from pkube.pdocker import images
    yield images
    from pkube.pdocker import management
    yield management


class _Skipped:
    """Stands in for the parser of a verb not on the command line: recording every verb's
    options is work no command needs."""

    def add_argument(self, *args, **kwargs):
        return None

    def set_defaults(self, **kwargs):
        return None

    def add_subparsers(self, **kwargs):
        return self

    def add_parser(self, name, **kwargs):
        return self


class _OnlyVerb:
    """Wraps the parser's subparsers so that only `verb` gets a real parser; `found` once it
    has."""

    def __init__(self, subparsers, verb: str):
        self.subparsers, self.verb, self.found = subparsers, verb, False

    def add_parser(self, name, **kwargs):
        if name != self.verb:
            return _Skipped()
        self.found = True
        return self.subparsers.add_parser(name, **kwargs)
