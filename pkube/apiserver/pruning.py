"""Dropping unknown fields, as Kubernetes does when fieldValidation is Warn or Ignore.

Paths are the validator's: ``spec.containers[0].bogus``. A path that no longer
resolves is ignored (nothing to drop).
"""

from __future__ import annotations

from typing import Iterable, Union

from pkube.api.schema_check import path_tokens


def drop_paths(obj: dict, paths: Iterable[str]) -> dict:
    """Remove each field named in ``paths`` from ``obj`` (in place); returns ``obj``."""
    for path in paths:
        tokens = path_tokens(path)
        if tokens:
            _drop(obj, tokens)
    return obj


def _drop(node, tokens: list[Union[str, int]]) -> None:
    for token in tokens[:-1]:
        node = _child(node, token)
        if node is None:
            return
    last = tokens[-1]
    if isinstance(node, dict) and isinstance(last, str):
        node.pop(last, None)


def _child(node, token):
    if isinstance(token, int):
        return node[token] if isinstance(node, list) and 0 <= token < len(node) else None
    return node.get(token) if isinstance(node, dict) else None
