"""The runtime's C helpers, shim.c and pause.c: which executable runs, and building them.

They are compiled at install time (`make setup`, and the wheel's build step in setup.py) into
pkube/runtime/bin/ next to their sources, as `shim-<digest>` and `pause-<digest>`, where digest is
the first 16 hex digits of the source's sha256: the file name is the binary's version. At
start, `binaries(root_bin)` looks for the executable built from the source it ships with:
  1. pkube/runtime/bin/NAME-DIGEST (installed with the package),
  2. ROOT/bin/NAME-DIGEST (built by an earlier start, when the source had changed since the
     install, as it does in a checkout),
  3. else it compiles ROOT/bin/NAME-DIGEST when a C compiler is there, and otherwise raises
     BuildError naming the stale binaries it found: a binary built from another source is
     never used.

`python -m pkube.runtime.helpers [DIR]` builds both into DIR (default pkube/runtime/bin/).
"""

from __future__ import annotations

import os

from pkube.runtime.records import Record
from pkube.runtime.sha256 import sha256_hex

SOURCES = {"shim": "shim.c", "pause": "pause.c"}


class BuildError(Exception):
    """The C helpers could not be compiled (no compiler, or it failed)."""


class Binaries(Record):
    """The compiled helpers: shim and pause (paths, str)."""

    FIELDS = ("shim", "pause")
    FROZEN = True


def binaries(bin_dir: str | os.PathLike) -> Binaries:
    """The shim and pause executables built from this package's sources: the installed ones,
    else those under bin_dir, built there when missing. Raises BuildError."""
    return Binaries(shim=build_binary("shim", bin_dir), pause=build_binary("pause", bin_dir))


def build_binary(name: str, bin_dir: str | os.PathLike) -> str:
    """The executable of helper `name` built from this package's source (see the module's
    docstring for where it is looked for); compiled into bin_dir when there is none. Safe to
    call from parallel processes. Raises BuildError."""
    digest = source_digest(name)
    installed = os.path.join(installed_dir(), f"{name}-{digest}")
    if os.access(installed, os.X_OK):
        return installed
    target = os.path.join(os.fspath(bin_dir), f"{name}-{digest}")
    if os.path.exists(target):
        return target
    compiler = find_compiler()
    if compiler is None:
        raise BuildError(_no_compiler_message(name, digest))
    return compile_helper(name, os.fspath(bin_dir), compiler)


# Libraries a helper links with: the shim compiles the seccomp profile with libseccomp
# (libseccomp-dev at build time; statically linked when the static libraries are there).
LIBRARIES = {"shim": ("-lseccomp",)}


def installed_dir() -> str:
    """pkube/runtime/bin/: where the install put the helpers."""
    return os.path.join(_source_dir(), "bin")


def source_digest(name: str) -> str:
    """The version of helper `name`: 16 hex digits of its source's sha256."""
    with open(os.path.join(_source_dir(), SOURCES[name]), "rb") as f:
        return sha256_hex(f.read())[:16]


def find_compiler() -> str | None:
    """The C compiler on PATH (cc, gcc or clang), or None."""
    import shutil
    for name in ("cc", "gcc", "clang"):
        if path := shutil.which(name):
            return path
    return None


def compile_helper(name: str, bin_dir: str, compiler: str) -> str:
    """Compile helper `name` into bin_dir/NAME-DIGEST (statically when the static libc is
    there, else dynamically); its path. Raises BuildError with the compiler's message."""
    import subprocess   # only when compiling, once per source change
    source = os.path.join(_source_dir(), SOURCES[name])
    target = os.path.join(bin_dir, f"{name}-{source_digest(name)}")
    os.makedirs(bin_dir, exist_ok=True)
    tmp = os.path.join(bin_dir, f".{name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")   # parallel builders
    for flags in (["-static"], []):
        result = subprocess.run([compiler, "-O2", *flags, "-o", tmp, source, *LIBRARIES.get(name, ())],
                                capture_output=True, text=True)
        if result.returncode == 0:
            os.replace(tmp, target)
            return target
    raise BuildError(f"compile {source}: {result.stderr.strip()[-500:]}")


def install(bin_dir: str | None = None) -> Binaries:
    """Build both helpers into bin_dir (default pkube/runtime/bin/) unless already built there from
    these sources, and remove the stale ones. Raises BuildError (no compiler: this is the
    build step, which needs one)."""
    bin_dir = bin_dir or installed_dir()
    compiler = find_compiler()
    if compiler is None:
        raise BuildError("no C compiler (cc) found to build the runtime's shim and pause: install gcc and libc6-dev")
    built = Binaries(**{name: _current(name, bin_dir) or compile_helper(name, bin_dir, compiler)
                        for name in SOURCES})
    for stale in _stale(bin_dir, "shim") + _stale(bin_dir, "pause"):
        os.remove(os.path.join(bin_dir, stale))
    return built


def _current(name: str, bin_dir: str) -> str | None:
    """bin_dir/NAME-DIGEST when it was built from this source (its name says so), else None."""
    path = os.path.join(bin_dir, f"{name}-{source_digest(name)}")
    return path if os.access(path, os.X_OK) else None


def _stale(bin_dir: str, name: str) -> list[str]:
    """The files of bin_dir built from another version of helper `name`'s source."""
    current = f"{name}-{source_digest(name)}"
    try:
        entries = os.listdir(bin_dir)
    except FileNotFoundError:
        return []
    return sorted(e for e in entries if e.startswith(f"{name}-") and e != current)


def _no_compiler_message(name: str, digest: str) -> str:
    stale = _stale(installed_dir(), name)
    found = (f"pkube/runtime/bin/ holds {', '.join(stale)}, built from another version of {SOURCES[name]}"
             if stale else "none was installed in pkube/runtime/bin/")
    return (f"no {name} executable built from this runtime's {SOURCES[name]} (version {digest}): {found}, "
            f"and there is no C compiler to build it: reinstall pkube (make setup, or pip install of "
            f"a wheel), or install gcc and libc6-dev")


def _source_dir() -> str:
    return os.path.dirname(os.path.realpath(__file__))


if __name__ == "__main__":
    import sys
    if len(sys.argv) > 2 or sys.argv[1:2] and sys.argv[1].startswith("-"):
        sys.exit("usage: python -m pkube.runtime.helpers [DIR]   (builds shim and pause into DIR, default pkube/runtime/bin/)")
    try:
        helpers = install(sys.argv[1] if len(sys.argv) == 2 else None)
    except BuildError as e:
        sys.exit(f"runtime.helpers: {e}")
    print(f"runtime helpers: {helpers.shim} {helpers.pause}")
