"""Container names: Docker's rule for a valid name, its generated adjective_noun names, and
claiming a name in a StateStore's names index."""

from __future__ import annotations

import os

from pkube.runtime.errors import Conflict

NAME_FIRST_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
NAME_CHARS = NAME_FIRST_CHARS | frozenset("_.-")
ADJECTIVES = ("brave", "calm", "eager", "fancy", "gentle", "happy", "jolly", "keen", "lucid",
              "merry", "nifty", "proud", "quirky", "sharp", "tender", "vivid", "witty", "zen")
NOUNS = ("turing", "hopper", "lovelace", "ritchie", "thompson", "torvalds", "knuth", "dijkstra",
         "lamport", "liskov", "hamilton", "kernighan", "pike", "mccarthy", "curie", "noether")


def valid_name(name: str) -> bool:
    """Docker's [a-zA-Z0-9][a-zA-Z0-9_.-]* (without `re`: `run --name` is on the start path)."""
    return bool(name) and name[0] in NAME_FIRST_CHARS and all(c in NAME_CHARS for c in name)


def claim_name(store, name: str | None, cid: str, what: str = "container name") -> str:
    """Called under the lock of `store` (a runtime.state.StateStore): `name`, or a generated
    one when None, reserved for `cid`; the name reserved. Raises Conflict when another
    container holds `name`."""
    if name is None:
        return generate_name(lambda candidate: store.reserve_name(candidate, cid))
    if not store.reserve_name(name, cid):
        raise Conflict(f'Conflict. The {what} "/{name}" is already in use')
    return name


def generate_name(reserve) -> str:
    """Docker-style adjective_noun (with a number when taken): the first name `reserve(name)`
    accepts (returns True for)."""
    while True:
        name = f"{_pick(ADJECTIVES)}_{_pick(NOUNS)}"
        if reserve(name):
            return name
        name += str(_pick(range(10000)))
        if reserve(name):
            return name


def _pick(choices):
    """A random element (os.urandom: importing `random` costs every pdocker command time)."""
    return choices[int.from_bytes(os.urandom(4), "big") % len(choices)]
