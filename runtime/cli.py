"""pdocker: Docker's verbs, flags and output on top of runtime.Runtime.

Errors are translated here, once: one line `pdocker: error: ...` on stderr and exit 125
(Docker's code for usage and daemon errors); `run` exits with the container's code, 126/127
when its command cannot be run.
"""

from __future__ import annotations

import _signal
import os
import select
import sys
import time

from runtime import jsonlite, process
from runtime.cliargs import REMAINDER, Parser, UsageError
from runtime.runtime import DEFAULT_ROOT, ContainerError, Runtime
from runtime.spec import ContainerSpec, Mount, SpecError
from runtime.state import IllegalTransition, ZERO_TIME

VERSION = "0.1.0"
API_VERSION = "1.43"
EXIT_USAGE = 125


# ----- helpers -----

def parse_bytes(text: str) -> int:
    """Docker's memory sizes: 512, 512k, 64m, 1g (binary units)."""
    units = {"b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    t = text.strip().lower()
    if t and t[-1] == "b" and len(t) > 1 and t[-2] in units:
        t = t[:-1]
    mult = units.get(t[-1:], None)
    number = t[:-1] if mult else t
    try:
        value = int(float(number) * (mult or 1))
    except ValueError:
        raise UsageError(f"invalid size: {text!r}") from None
    if value <= 0:
        raise UsageError(f"invalid size: {text!r}")
    return value


def human_size(n: float) -> str:
    """Binary units, 4 significant digits: 512B, 1.5KiB, 64MiB."""
    return _scaled_size(n, 1024, ("B", "KiB", "MiB", "GiB"), 4)


def _scaled_size(n: float, base: int, units: tuple[str, ...], digits: int) -> str:
    """``n`` bytes in the first of ``units`` (each ``base`` times the last) under ``base``, or
    the last; bytes as a whole number, others to ``digits`` significant digits."""
    for unit in units[:-1]:
        if n < base:
            break
        n /= base
    else:
        unit = units[-1]
    return f"{int(n)}B" if unit == "B" else f"{n:.{digits}g}{unit}"


def human_duration(seconds: float) -> str:
    """Docker's units.HumanDuration."""
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    if s == 1:
        return "1 second"
    if s < 60:
        return f"{s} seconds"
    minutes = s // 60
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = round(s / 3600)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{hours // 24 // 365} years"


def parse_time(stamp: str) -> float:
    """runtime.logs.parse_time, imported only by the commands that show times."""
    from runtime.logs import parse_time as parse
    return parse(stamp)


def ago(stamp: str) -> str:
    return human_duration(time.time() - parse_time(stamp)) + " ago"


def status_text(state) -> str:
    if state.running:
        return "Up " + human_duration(time.time() - parse_time(state.started_at))
    if state.started_at == ZERO_TIME and not state.error:
        return "Created"
    return f"Exited ({state.exit_code}) {ago(state.finished_at)}"


def ports_text(state) -> str:
    return ", ".join(f"{p.get('host_ip') or '0.0.0.0'}:{p['host_port']}->{p['container_port']}/{p.get('protocol', 'tcp')}"
                     for p in state.spec.get("port_mappings") or [])


def table(rows: list[list[str]]) -> str:
    """Docker's tabwriter layout: columns padded to the widest cell plus 3 spaces."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("".join(c.ljust(w + 3) if i < len(r) - 1 else c
                             for i, (c, w) in enumerate(zip(r, widths))).rstrip() for r in rows)


def command_text(argv: list[str]) -> str:
    text = " ".join(argv)
    return jsonlite.dumps(text if len(text) <= 20 else text[:19] + "…")


# ----- building specs -----

def _env(items: list[str]) -> dict[str, str]:
    return key_values(items, lambda item: UsageError(f"invalid environment variable: {item!r}"))


def key_values(items: list[str], invalid) -> dict[str, str]:
    """Docker's KEY=value lists (``-e``, ``--build-arg``): a bare KEY takes its value from this
    process's environment and is left out when unset there; an item without a key raises
    ``invalid(item)``."""
    result = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not key:
            raise invalid(item)
        if not sep:
            if key not in os.environ:
                continue
            value = os.environ[key]
        result[key] = value
    return result


def _labels(items: list[str]) -> dict[str, str]:
    return {k: v for k, _, v in (i.partition("=") for i in items)}


def _volume(text: str) -> Mount:
    parts = text.split(":")
    if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] not in ("ro", "rw")):
        raise UsageError(f"invalid volume specification: {text!r} (want HOST:DIR[:ro])")
    if not parts[0].startswith("/"):
        raise UsageError(f"invalid volume {text!r}: only absolute host paths are supported")
    if not os.path.exists(parts[0]):
        os.makedirs(parts[0], exist_ok=True)
    return Mount(parts[0], parts[1], len(parts) == 3 and parts[2] == "ro")


def _resources(args):
    if not (args.memory or args.cpus or args.pids_limit or args.cpu_shares):
        return None
    from runtime.cgroups import Resources
    kwargs = {"memory_bytes": parse_bytes(args.memory) if args.memory else None,
              "pids_limit": args.pids_limit, "cpu_shares": args.cpu_shares}
    if args.cpus:
        return Resources.from_cpus(args.cpus, **kwargs)
    return Resources(**kwargs)


def _ports(items: list[str]) -> list:
    if not items:
        return []
    from runtime.network import PortMapping
    try:
        return [PortMapping.parse(p) for p in items]
    except ValueError as e:
        raise UsageError(str(e)) from None


def spec_from_args(args) -> ContainerSpec:
    return ContainerSpec(
        image=args.image, command=args.command or None,
        entrypoint=[args.entrypoint] if args.entrypoint is not None else None,
        env=_env(args.env), workdir=args.workdir, user=args.user, hostname=args.hostname,
        name=args.name, labels=_labels(args.label), tty=args.tty, stdin_open=args.interactive,
        mounts=[_volume(v) for v in args.volume], port_mappings=_ports(args.publish),
        network=args.network, resources=_resources(args), auto_remove=args.rm)


def add_create_flags(p: Parser) -> None:
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
    p.add_argument("image")
    p.add_argument("command", nargs=REMAINDER)


# ----- attaching -----

def terminal_size(tty: bool) -> tuple[int, int] | None:
    """(rows, cols) of our terminal for a container's pty, or None."""
    if not tty or not sys.stdout.isatty():
        return None
    size = os.get_terminal_size(sys.stdout.fileno())
    return size.lines, size.columns


class RawTerminal:
    """Puts the local terminal in raw mode for -it, restoring it on exit."""

    def __init__(self, enabled: bool):
        self.enabled = enabled and sys.stdin.isatty()
        self.saved = None

    def __enter__(self):
        if self.enabled:
            import termios
            import tty
            self.saved = termios.tcgetattr(sys.stdin.fileno())
            tty.setraw(sys.stdin.fileno())
        return self

    def __exit__(self, *exc):
        if self.saved is not None:
            import termios
            termios.tcsetattr(sys.stdin.fileno(), termios.TCSADRAIN, self.saved)


def relay(attachment: process.Attachment, stdin: bool, tty: bool) -> int | None:
    """Copy frames to our stdout/stderr and (when `stdin`) our stdin to the container until
    the exit frame; returns the exit code (None if the shim went away without one)."""
    out, err = sys.stdout.buffer, sys.stderr.buffer
    watch = [attachment.sock] + ([sys.stdin.fileno()] if stdin else [])
    if tty and terminal_size(True):   # our terminal resized: so is the container's pty
        _signal.signal(_signal.SIGWINCH, lambda *_: attachment.resize(*terminal_size(True)))
    with RawTerminal(tty and stdin):
        while True:
            ready, _, _ = select.select(watch, [], [])
            if sys.stdin.fileno() in ready:
                data = os.read(sys.stdin.fileno(), 4096)
                if data:
                    attachment.send(data)
                else:
                    watch.remove(sys.stdin.fileno())
                    if not tty:
                        attachment.close_stdin()
            if attachment.sock in ready:
                frame = attachment.read_frame()
                if frame is None:
                    return attachment.exit_code
                stream = out if frame[0] == process.STREAM_STDOUT else err
                stream.write(frame[1])
                stream.flush()


def _forward_signals(rt: Runtime, cid: str) -> None:
    def forward(signum, _frame):
        try:
            rt.kill(cid, signum)
        except ContainerError:
            pass
    for sig in (_signal.SIGINT, _signal.SIGTERM, _signal.SIGHUP):
        _signal.signal(sig, forward)


def attach_and_wait(rt: Runtime, cid: str, attachment, stdin: bool, tty: bool) -> int:
    if not tty:
        _forward_signals(rt, cid)
    code = relay(attachment, stdin, tty)
    attachment.close()
    return code if code is not None else rt.wait(cid)


# ----- commands -----

def create_pulling(rt: Runtime, spec: ContainerSpec):
    """Docker's run/create: an image missing locally is pulled first."""
    from runtime.images import ImageNotFound
    try:
        return rt.create(spec)
    except ImageNotFound:
        from runtime.registry import pull
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
                              tty_size=terminal_size(args.tty))
    except process.StartError as e:
        code = rt.get(state.id).exit_code
        if args.rm:
            rt.remove(state.id, force=True)
        print(f"pdocker: error: {e}", file=sys.stderr)
        return code
    try:
        return attach_and_wait(rt, state.id, attachment, args.interactive, args.tty)
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
        attachment = rt.start(state.id, attach="a" if interactive else "o", tty_size=terminal_size(bool(tty)))
        return attach_and_wait(rt, state.id, attachment, bool(interactive), bool(tty))
    return _each(args.containers, lambda c: rt.start(c))


def _each(names: list[str], action) -> int:
    """Docker's multi-container verbs: act on each, print the name, report failures."""
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
    return _each(args.containers, lambda c: rt.stop(c, args.time))


def cmd_restart(rt, args) -> int:
    return _each(args.containers, lambda c: rt.restart(c, args.time))


def _signal_number(text: str) -> int:
    """A signal's number from its number, its name or its name without SIG (kill -s); the
    names are those of signal.Signals: _signal's SIG* constants but SIG_DFL and the like."""
    if text.isdigit():
        return int(text)
    name = text.upper() if text.upper().startswith("SIG") else "SIG" + text.upper()
    number = getattr(_signal, name, None) if not name.startswith("SIG_") else None
    if not isinstance(number, int):
        raise UsageError(f"invalid signal: {text}")
    return number


def cmd_kill(rt, args) -> int:
    sig = _signal_number(args.signal)
    return _each(args.containers, lambda c: rt.kill(c, sig))


def cmd_rm(rt, args) -> int:
    return _each(args.containers, lambda c: rt.remove(c, force=args.force))


def cmd_ps(rt, args) -> int:
    labels = {}
    for f in args.filter:
        key, _, value = f.partition("=")
        if key != "label":
            raise UsageError(f"invalid filter {key!r}: only label=KEY[=VALUE] is supported")
        k, sep, v = value.partition("=")
        labels[k] = v if sep else None
    states = rt.list(all=args.all, labels=labels or None)
    if args.quiet:
        for s in states:
            print(s.short_id if not args.no_trunc else s.id)
        return 0
    rows = [["CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"]]
    for s in states:
        rows.append([s.id if args.no_trunc else s.short_id, s.image, command_text(s.process.get("argv", [])),
                     ago(s.created), status_text(s), ports_text(s), s.name])
    print(table(rows))
    return 0


def parse_since(text: str) -> float:
    """--since: RFC 3339, epoch seconds, or a duration back from now (30s, 5m, 2h)."""
    units = {"s": 1, "m": 60, "h": 3600}
    if text[-1:] in units and text[:-1].replace(".", "", 1).isdigit():
        return time.time() - float(text[:-1]) * units[text[-1]]
    try:
        return parse_time(text)
    except ValueError:
        raise UsageError(f"invalid --since {text!r}: want a timestamp or a duration like 10m") from None


def cmd_logs(rt, args) -> int:
    since = parse_since(args.since) if args.since else None
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
    return attach_and_wait(rt, state.id, attachment, stdin, bool(state.spec.get("tty")))


def cmd_exec(rt, args) -> int:
    if not args.command:
        raise UsageError("exec requires a container and a command")
    env = _env(args.env)
    if args.detach:
        rt.exec(args.container, args.command, tty=args.tty, env=env, workdir=args.workdir,
                user=args.user, detach=True)
        return 0
    attachment = rt.exec(args.container, args.command, tty=args.tty, env=env, workdir=args.workdir,
                         user=args.user, interactive=True, tty_size=terminal_size(args.tty))
    code = relay(attachment, args.interactive, args.tty)
    attachment.close()
    return 255 if code is None else code


def _split_cp(text: str) -> tuple[str | None, str]:
    if ":" in text and not text.startswith(("/", ".")):
        name, _, path = text.partition(":")
        return name, path
    return None, text


def cmd_cp(rt, args) -> int:
    (src_c, src), (dst_c, dst) = _split_cp(args.src), _split_cp(args.dst)
    if (src_c is None) == (dst_c is None):
        raise UsageError("copying between containers or between host paths is not supported: "
                         "use CONTAINER:PATH on exactly one side")
    if src_c:
        rt.cp_out(src_c, src, dst)
    else:
        rt.cp_in(dst_c, src, dst)
    return 0


def inspect_doc(rt: Runtime, s) -> dict:
    cdir = os.fspath(rt.store.dir(s.id))
    from runtime.rootfs import lower_dirs
    spec = s.spec
    res = spec.get("resources") or {}
    ports = {f"{p['container_port']}/{p.get('protocol', 'tcp')}": [{"HostIp": p.get("host_ip") or "0.0.0.0", "HostPort": str(p["host_port"])}]
             for p in spec.get("port_mappings") or []}
    status = s.status if s.kind == "container" else ("running" if s.running else "exited")
    return {
        "Id": s.id, "Created": s.created, "Path": (s.process.get("argv") or [""])[0],
        "Args": (s.process.get("argv") or [])[1:],
        "State": {"Status": status, "Running": s.running, "Paused": False, "Restarting": False,
                  "OOMKilled": s.oom_killed, "Dead": False, "Pid": s.pid if s.running else 0,
                  "ExitCode": s.exit_code, "Error": s.error, "StartedAt": s.started_at,
                  "FinishedAt": s.finished_at},
        "Image": s.image_id, "Name": "/" + s.name, "RestartCount": s.restart_count,
        "Driver": "overlay2", "LogPath": os.path.join(cdir, "container.log"),
        "HostConfig": {"Binds": [f"{m['source']}:{m['target']}" + (":ro" if m["readonly"] else "") for m in spec.get("mounts") or []],
                       "NetworkMode": spec.get("network", "bridge"), "AutoRemove": spec.get("auto_remove", False),
                       "Memory": res.get("memory_bytes") or 0, "NanoCpus": int((res.get("cpu_quota_us") or 0) * 1e9 / (res.get("cpu_period_us") or 100000)),
                       "PidsLimit": res.get("pids_limit"), "CpuShares": res.get("cpu_shares") or 0,
                       "CgroupParent": spec.get("cgroup_parent") or "", "PortBindings": ports},
        "GraphDriver": {"Name": "overlay2", "Data": {
            "LowerDir": ":".join(map(str, lower_dirs(cdir, s.layer_dirs))),
            "UpperDir": os.path.join(cdir, "upper"), "MergedDir": os.path.join(cdir, "merged"),
            "WorkDir": os.path.join(cdir, "work")}},
        "Mounts": [{"Type": "bind", "Source": m["source"], "Destination": m["target"], "Mode": "ro" if m["readonly"] else "",
                    "RW": not m["readonly"], "Propagation": "rprivate"} for m in spec.get("mounts") or []],
        "Config": {"Hostname": spec.get("hostname") or s.short_id, "User": s.process.get("user", ""),
                   "Tty": spec.get("tty", False), "OpenStdin": spec.get("stdin_open", False),
                   "Env": s.process.get("env", []), "Cmd": spec.get("command"), "Image": s.image,
                   "WorkingDir": s.process.get("workdir", ""), "Entrypoint": spec.get("entrypoint"),
                   "Labels": s.labels},
        "NetworkSettings": {"IPAddress": (s.endpoint or {}).get("ip", ""),
                            "IPPrefixLen": (s.endpoint or {}).get("prefixlen", 0),
                            "Gateway": (s.endpoint or {}).get("gateway", ""),
                            "MacAddress": (s.endpoint or {}).get("mac", ""), "Ports": ports},
    }


def cmd_inspect(rt, args) -> int:
    import json   # indented output, for people: not on the run path
    docs, code = [], 0
    for name in args.containers:
        try:
            docs.append(inspect_doc(rt, rt.get(name)))
        except ContainerError as e:
            print(f"pdocker: error: {e}", file=sys.stderr)
            code = 1
    if args.format:
        for d in docs:
            print(render_format(args.format, d))
    else:
        print(json.dumps(docs, indent=4))
    return code


def render_format(fmt: str, doc: dict) -> str:
    """The tiny subset of Go templates people use with inspect: {{.A.B}} and {{json .A}}."""
    import json
    import re

    def lookup(path: str):
        value = doc
        for part in path.strip(".").split("."):
            value = value.get(part) if isinstance(value, dict) else None
        return value

    def replace(m):
        expr = m.group(1).strip()
        if expr.startswith("json "):
            return json.dumps(lookup(expr[5:].strip()))
        value = lookup(expr)
        if isinstance(value, bool):
            return str(value).lower()
        return "<no value>" if value is None else str(value)
    return re.sub(r"\{\{(.*?)\}\}", replace, fmt)


def cmd_top(rt, args) -> int:
    titles, rows = rt.top(args.container)
    print(table([titles] + rows))
    return 0


STATS_TITLES = ["CONTAINER ID", "NAME", "CPU %", "MEM USAGE / LIMIT", "MEM %", "NET I/O", "BLOCK I/O", "PIDS"]


def _sample(rt, states) -> dict:
    """Cgroup stats of the containers still running (others are left out)."""
    samples = {}
    for s in states:
        try:
            samples[s.id] = rt.stats(s.id)
        except ContainerError:
            pass
    return samples


def _stats_rows(states, before: dict, after: dict, elapsed: float) -> list[list[str]]:
    rows = [STATS_TITLES]
    for s in states:
        if s.id not in after or s.id not in before:
            continue
        now = after[s.id]
        cpu = ((now.cpu_usage_ns or 0) - (before[s.id].cpu_usage_ns or 0)) / (elapsed * 1e9) * 100
        usage = now.memory_usage_bytes or 0
        limit = now.memory_limit_bytes or _host_memory()
        rows.append([s.short_id, s.name, f"{cpu:.2f}%", f"{human_size(usage)} / {human_size(limit)}",
                     f"{usage / limit * 100:.2f}%", net_io(s.pid), "--", str(now.pids_current or 0)])
    return rows


def decimal_size(n: float) -> str:
    """Docker's units.HumanSize (decimal): 0B, 648B, 1.2kB, 3.4MB."""
    return _scaled_size(n, 1000, ("B", "kB", "MB", "GB"), 3)


def net_io(pid: int) -> str:
    """Received / sent bytes of every interface but lo in the netns of `pid`."""
    try:
        with open(f"/proc/{pid}/net/dev") as f:
            lines = f.read().splitlines()[2:]
    except OSError:
        return "--"
    rx = tx = 0
    for line in lines:
        name, _, fields = line.partition(":")
        if name.strip() != "lo":
            values = fields.split()
            rx, tx = rx + int(values[0]), tx + int(values[8])
    return f"{decimal_size(rx)} / {decimal_size(tx)}"


def cmd_stats(rt, args) -> int:
    """Docker's stats: CPU % over the sampling interval; streams every second unless
    --no-stream (then one table after a short interval)."""
    states = [rt.get(c) for c in args.containers] if args.containers else rt.list()
    before, t0 = _sample(rt, states), time.monotonic()
    while True:
        time.sleep(0.2 if args.no_stream else 1.0)
        after, t1 = _sample(rt, states), time.monotonic()
        if not args.no_stream and sys.stdout.isatty():
            sys.stdout.write("\x1b[2J\x1b[H")
        print(table(_stats_rows(states, before, after, t1 - t0)), flush=True)
        if args.no_stream or not after:
            return 0
        before, t0 = after, t1


def _host_memory() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


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


def cmd_info(rt, args) -> int:
    states = rt.list(all=True)
    running = sum(s.running for s in states)
    try:
        images = len(rt.images.list())
    except Exception:
        images = 0
    cgroup_version = "2" if os.path.exists("/sys/fs/cgroup/cgroup.controllers") else "1"
    print("Server:")
    for key, value in (("Containers", len(states)), (" Running", running), (" Paused", 0),
                       (" Stopped", len(states) - running), ("Images", images),
                       ("Server Version", VERSION), ("Storage Driver", "overlay2"),
                       ("Logging Driver", "json-file"), ("Cgroup Driver", "cgroupfs"),
                       ("Cgroup Version", cgroup_version), ("Kernel Version", os.uname().release),
                       ("Operating System", _os_name()), ("Architecture", os.uname().machine),
                       ("CPUs", os.cpu_count()), ("Total Memory", human_size(_host_memory())),
                       ("Name", os.uname().nodename), ("Docker Root Dir", rt.root)):
        print(f" {key}: {value}")
    return 0


def _os_name() -> str:
    try:
        with open("/etc/os-release") as f:
            text = f.read()
        for line in text.splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    return os.uname().sysname


def cmd_version(rt, args) -> int:
    for section in ("Client", "Server"):
        print(f"{section}: pdocker" if section == "Client" else "Server: pkube runtime")
        print(f" Version:           {VERSION}")
        print(f" API version:       {API_VERSION}")
        print(f" Python version:    {sys.version.split()[0]}")
        print(f" OS/Arch:           linux/{os.uname().machine}")
        if section == "Client":
            print()
    return 0


# ----- parser -----

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


class _Skipped:
    """Stands in for the parser of a verb not on the command line: recording every verb's
    options (and importing the image verbs' module) is work no command needs."""

    def add_argument(self, *args, **kwargs):
        return None

    def set_defaults(self, **kwargs):
        return None


class _OnlySubparsers:
    """Wraps the parser's subparsers so that only `verb` gets a real parser."""

    def __init__(self, sub, verb: str):
        self.sub, self.verb, self.found = sub, verb, False

    def add_parser(self, name, **kwargs):
        if name != self.verb:
            return _Skipped()
        self.found = True
        return self.sub.add_parser(name, **kwargs)


def build_parser(get_runtime, verb: str | None = None) -> Parser:
    """pdocker's parser; with `verb`, only that verb's subparser is built (the full parser
    when no module registers `verb`, so help and errors list every verb)."""
    parser = Parser(prog="pdocker", description="A Docker-like CLI for the pkube runtime.")
    parser.add_argument("--root", default=os.environ.get("PDOCKER_ROOT", os.fspath(DEFAULT_ROOT)),
                        help="state directory (default %(default)s)")
    parser.add_argument("--bridge", default=os.environ.get("PDOCKER_BRIDGE", "pkube0"),
                        help="bridge of the bridge network (default %(default)s)")
    parser.add_argument("--subnet", default=os.environ.get("PDOCKER_SUBNET", "10.88.0.0/16"))
    parser.add_argument("--nft-table", default=os.environ.get("PDOCKER_NFT_TABLE", "pkube"))
    parser.add_argument("--cgroup-parent", default=os.environ.get("PDOCKER_CGROUP_PARENT", "pkube"))
    sub = parser.add_subparsers(dest="verb", required=True)
    if verb is not None:
        sub = _OnlySubparsers(sub, verb)

    def add(name, fn, help_text, **kw):
        p = sub.add_parser(name, help=help_text, add_help=name not in ("run", "create"), **kw)
        p.set_defaults(func=fn)
        return p

    p = add("run", cmd_run, "create and start a container")
    p.add_argument("-d", "--detach", action="store_true")
    add_create_flags(p)
    add_create_flags(add("create", cmd_create, "create a container"))
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
    p = add("ps", cmd_ps, "list containers")
    p.add_argument("-a", "--all", action="store_true")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("--no-trunc", action="store_true")
    p.add_argument("-f", "--filter", action="append", default=[])
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
    p = add("inspect", cmd_inspect, "show containers as JSON")
    p.add_argument("-f", "--format")
    p.add_argument("containers", nargs="+")
    p = add("top", cmd_top, "show a container's processes")
    p.add_argument("container")
    p = add("stats", cmd_stats, "show resource usage")
    p.add_argument("--no-stream", action="store_true")
    p.add_argument("containers", nargs="*")
    p = add("commit", cmd_commit, "make an image from a container")
    p.add_argument("-m", "--message")
    p.add_argument("container")
    p.add_argument("repository", nargs="?")
    p = add("diff", cmd_diff, "show a container's filesystem changes")
    p.add_argument("container")
    p = add("export", cmd_export, "tar a container's filesystem")
    p.add_argument("-o", "--output")
    p.add_argument("container")
    add("info", cmd_info, "show system-wide information")
    add("version", cmd_version, "show the version")
    if isinstance(sub, _OnlySubparsers) and sub.found:
        return parser   # a container verb: the image verbs (and their imports) are not needed
    try:
        from runtime import cli_images
    except ImportError:
        cli_images = None
    if cli_images is not None:
        cli_images.register(sub, get_runtime)
    if isinstance(sub, _OnlySubparsers) and not sub.found:
        return build_parser(get_runtime)
    return parser


def _known_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [ContainerError, SpecError, IllegalTransition, UsageError,
                                         process.StartError, process.BuildError, OSError, ValueError,
                                         TimeoutError]
    for module, name in (("runtime.images", "ImageError"), ("runtime.network", "NetworkError"),
                         ("runtime.cgroups", "CgroupError"), ("runtime.layers", "LayerError"),
                         ("runtime.rootfs", "RootfsError")):
        try:
            errors.append(getattr(__import__(module, fromlist=[name]), name))
        except (ImportError, AttributeError):
            pass
    return tuple(errors)


class _lazy_network:
    """A BridgeNetwork made on first use (so commands without a bridge never import
    pyroute2), with the global --bridge/--subnet/--nft-table options."""

    def __init__(self, args):
        self.args = args
        self.net = None

    def __getattr__(self, name):
        if self.net is None:
            from runtime.network import BridgeNetwork
            a = self.args
            self.net = BridgeNetwork(os.path.join(a.root, "network"), bridge=a.bridge, subnet=a.subnet,
                                     nft_table=a.nft_table)
        return getattr(self.net, name)


def main(argv: list[str] | None = None) -> int:
    """Entry point of `pdocker`; returns the exit status."""
    holder: dict = {}

    def get_runtime() -> Runtime:
        if "rt" not in holder:
            args = holder["args"]
            holder["rt"] = Runtime(args.root, network=_lazy_network(args),
                                   cgroup_parent=args.cgroup_parent)
        return holder["rt"]

    try:
        argv = sys.argv[1:] if argv is None else argv
        args = build_parser(get_runtime, requested_verb(argv)).parse_args(argv)
        holder["args"] = args
        if getattr(args, "command", None) and args.command[:1] == ["--"]:
            args.command = args.command[1:]
        return args.func(get_runtime(), args) or 0
    except BrokenPipeError:   # `pdocker ps | head`: the reader left, nothing to report
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except _known_errors() as e:
        message = e.strerror if isinstance(e, OSError) and e.strerror and not e.filename else str(e)
        print(f"pdocker: error: {message}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
