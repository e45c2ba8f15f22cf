"""pdocker's container verbs: run, create, start, stop, restart, kill, rm, logs, wait, attach,
exec, cp, commit, diff, export.

``register(add)`` adds them to pdocker's parser (pkube/pdocker/parser.py); each handler is
``fn(rt, args) -> exit status`` and raises the library's errors or UsageError for bad input,
which pkube/pdocker/cli.py prints as one line.
"""

from __future__ import annotations

import sys

from pkube.pdocker import flags, terminal
from pkube.pdocker.cliargs import REMAINDER, Parser, UsageError
from pkube.runtime import process
from pkube.runtime.runtime import ContainerError, Runtime
from pkube.runtime.spec import ContainerSpec
from pkube.runtime.state import IllegalTransition


def register(add) -> None:
    """Add the container verbs through ``add(name, handler, help) -> subparser``."""
    p = add("run", cmd_run, "create and start a container", add_help=False)
    p.add_argument("-d", "--detach", action="store_true")
    add_create_flags(p)
    add_create_flags(add("create", cmd_create, "create a container", add_help=False))
    p = add("start", cmd_start, "start containers")
    p.add_argument("-a", "--attach", action="store_true")
    p.add_argument("-i", "--interactive", action="store_true")
    p.add_argument("containers", nargs="+")
    for name, fn in (("stop", cmd_stop), ("restart", cmd_restart)):
        p = add(name, fn, f"{name} containers")
        p.add_argument("-t", "--time", type=float, default=10)
        p.add_argument("containers", nargs="+")
    p = add("kill", cmd_kill, "send a signal to containers")
    p.add_argument("-s", "--signal", default="KILL")
    p.add_argument("containers", nargs="+")
    p = add("rm", cmd_rm, "remove containers")
    p.add_argument("-f", "--force", action="store_true")
    p.add_argument("containers", nargs="+")
    p = add("logs", cmd_logs, "show a container's output")
    p.add_argument("-f", "--follow", action="store_true")
    p.add_argument("-n", "--tail")
    p.add_argument("-t", "--timestamps", action="store_true")
    p.add_argument("--since")
    p.add_argument("container")
    p = add("wait", cmd_wait, "wait for containers to stop, print their exit codes")
    p.add_argument("containers", nargs="+")
    p = add("attach", cmd_attach, "attach to a running container's output (and input with -i)")
    p.add_argument("--no-stdin", action="store_true")
    p.add_argument("container")
    p = add("exec", cmd_exec, "run a command in a running container")
    for flag, dest in (("-i", "interactive"), ("-t", "tty"), ("-d", "detach")):
        p.add_argument(flag, action="store_true", dest=dest)
    p.add_argument("-e", "--env", action="append", default=[])
    p.add_argument("-w", "--workdir")
    p.add_argument("-u", "--user")
    p.add_argument("container")
    p.add_argument("command", nargs=REMAINDER)
    p = add("cp", cmd_cp, "copy files between a container and the host")
    p.add_argument("src")
    p.add_argument("dst")
    p = add("commit", cmd_commit, "make an image from a container")
    p.add_argument("-m", "--message")
    p.add_argument("container")
    p.add_argument("repository", nargs="?")
    p = add("diff", cmd_diff, "show a container's filesystem changes")
    p.add_argument("container")
    p = add("export", cmd_export, "tar a container's filesystem")
    p.add_argument("-o", "--output")
    p.add_argument("container")


def add_create_flags(p: Parser) -> None:
    """The flags run and create share (Docker's: -h is --hostname, so help is --help only)."""
    p.add_argument("--help", action="help", help="show this help (-h is --hostname, as in Docker)")
    p.add_argument("-i", "--interactive", action="store_true")
    p.add_argument("-t", "--tty", action="store_true")
    p.add_argument("--rm", action="store_true")
    p.add_argument("--name")
    p.add_argument("-h", "--hostname")
    p.add_argument("-p", "--publish", action="append", default=[])
    p.add_argument("-v", "--volume", action="append", default=[])
    p.add_argument("-e", "--env", action="append", default=[])
    p.add_argument("-w", "--workdir")
    p.add_argument("-u", "--user")
    p.add_argument("--entrypoint")
    p.add_argument("-m", "--memory")
    p.add_argument("--cpus", type=float)
    p.add_argument("--cpu-shares", "-c", type=int, dest="cpu_shares")
    p.add_argument("--pids-limit", type=int)
    p.add_argument("--network", "--net", default="bridge")
    p.add_argument("-l", "--label", action="append", default=[])
    p.add_argument("--cap-add", action="append", default=[])
    p.add_argument("--cap-drop", action="append", default=[])
    p.add_argument("--privileged", action="store_true")
    p.add_argument("--read-only", action="store_true", dest="read_only")
    p.add_argument("--security-opt", action="append", default=[], dest="security_opt",
                   help="seccomp=unconfined|default, no-new-privileges[=true|false]")
    p.add_argument("image")
    p.add_argument("command", nargs=REMAINDER)


