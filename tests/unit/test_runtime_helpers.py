"""Which shim and pause executables run (pkube/runtime/helpers.py): the installed ones built from this
source, else ROOT/bin's, else compiled; a stale one without a compiler is a clear error."""

from __future__ import annotations

import os

import pytest

from pkube.runtime import helpers


def executable(path) -> str:
    path.write_bytes(b"#!/bin/sh\n")
    path.chmod(0o755)
    return str(path)


@pytest.fixture
def installed(tmp_path, monkeypatch):
    """pkube/runtime/bin/ moved to a temp dir; no compiler on PATH."""
    directory = tmp_path / "installed"
    directory.mkdir()
    monkeypatch.setattr(helpers, "installed_dir", lambda: str(directory))
    monkeypatch.setattr(helpers, "find_compiler", lambda: None)
    return directory


def test_the_installed_helper_of_this_source_is_used(installed, tmp_path):
    shim = executable(installed / f"shim-{helpers.source_digest('shim')}")
    assert helpers.build_binary("shim", tmp_path / "root-bin") == shim


def test_one_built_under_the_root_is_used_next(installed, tmp_path):
    (tmp_path / "root-bin").mkdir()
    built = executable(tmp_path / "root-bin" / f"shim-{helpers.source_digest('shim')}")
    assert helpers.build_binary("shim", tmp_path / "root-bin") == built


def test_a_stale_helper_without_a_compiler_is_refused_naming_it(installed, tmp_path):
    executable(installed / "shim-0000000000000000")
    with pytest.raises(helpers.BuildError) as info:
        helpers.build_binary("shim", tmp_path / "root-bin")
    message = str(info.value)
    assert "shim-0000000000000000, built from another version of shim.c" in message
    assert "no C compiler" in message and "\n" not in message
    assert not os.path.exists(tmp_path / "root-bin")


def test_the_install_step_needs_a_compiler(installed):
    with pytest.raises(helpers.BuildError, match="no C compiler"):
        helpers.install()
