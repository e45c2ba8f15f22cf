"""pkube's build: everything is in pyproject.toml but this step, which compiles the runtime's C
helpers (pkube/runtime/shim.c, pkube/runtime/pause.c) into the wheel's pkube/runtime/bin/, so that an install
needs no compiler (pkube/runtime/helpers.py says how the installed binaries are found and checked)."""

import os
import sys

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.dist import Distribution


class BuildPyWithHelpers(build_py):
    """build_py, then the helpers compiled into the build's pkube/runtime/bin/ (not for an editable
    install: `make setup` builds them in the checkout's pkube/runtime/bin/)."""

    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            return
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        from pkube.runtime.helpers import install
        install(os.path.join(self.build_lib, "pkube", "runtime", "bin"))


class PlatformDistribution(Distribution):
    """The wheel holds executables for this machine's architecture: a platform wheel."""

    def has_ext_modules(self):
        return True


setup(cmdclass={"build_py": BuildPyWithHelpers}, distclass=PlatformDistribution)