# ----- building specs -----

def spec_from_args(args) -> ContainerSpec:
    """The ContainerSpec of run's and create's flags."""
    return ContainerSpec(
        image=args.image, command=args.command or None,
        entrypoint=[args.entrypoint] if args.entrypoint is not None else None,
        env=flags.environment(args.env), workdir=args.workdir, user=args.user, hostname=args.hostname,
        name=args.name, labels=flags.labels(args.label), tty=args.tty, stdin_open=args.interactive,
        mounts=[flags.volume(v) for v in args.volume], port_mappings=_ports(args.publish),
        network=args.network, resources=_resources(args), auto_remove=args.rm,
        cap_add=args.cap_add, cap_drop=args.cap_drop, privileged=args.privileged, read_only=args.read_only,
        **security_options(args.security_opt))


def security_options(items: list[str]) -> dict:
    """ContainerSpec fields of Docker's --security-opt values (seccomp=unconfined|default,
    no-new-privileges[=true|false], as `:` or `=`); UsageError for anything else."""
    options: dict = {}
    for item in items:
        key, sep, value = item.replace(":", "=", 1).partition("=")
        if key == "seccomp" and value in ("unconfined", "default"):
            options["seccomp"] = value
        elif key == "seccomp":
            raise UsageError(f"--security-opt {item}: only seccomp=unconfined and seccomp=default are "
                             "supported (no profile files)")
        elif key == "no-new-privileges" and value in ("", "true", "false"):
            options["no_new_privileges"] = value != "false"
        else:
            raise UsageError(f"--security-opt {item}: unsupported (seccomp=..., no-new-privileges)")
    return options


def _resources(args):
    if not (args.memory or args.cpus or args.pids_limit or args.cpu_shares):
        return None
    from pkube.runtime.cgroups import Resources
    kwargs = {"memory_bytes": flags.parse_bytes(args.memory) if args.memory else None,
              "pids_limit": args.pids_limit, "cpu_shares": args.cpu_shares}
    if args.cpus:
        return Resources.from_cpus(args.cpus, **kwargs)
    return Resources(**kwargs)


def _ports(items: list[str]) -> list:
    if not items:
        return []
    from pkube.runtime.network import PortMapping
    try:
        return [PortMapping.parse(p) for p in items]
    except ValueError as e:
        raise UsageError(str(e)) from None


# ----- verbs -----

def create_pulling(rt: Runtime, spec: ContainerSpec):
    """Docker's run/create: an image missing locally is pulled first."""
    from pkube.runtime.errors import ImageNotFound
    try:
        return rt.create(spec)
    except ImageNotFound:
        from pkube.runtime.registry import pull
        print(f"Unable to find image '{spec.image}' locally", file=sys.stderr)
        pull(rt.images, spec.image)
        return rt.create(spec)


def cmd_run(rt: Runtime, args) -> int:
    spec = spec_from_args(args)
    state = create_pulling(rt, spec)
    if args.detach:
        try:
            rt.start(state.id)
        finally:
            if args.rm and not rt.get(state.id).running:
                rt.remove(state.id, force=True)
        print(state.id)
        return 0
    try:
        attachment = rt.start(state.id, attach="a" if args.interactive else "o",
                              tty_size=terminal.terminal_size(args.tty))
    except process.StartError as e:
        code = rt.get(state.id).exit_code
        if args.rm:
            rt.remove(state.id, force=True)
        print(f"pdocker: error: {e}", file=sys.stderr)
        return code
    try:
        return terminal.attach_and_wait(rt, state.id, attachment, args.interactive, args.tty)
    finally:
        if args.rm:
            rt.remove(state.id, force=True)


def cmd_create(rt: Runtime, args) -> int:
    print(create_pulling(rt, spec_from_args(args)).id)
    return 0


