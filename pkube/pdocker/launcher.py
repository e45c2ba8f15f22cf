"""pdocker's launcher: the `pdocker` script that `make setup` installs in place of pip's
console script. A POSIX sh script that starts a bare interpreter (`python -I -S`) on pdocker,
first starting the kernel work a container start will wait for.

Why a bare interpreter: pip's console script starts Python with `site`, which reads the venv's
.pth files; the one of pkube's editable install loads setuptools' import finder, which imports
pathlib, re, importlib.util and more. That is 15-20 ms of every pdocker command before pdocker
runs. The launcher instead puts the project directory first on sys.path and the venv's
site-packages after the standard library (where `site` would put them), without processing .pth
files: nothing pdocker imports needs one. `-I` also keeps PYTHON* variables and the user's site
directory out, as a system tool should.

Why sh: a command that starts a process (run, start, restart, exec) moves it into its cgroups
(on cgroup v2 the shim creates it inside them instead, nothing is moved). A move, a write to
`cgroup.procs`, takes the kernel's `cgroup_threadgroup_rwsem` for writing. That per-CPU rwsem
keeps its readers (every fork and exit on the host) on a fast path, and a writer first switches
them off it: an RCU grace period, 5-20 ms here, which the writer sleeps through, holding
`cgroup_mutex` (so a cgroup mkdir waits too). The switch back comes one grace period after the
last writer left, and a move inside that window costs microseconds (measured here: 5-15 ms for
a move after 20 ms or more of quiet, 0.02 ms after 12 ms or less). runc pays the grace period
in the middle of its start. The script pays it before the interpreter starts (~10 ms): a
background subshell rewrites itself into the cgroup it is already in (a v1 hierarchy holding
one controller or a named one; a move that changes nothing), and by the time pdocker has
imported, parsed, created the container and its cgroups and spawned the shim, the grace period
is over and the container's move falls in the window. The subshell is forked twice, so that it
is nobody's zombie, with its stdio on /dev/null, so that no caller waits for it. The cost: dash
(~1.2 ms a command) and, for the starting verbs, two forks; the gain: 7-15 ms a `pdocker run`
(docs/runtime.md, "Where a pdocker run spends its time"). A thread that kept the window open by
rewriting every 4 ms until the container's move was measured too: slower (its GIL handoffs
cost the main thread more than the window saved).

It also ends the process with os._exit once the command is done and its output flushed:
tearing down an interpreter (module dicts, the GC's last collection) is several more
milliseconds nobody waits for. Only when no other non-daemon thread still runs, which a
normal exit would wait for.

`python -m pkube.pdocker.launcher PATH` writes the script at PATH (mode 755) for this
interpreter and this checkout; see docs/runtime.md, "Where a pdocker run spends its time".
"""

from __future__ import annotations

import gc
import os
import sys

MARKER = "# pdocker launcher, written by `python -m pkube.pdocker.launcher` (see pkube/pdocker/launcher.py)"

SCRIPT = """#!/bin/sh
{marker}
case " $* " in *" run "*|*" start "*|*" restart "*|*" exec "*)
    # pay the grace period of the coming cgroup move now, while Python starts (see launcher.py)
    [ -e /sys/fs/cgroup/cgroup.controllers ] || [ ! -r /proc/self/cgroup ] ||
    while IFS=: read -r _ controllers path; do
        case $controllers in ""|*,*) continue ;; name=*) controllers=${{controllers#name=}} ;; esac
        procs=/sys/fs/cgroup/$controllers$path/cgroup.procs
        if [ -w "$procs" ]; then ( (echo 0 >"$procs") </dev/null >/dev/null 2>&1 & ); break; fi
    done </proc/self/cgroup ;;
esac
exec '{python}' -I -S -c '{code}' "$@"
"""

CODE = ("import gc; gc.disable(); import sys; sys.path[:0] = [{project}]; sys.path += [{site}]; "
        "from pkube.pdocker.launcher import run; run()")

UNQUOTABLE = "'\"\\\n"


def script_text(python: str, project: str, site_packages: list[str]) -> str:
    """The launcher script for interpreter `python`, with `project` (the directory holding
    the pkube package) and `site_packages` on sys.path. Raises ValueError for a path the
    script cannot quote (one holding a quote, a backslash or a newline)."""
    for path in (python, project, *site_packages):
        if any(c in path for c in UNQUOTABLE):
            raise ValueError(f"path {path!r}: quotes, backslashes and newlines cannot be quoted in the launcher")
    code = CODE.format(project=f'"{project}"', site=", ".join(f'"{p}"' for p in site_packages))
    return SCRIPT.format(marker=MARKER, python=python, code=code)


def is_launcher(path: str) -> bool:
    """True when the file at `path` is a script this module wrote."""
    try:
        with open(path) as f:
            return f.read(200).splitlines()[1:2] == [MARKER]
    except (OSError, UnicodeDecodeError):
        return False


def install(path: str) -> None:
    """Write the launcher for this interpreter and checkout at `path` (replaced atomically)."""
    import site
    project = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    text = script_text(sys.executable, project, site.getsitepackages())
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.chmod(tmp, 0o755)
    os.replace(tmp, path)


def run() -> None:
    """Run pdocker's main with sys.argv and exit with its status (never returns). The
    script starts with the cyclic GC off: the imports allocate thousands of objects that
    live as long as the process, and the collections they set off cost ~1 ms a command;
    they are then frozen out of the GC's sight and collection goes back on for the command."""
    from pkube.pdocker.cli import main
    gc.freeze()
    gc.enable()
    try:
        code = main()
    except SystemExit as e:   # argparse's --help and its exit()
        code = e.code
    if code is None:
        code = 0
    elif not isinstance(code, int):   # sys.exit("message")
        print(code, file=sys.stderr)
        code = 1
    _exit(code)


def _exit(code: int) -> None:
    """Flush our output, then leave without the interpreter's teardown, unless a non-daemon
    thread is still running (a normal exit waits for it)."""
    threading = sys.modules.get("threading")
    if threading is not None and any(t.is_alive() and not t.daemon for t in threading.enumerate()
                                     if t is not threading.main_thread()):
        sys.exit(code)
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BrokenPipeError:   # `pdocker ps | head`: the reader left
        pass
    os._exit(code)


if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1].startswith("-"):
        sys.exit("usage: python -m pkube.pdocker.launcher PATH   (writes the pdocker launcher script at PATH)")
    install(sys.argv[1])
