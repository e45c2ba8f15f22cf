"""pdocker's verbs that report without changing anything: ps, inspect, top, stats, info,
version.

``register(add)`` adds them to pdocker's parser (pkube/pdocker/parser.py); each handler is
``fn(rt, args) -> exit status``.
"""

from __future__ import annotations

import os
import sys
import time

from pkube.pdocker.cliargs import UsageError
from pkube.pdocker.output import ago, command_text, decimal_size, human_duration, human_size, parse_time, \
    render_format, table
from pkube.runtime.runtime import ContainerError, Runtime
from pkube.runtime.state import ZERO_TIME

VERSION = "0.1.0"
API_VERSION = "1.43"
STATS_TITLES = ["CONTAINER ID", "NAME", "CPU %", "MEM USAGE / LIMIT", "MEM %", "NET I/O", "BLOCK I/O", "PIDS"]


def register(add) -> None:
    """Add the reporting verbs through ``add(name, handler, help) -> subparser``."""
    p = add("ps", cmd_ps, "list containers")
    p.add_argument("-a", "--all", action="store_true")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("--no-trunc", action="store_true")
    p.add_argument("-f", "--filter", action="append", default=[])
    p = add("inspect", cmd_inspect, "show containers as JSON")
    p.add_argument("-f", "--format")
    p.add_argument("containers", nargs="+")
    p = add("top", cmd_top, "show a container's processes")
    p.add_argument("container")
    p = add("stats", cmd_stats, "show resource usage")
    p.add_argument("--no-stream", action="store_true")
    p.add_argument("containers", nargs="*")
    add("info", cmd_info, "show system-wide information")
    add("version", cmd_version, "show the version")


# ----- ps -----

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


def status_text(state) -> str:
    """ps's STATUS: Up 5 minutes, Created, Exited (0) 2 seconds ago."""
    if state.running:
        return "Up " + human_duration(time.time() - parse_time(state.started_at))
    if state.started_at == ZERO_TIME and not state.error:
        return "Created"
    return f"Exited ({state.exit_code}) {ago(state.finished_at)}"


def ports_text(state) -> str:
    """ps's PORTS: the published ports of a running container (an exited one has none, as in
    Docker)."""
    if not state.running:
        return ""
    return ", ".join(f"{p.get('host_ip') or '0.0.0.0'}:{p['host_port']}->{p['container_port']}/{p.get('protocol', 'tcp')}"
                     for p in state.spec.get("port_mappings") or [])


# ----- inspect -----

def inspect_doc(rt: Runtime, s) -> dict:
    """Docker's inspect document of container (or sandbox) state `s`."""
    cdir = os.fspath(rt.store.dir(s.id))
    from pkube.runtime.rootfs import lower_dirs
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


def cmd_top(rt, args) -> int:
    titles, rows = rt.top(args.container)
    print(table([titles] + rows))
    return 0


# ----- stats -----

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
        limit = now.memory_limit_bytes or host_memory()
        rows.append([s.short_id, s.name, f"{cpu:.2f}%", f"{human_size(usage)} / {human_size(limit)}",
                     f"{usage / limit * 100:.2f}%", net_io(s.pid), "--", str(now.pids_current or 0)])
    return rows


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


def host_memory() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


# ----- info, version -----

def cmd_info(rt, args) -> int:
    states = rt.list(all=True)
    running = sum(s.running for s in states)
    images = len(rt.images.list())
    cgroup_version = "2" if os.path.exists("/sys/fs/cgroup/cgroup.controllers") else "1"
    print("Server:")
    for key, value in (("Containers", len(states)), (" Running", running), (" Paused", 0),
                       (" Stopped", len(states) - running), ("Images", images),
                       ("Server Version", VERSION), ("Storage Driver", "overlay2"),
                       ("Logging Driver", "json-file"), ("Cgroup Driver", "cgroupfs"),
                       ("Cgroup Version", cgroup_version), ("Kernel Version", os.uname().release),
                       ("Operating System", _os_name()), ("Architecture", os.uname().machine),
                       ("CPUs", os.cpu_count()), ("Total Memory", human_size(host_memory())),
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
