"""The apiserver's authorization flags (``--authorization-mode``) and what they turn on."""

from __future__ import annotations

import argparse
from typing import Callable, Optional

from pkube.apiserver.auth.authorizer import Union, build
from pkube.apiserver.auth.noderestriction import NodeRestriction

MODES = ("Node", "RBAC")


def add_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--authorization-mode", default="",
                        help="comma-separated authorizers in order: Node, RBAC (pkube up: Node,RBAC); "
                             "empty: every authenticated request is allowed")


def modes(args: argparse.Namespace) -> tuple[str, ...]:
    """The modes asked for; SystemExit with one line for an unknown one."""
    asked = tuple(m.strip() for m in (args.authorization_mode or "").split(",") if m.strip())
    unknown = [m for m in asked if m not in MODES]
    if unknown:
        raise SystemExit(f"apiserver: --authorization-mode: unknown mode {unknown[0]!r} (supported: Node, RBAC)")
    return asked


def authorizer(args: argparse.Namespace) -> Optional[Callable[[object], Union]]:
    """create_app's ``authorizer``: a function(storage) building the chain; None without modes."""
    asked = modes(args)
    return (lambda storage: build(storage, asked)) if asked else None


def admission_plugins(args: argparse.Namespace) -> list:
    """NodeRestriction whenever the Node authorizer is on (as kube-apiserver is deployed)."""
    return [NodeRestriction()] if "Node" in modes(args) else []