def cmd_start(rt: Runtime, args) -> int:
    if args.attach:
        if len(args.containers) != 1:
            raise UsageError("you cannot start and attach multiple containers at once")
        state = rt.get(args.containers[0])
        tty, interactive = state.spec.get("tty"), args.interactive and state.spec.get("stdin_open")
        attachment = rt.start(state.id, attach="a" if interactive else "o",
                              tty_size=terminal.terminal_size(bool(tty)))
        return terminal.attach_and_wait(rt, state.id, attachment, bool(interactive), bool(tty))
    return each(args.containers, lambda c: rt.start(c))


def each(names: list[str], action) -> int:
    """Docker's multi-container verbs: act on each, print the name, report failures (one line
    each); 1 when any failed."""
    code = 0
    for name in names:
        try:
            action(name)
            print(name)
        except (ContainerError, IllegalTransition, process.StartError) as e:
            print(f"pdocker: error: {e}", file=sys.stderr)
            code = 1
    return code


def cmd_stop(rt, args) -> int:
    return each(args.containers, lambda c: rt.stop(c, args.time))


def cmd_restart(rt, args) -> int:
    return each(args.containers, lambda c: rt.restart(c, args.time))


def cmd_kill(rt, args) -> int:
    sig = flags.signal_number(args.signal)
    return each(args.containers, lambda c: rt.kill(c, sig))


def cmd_rm(rt, args) -> int:
    return each(args.containers, lambda c: rt.remove(c, force=args.force))


def cmd_logs(rt, args) -> int:
    since = flags.parse_since(args.since) if args.since else None
    tail = None if args.tail in (None, "all") else int(args.tail)
    for entry in rt.logs(args.container, follow=args.follow, tail=tail, since=since):
        stream = sys.stdout.buffer if entry.stream == "stdout" else sys.stderr.buffer
        stream.write(entry.render(args.timestamps))
        stream.flush()
    return 0


def cmd_wait(rt, args) -> int:
    for name in args.containers:
        print(rt.wait(name), flush=True)
    return 0


def cmd_attach(rt, args) -> int:
    state = rt.get(args.container)
    stdin = bool(state.spec.get("stdin_open")) and not args.no_stdin
    attachment = rt.attach(state.id, "a" if stdin else "o")
    return terminal.attach_and_wait(rt, state.id, attachment, stdin, bool(state.spec.get("tty")))


def cmd_exec(rt, args) -> int:
    if not args.command:
        raise UsageError("exec requires a container and a command")
    env = flags.environment(args.env)
    if args.detach:
        rt.exec(args.container, args.command, tty=args.tty, env=env, workdir=args.workdir,
                user=args.user, detach=True)
        return 0
    attachment = rt.exec(args.container, args.command, tty=args.tty, env=env, workdir=args.workdir,
                         user=args.user, interactive=True, tty_size=terminal.terminal_size(args.tty)).attachment
    code = terminal.relay(attachment, args.interactive, args.tty)
    attachment.close()
    return 255 if code is None else code


def split_cp(text: str) -> tuple[str | None, str]:
    """cp's CONTAINER:PATH, or (None, PATH) for a host path."""
    if ":" in text and not text.startswith(("/", ".")):
        name, _, path = text.partition(":")
        return name, path
    return None, text


def cmd_cp(rt, args) -> int:
    (src_c, src), (dst_c, dst) = split_cp(args.src), split_cp(args.dst)
    if (src_c is None) == (dst_c is None):
        raise UsageError("copying between containers or between host paths is not supported: "
                         "use CONTAINER:PATH on exactly one side")
    if src_c:
        rt.cp_out(src_c, src, dst)
    else:
        rt.cp_in(dst_c, src, dst)
    return 0


def cmd_commit(rt, args) -> int:
    image = rt.commit(args.container, args.repository, comment=args.message or "")
    print(image.id)
    return 0


def cmd_diff(rt, args) -> int:
    for kind, path in rt.diff(args.container):
        print(f"{kind} {path}")
    return 0


def cmd_export(rt, args) -> int:
    if args.output:
        with open(args.output, "wb") as f:
            rt.export(args.container, f)
    elif sys.stdout.isatty():
        raise UsageError("cowardly refusing to save to a terminal. Use the -o flag or redirect")
    else:
        rt.export(args.container, sys.stdout.buffer)
    return 0
