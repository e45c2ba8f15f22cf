"""Benchmark of the embedded runtime (issue 4), next to Debian's runc on the same rootfs.

Prints, measured in one run on this machine (with the load average: it moves these a lot):
  - wall time of `pdocker run --rm busybox true` (median of N; --network none, which is what
    runc's default spec gives: a new, empty network namespace) next to `runc run` of a bundle
    made from the same busybox rootfs (`runc spec`, terminal false, args ["true"]; in the
    foreground `runc run` deletes the container when it exits, as `--rm` does), and the
    ratio — goal <= 1.0x runc. pdocker is its launcher (pkube/pdocker/launcher.py: a sh script
    running `python -I -S`, what `make setup` installs as .venv/bin/pdocker), written into
    the bench's temp dir when the installed `pdocker` is another script (pip's console
    script, timed next to it then); next to each wall time, the CPU time (user + sys) of the
    command and the children it waited for, steadier than wall time on a busy machine (it
    leaves out pdocker's shim, which daemonizes, and counts `runc init`). Runs are
    interleaved so that a change of load hits all alike, with --gap seconds (0.1) of quiet
    before each command, so that none starts inside the window of cheap cgroup moves that
    the previous one left open (docs/runtime.md §11.2);
  - where pdocker's start-up goes: the bare interpreter as the launcher starts it (-I -S),
    the same with `site` (as pip's console script starts it), the imports a `run` needs,
    and `python -m pkube.pdocker` with no cached bytecode (a checkout nobody byte-compiled, where
    PYTHONDONTWRITEBYTECODE is set);
  - the same pdocker run with the default bridge network (a veth per container), in the same
    rounds;
  - podman (Debian's package: the daemonless Docker-compatible tool a user would pick
    instead) running `true` in the same busybox rootfs, imported with `podman import` from a
    tarball of the layer runc's bundle copies, in storage of its own under the bench's temp
    dir, with `--network none` and with its default network, interleaved with pdocker's
    two modes and runc in the same rounds (`--ulimit nofile=1024:1024 --ulimit
    nproc=4096:4096`: podman's default rlimits are refused on these machines);
  - container start through the library (create -> the container's process has exec'd),
    p50 and p99 — goal p50 <= 10 ms — and the kernel's floor under it: moving a process
    into its cgroups (an RCU grace period on cgroup v1); on a hybrid host, the same starts
    on the unified (v2) hierarchy too, where the shim creates the process inside its cgroup
    (clone3 CLONE_INTO_CGROUP) and nothing is moved: what a v2-only host does;
  - 50 containers started concurrently from 50 threads: total seconds;
  - memory attributable to pkube per idle running container: its shim's PSS, and per pod
    sandbox pause + its shim (from /proc/<pid>/smaps_rollup) — goal <= 5 MiB.

Before measuring it byte-compiles runtime/ and pdocker/ (as `make setup` does), so that the figures do not
depend on whether an earlier command happened to leave bytecode behind.

Usage (root): python bench/runtime.py [--runs 10] [--starts 100] [--concurrent 50] [--idle 20]
                                      [--cli-only] [--gap 0.1] [--baseline DIR] [--no-podman]
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import random
import resource
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.measure import python_loop_line  # noqa: E402
from pkube.runtime.cgroups import DEFAULT_ROOT as CGROUP_ROOT, CgroupManager  # noqa: E402
from pkube.pdocker.launcher import is_launcher  # noqa: E402
from pkube.runtime.network import BridgeNetwork  # noqa: E402
from pkube.runtime.runtime import Runtime  # noqa: E402
from pkube.runtime.spec import ContainerSpec, SandboxSpec  # noqa: E402

# seconds of quiet before each timed command: a cgroup move opens a window in which the next
# move is cheap (pkube/pdocker/launcher.py); no timed command may start inside one another left
# open, as a user's commands, seconds apart, never do
GAP = 0.1

# podman's default rlimits (nofile 1048576) are refused on these machines
PODMAN_ULIMITS = ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=4096:4096"]
# the bridge podman's default network makes on first use (removed after when the bench made it)
PODMAN_BRIDGE = "cni-podman0"

# what pip writes as a console script (pip's template), for the launcher's row of the tricks
CONSOLE_SCRIPT = """#!{python}
import re
import sys
from pkube.pdocker.cli import main
if __name__ == "__main__":
    sys.argv[0] = re.sub(r"(-script\\.pyw|\\.exe)?$", "", sys.argv[0])
    sys.exit(main())
"""
# `pdocker run`'s own words, parsed in the parser rows of the tricks
RUN_ARGV = ["run", "--rm", "--network", "none", "busybox", "true"]
# the runtime's records remade as dataclasses with the same fields (the Record trick's row)
AS_DATACLASSES = """import dataclasses
from pkube.runtime.records import Record
def subclasses(cls):
    for sub in cls.__subclasses__():
        yield sub
        yield from subclasses(sub)
for cls in list(subclasses(Record)):
    dataclasses.make_dataclass(cls.__name__, [(f if isinstance(f, str) else f[0], object, dataclasses.field(default=None))
                                              for f in cls.FIELDS], frozen=cls.FROZEN)"""
# each start-up trick: (the row's label, the ordinary way, the trick's way), each as code run
# after the imports of a `pdocker run` (a trick's cost is the difference of the two)
TRICKS = (
    ("argparse instead of the lean parser (pkube/pdocker/cliargs.py)",
     f"from pkube.pdocker.parser import build_parser, requested_verb; a = {RUN_ARGV!r}; "
     "build_parser(requested_verb(a)).argparse_parser().parse_args(a)",
     f"from pkube.pdocker.parser import build_parser, requested_verb; a = {RUN_ARGV!r}; "
     "build_parser(requested_verb(a)).parse_args(a)"),
    ("dataclasses instead of Record (pkube/runtime/records.py)", AS_DATACLASSES, "pass"),
    ("signal instead of _signal", "import signal", "pass"),
    ("pathlib instead of str paths", "import pathlib", "pass"),
)

# the modules `pdocker run --rm busybox true` imports (python -X importtime says which), on
# the path the launcher gives them, ending as the launcher ends (os._exit: no teardown)
RUN_IMPORTS = (f"import sys; sys.path[:0] = [{str(REPO)!r}]; "
               "import pkube.pdocker.cli, pkube.pdocker.containers, pkube.runtime.imagestore, pkube.runtime.cgroups, _sha256; import os; os._exit(0)")


def after_run_imports(code: str) -> list[str]:
    """A bare interpreter (as the launcher starts it) importing what `pdocker run` imports,
    then running `code`, then leaving as the launcher does (os._exit)."""
    head = RUN_IMPORTS.split("; import os; os._exit(0)")[0]
    return [sys.executable, "-I", "-S", "-c", f"{head}\n{code}\nimport os; os._exit(0)"]


def trick_commands(base: Path) -> dict[str, tuple[list[str], Path]]:
    """The commands whose differences price each start-up trick: pip's console script next to
    the launcher, and each of TRICKS both ways."""
    console = base / "pdocker-console"
    console.write_text(CONSOLE_SCRIPT.format(python=sys.executable))
    console.chmod(0o755)
    cmds = {"console": ([str(console)], REPO)}
    for i, (_, ordinary, lean) in enumerate(TRICKS):
        cmds[f"trick{i} ordinary"] = (after_run_imports(ordinary), REPO)
        cmds[f"trick{i} lean"] = (after_run_imports(lean), REPO)
    return cmds


def print_tricks(results: dict[str, tuple[float, float]]) -> None:
    """What each start-up trick saves a `pdocker run`: the ordinary way minus the trick's, of
    the medians of wall and of CPU time (CPU is the steadier on a busy machine)."""
    def saving(ordinary: str, lean: str) -> str:
        wall = (results[ordinary][0] - results[lean][0]) * 1000
        cpu = (results[ordinary][1] - results[lean][1]) * 1000
        return f"{wall:6.1f} ms, CPU {cpu:6.1f} ms"

    print("start-up tricks, what each saves a pdocker command (the ordinary way minus the trick's):")
    print(f"  {'the sh launcher instead of pip console script (whole run):':<62}{saving('console', 'pdocker')}")
    for i, (label, _, _) in enumerate(TRICKS):
        print(f"  {label + ':':<62}{saving(f'trick{i} ordinary', f'trick{i} lean')}")


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def children_cpu() -> float:
    """CPU seconds (user + sys) of the children waited for so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(cmd: list[str], runs: int, cwd: Path = REPO, gap: float = 0.0) -> tuple[float, float]:
    """Median wall seconds and median CPU seconds of `cmd` run in `cwd` (it must succeed),
    `gap` seconds of quiet before each run."""
    times, cpu = [], []
    for _ in range(runs):
        time.sleep(gap)
        start, cpu_start = time.perf_counter(), children_cpu()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, cwd=cwd)
        times.append(time.perf_counter() - start)
        cpu.append(children_cpu() - cpu_start)
    return statistics.median(times), statistics.median(cpu)


def timed_together(cmds: dict[str, tuple[list[str], Path]], runs: int,
                   gap: float = 0.0) -> dict[str, tuple[float, float]]:
    """timed() of several (command, cwd), interleaved run by run, in a new random order each
    round, so that a change of the machine's load, or what the previous command left for the
    kernel to finish, hits them all alike; `gap` seconds of quiet before each command."""
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in cmds}
    for _ in range(runs):
        for name in random.sample(list(cmds), len(cmds)):
            cmd, cwd = cmds[name]
            time.sleep(gap)
            samples[name].append(timed(cmd, 1, cwd))
    return {name: (statistics.median(w for w, _ in s), statistics.median(c for _, c in s))
            for name, s in samples.items()}


def byte_compile(package: Path) -> None:
    """Cache the bytecode of `package` as `make setup` does (python -m compileall)."""
    if not compileall.compile_dir(str(package), quiet=1, workers=0):
        raise SystemExit(f"compileall {package} failed")


def installed_pdocker() -> Path | None:
    """The `pdocker` script next to this interpreter (None when there is none)."""
    script = Path(sys.executable).parent / "pdocker"
    return script if script.exists() else None


def pdocker_commands(base: Path) -> dict[str, list[str]]:
    """{"pdocker": the launcher} and, when the installed pdocker is not one, {"console
    script": it} too."""
    installed = installed_pdocker()
    if installed is not None and is_launcher(str(installed)):
        return {"pdocker": [str(installed)]}
    launcher = base / "pdocker"
    subprocess.run([sys.executable, "-m", "pkube.pdocker.launcher", str(launcher)], check=True, cwd=REPO)
    print(f"note: {installed or 'no installed pdocker'} is not the launcher (make setup installs it); "
          f"timing one written at {launcher}")
    commands = {"pdocker": [str(launcher)]}
    if installed is not None:
        commands["console script"] = [str(installed)]
    return commands


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def runc_bundle(rt: Runtime, base: Path) -> Path:
    """A runc bundle whose rootfs is a copy of the busybox image's layer."""
    image = rt.image("busybox")
    bundle = base / "bundle"
    shutil.copytree(image.layer_dirs[-1], bundle / "rootfs", symlinks=True)
    subprocess.run(["runc", "spec"], cwd=bundle, check=True)
    config = json.loads((bundle / "config.json").read_text())
    config["process"]["terminal"] = False
    config["process"]["args"] = ["true"]
    (bundle / "config.json").write_text(json.dumps(config))
    return bundle


def bench_cli(rt: Runtime, base: Path, parent: str, runs: int, baseline: Path | None = None,
              gap: float = GAP, podman: bool = True) -> None:
    options = ["--root", str(rt.root), "--cgroup-parent", parent]
    true = ["run", "--rm", "--network", "none", "busybox", "true"]
    scripts = pdocker_commands(base)
    cmds = {name: (script + options + true, REPO) for name, script in scripts.items()}
    cmds.update(startup_commands(base, options + true))
    tricks = trick_commands(base)
    cmds["console"] = (tricks.pop("console")[0] + options + true, REPO)
    cmds.update(tricks)
    if baseline is not None:
        cmds.update(baseline_commands(baseline, options + true))
    bridge = bridge_options()
    cmds["bridge"] = (scripts["pdocker"] + options + bridge + ["run", "--rm", "busybox", "true"], REPO)
    try:
        for cmd, cwd in cmds.values():   # warm: the image exists, the shim is built, caches are hot
            subprocess.run(cmd, check=True, cwd=cwd, stdout=subprocess.DEVNULL)
        bundle = runc_bundle(rt, base)
        cmds["runc"] = (["runc", "--root", str(base / "runc-state"), "run", "--bundle", str(bundle),
                         f"bench-{secrets.token_hex(4)}"], REPO)
        with podman_commands(rt, base, enabled=podman) as extra:
            cmds.update(extra)
            print(f"load average: {load_average()} ({os.cpu_count()} CPUs); {gap * 1000:.0f} ms of quiet before each command")
            results = timed_together(cmds, runs, gap)
    finally:
        BridgeNetwork(os.path.join(rt.root, "network"), bridge=bridge[1], subnet=bridge[3],
                      nft_table=bridge[5]).teardown()
    print_cli(results, scripts["pdocker"][0], runs, baseline)
    print_tricks(results)
    print(f"load average: {load_average()}")


def startup_commands(base: Path, run_args: list[str]) -> dict[str, tuple[list[str], Path]]:
    """Where pdocker's start-up goes: the bare interpreter, with site, with run's imports,
    and `python -m pkube.pdocker` with no cached bytecode."""
    python = sys.executable
    no_bytecode = [python, "-B", "-X", f"pycache_prefix={base / 'empty-pycache'}", "-m", "pkube.pdocker"]
    return {"interpreter": ([python, "-I", "-S", "-c", "pass"], REPO),
            "site": ([python, "-c", "pass"], REPO),
            "imports": ([python, "-I", "-S", "-c", RUN_IMPORTS], REPO),
            "no-bytecode": (no_bytecode + run_args, REPO)}


def baseline_commands(baseline: Path, run_args: list[str]) -> dict[str, tuple[list[str], Path]]:
    """This checkout's and another checkout's `python -m pkube.pdocker`, on the same root."""
    # a checkout from before everything moved under pkube/ has its packages at the top; before
    # the command line had its own package, `python -m runtime` was pdocker
    root = baseline / "pkube" if (baseline / "pkube").is_dir() else baseline
    prefix = "pkube." if root != baseline else ""
    byte_compile(root / "runtime")
    cli = "pdocker" if (root / "pdocker").is_dir() else "runtime"
    if cli == "pdocker":
        byte_compile(root / "pdocker")
    return {"module": ([sys.executable, "-m", "pkube.pdocker"] + run_args, REPO),
            "baseline": ([sys.executable, "-m", prefix + cli] + run_args, baseline)}


def bridge_options() -> list[str]:
    """pdocker options for a bridge of the bench's own (torn down after)."""
    tag = secrets.token_hex(3)
    return ["--bridge", f"pkb{tag}", "--subnet", f"10.202.{secrets.randbelow(250) + 1}.0/24",
            "--nft-table", f"pkb_{tag}"]


@contextmanager
def podman_commands(rt: Runtime, base: Path, enabled: bool = True):
    """Yields {"podman none": ..., "podman default": ...}: podman running `true` in the busybox
    rootfs (imported from a tarball of the image's layer), in storage under `base`; empty when
    not `enabled`. Removes the image, and podman's bridge when it made it, on the way out."""
    if not enabled:
        yield {}
        return
    if shutil.which("podman") is None:
        raise SystemExit("podman is not installed (scripts/install-system-deps.sh installs it; --no-podman leaves it out)")
    podman = ["podman", "--root", str(base / "podman" / "root"), "--runroot", str(base / "podman" / "run")]
    tarball = base / "busybox-rootfs.tar"
    subprocess.run(["tar", "-C", str(rt.image("busybox").layer_dirs[-1]), "-cf", str(tarball), "."], check=True)
    image = f"localhost/pkube-bench-busybox:{secrets.token_hex(4)}"
    had_bridge = Path(f"/sys/class/net/{PODMAN_BRIDGE}").exists()
    run = podman + ["run", "--rm"] + PODMAN_ULIMITS
    cmds = {"podman none": (run + ["--network", "none", image, "true"], REPO),
            "podman default": (run + [image, "true"], REPO)}
    try:
        subprocess.run(podman + ["import", "-q", str(tarball), image], check=True, stdout=subprocess.DEVNULL)
        for cmd, cwd in cmds.values():   # warm, as the others
            subprocess.run(cmd, check=True, cwd=cwd)
        yield cmds
    finally:
        subprocess.run(podman + ["rmi", "-a", "-f"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if not had_bridge and Path(f"/sys/class/net/{PODMAN_BRIDGE}").exists():
            subprocess.run(["ip", "link", "del", PODMAN_BRIDGE], check=False)
        unmount_under(base)


def unmount_under(base: Path) -> None:
    """Lazily unmount whatever is still mounted under `base` (podman's storage), deepest first."""
    with open("/proc/self/mounts") as mounts:
        points = [line.split()[1] for line in mounts if line.split()[1].startswith(str(base))]
    for point in sorted(points, key=len, reverse=True):
        subprocess.run(["umount", "-l", point], check=False)


def print_cli(results: dict[str, tuple[float, float]], pdocker: str, runs: int,
              baseline: Path | None) -> None:
    def row(label: str, name: str, extra: str = "") -> None:
        wall, cpu = results[name]
        print(f"{label:<46}{wall * 1000:6.1f} ms, CPU {cpu * 1000:6.1f} ms{extra}")

    (ours, ours_cpu), (runc, runc_cpu) = results["pdocker"], results["runc"]
    row("python -I -S -c pass (bare interpreter):", "interpreter", "  (the floor under any Python command)")
    row("pdocker run --rm busybox true (launcher):", "pdocker", f"  (median of {runs}, network none, {pdocker})")
    row("pdocker run --rm busybox true (bridge):", "bridge")
    row("runc run, same busybox rootfs:", "runc")
    print(f"{'ratio pdocker/runc:':<46}{ours / runc:6.2f}x wall, {ours_cpu / runc_cpu:.2f}x CPU (goal <= 1.0x)")
    if "podman none" in results:
        row("podman run --rm --network none, same rootfs:", "podman none")
        row("podman run --rm (its default network):", "podman default")
        print(f"{'ratio podman/pdocker:':<46}{results['podman none'][0] / ours:6.2f}x network none, "
              f"{results['podman default'][0] / results['bridge'][0]:.2f}x default network")
    if "console script" in results:
        row("  the same through pip's console script:", "console script")
    print("where pdocker's time goes:")
    row("  python -c pass (with site, .pth files):", "site")
    row("  python -I -S + what run imports, os._exit:", "imports")
    row("  python -m pkube.pdocker run, no cached bytecode:", "no-bytecode")
    if baseline is not None:
        row("  python -m pkube.pdocker, this checkout:", "module")
        row(f"  python -m pkube.pdocker, {baseline}:", "baseline")


def bench_cgroup_floor(parent: str, runs: int = 20) -> None:
    """The kernel's share of a start: moving one process into its cgroup (on cgroup v1, an
    RCU grace period per start)."""
    manager = CgroupManager.detect()
    times = []
    for i in range(runs):
        cgroup = manager.create(f"{parent}/floor-{i}")
        sleeper = subprocess.Popen(["sleep", "100"])
        time.sleep(0.05)
        begin = time.perf_counter()
        cgroup.add_process(sleeper.pid)
        times.append(time.perf_counter() - begin)
        sleeper.kill()
        sleeper.wait()
        cgroup.destroy()
    print(f"kernel floor, joining a container's cgroup ({type(manager).__name__}): "
          f"p50 {percentile(times, 50) * 1000:.1f} ms")


def start_one(rt: Runtime, argv: list[str]) -> tuple[str, float]:
    start = time.perf_counter()
    state = rt.create(ContainerSpec(image="busybox", command=argv, network="none"))
    rt.start(state.id)
    return state.id, time.perf_counter() - start


def sequential_starts(rt: Runtime, starts: int) -> list[float]:
    """Seconds of `starts` library starts of `true`, one after the other (each waited for
    and removed before the next)."""
    rt.image("busybox")
    latencies = []
    for _ in range(starts):
        cid, seconds = start_one(rt, ["true"])
        latencies.append(seconds)
        rt.wait(cid)
        rt.remove(cid)
    return latencies


def print_starts(label: str, latencies: list[float]) -> None:
    print(f"{label}, {len(latencies)} sequential: p50 {percentile(latencies, 50) * 1000:.1f} ms, "
          f"p99 {percentile(latencies, 99) * 1000:.1f} ms (goal p50 <= 10 ms)")


def bench_library_v2(rt: Runtime, parent: str, starts: int) -> None:
    """On a hybrid host: the same starts with the cgroups on the unified (v2) mount."""
    unified = Path(CGROUP_ROOT) / "unified"
    if rt.cgroups.version != 1 or not (unified / "cgroup.controllers").exists():
        return
    v2 = Runtime(rt.root, cgroup_root=unified, cgroup_parent=parent)
    try:
        print_starts("  the same on the unified (v2) hierarchy", sequential_starts(v2, starts))
    finally:
        CgroupManager.detect(unified).open(parent).destroy()


def bench_library(rt: Runtime, parent: str, starts: int, concurrent: int) -> None:
    print_starts("library start (create -> process exec'd)", sequential_starts(rt, starts))
    bench_library_v2(rt, parent, starts)
    begin = time.perf_counter()
    with ThreadPoolExecutor(concurrent) as pool:
        ids = list(pool.map(lambda _: start_one(rt, ["sleep", "1000"])[0], range(concurrent)))
    total = time.perf_counter() - begin
    print(f"{concurrent} containers started concurrently: {total:.2f} s total")
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda cid: rt.remove(cid, force=True), ids))


def pss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    return 0


def bench_memory(rt: Runtime, idle: int) -> None:
    containers = [start_one(rt, ["sleep", "1000"])[0] for _ in range(idle)]
    shims = [pss_kib(rt.get(cid).shim_pid) for cid in containers]
    sandboxes = [rt.create_sandbox(SandboxSpec(name=f"bench-pod-{i}", network="none")) for i in range(idle)]
    pods = [pss_kib(s.pid) + pss_kib(s.shim_pid) for s in sandboxes]
    per_container = statistics.mean(shims)
    per_pod = statistics.mean(pods)
    print(f"idle container, shim PSS: {per_container:.0f} KiB (mean of {idle})")
    print(f"pod sandbox, pause + its shim PSS: {per_pod:.0f} KiB (mean of {idle})")
    print(f"one-container pod (pause + 2 shims): {(per_pod + per_container) / 1024:.2f} MiB (goal <= 5 MiB)")
    for cid in containers:
        rt.remove(cid, force=True)
    for s in sandboxes:
        rt.remove_sandbox(s.id)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--starts", type=int, default=100)
    parser.add_argument("--concurrent", type=int, default=50)
    parser.add_argument("--idle", type=int, default=20)
    parser.add_argument("--cli-only", action="store_true", help="only the pdocker/runc comparison")
    parser.add_argument("--gap", type=float, default=GAP,
                        help="seconds of quiet before each timed command (default %(default)s; 0: back to back)")
    parser.add_argument("--no-podman", action="store_true", help="leave podman out")
    parser.add_argument("--baseline", type=Path, help="a checkout of another revision (say `git archive "
                        "REV pkube | tar -x -C DIR`) whose pdocker (`python -m pkube.pdocker`; `-m pdocker` before "
                        "pkube/ existed, `-m runtime` before pdocker/ did) is timed next to this one's (byte-compiled too)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench/runtime.py needs root", file=sys.stderr)
        return 1
    print(python_loop_line())
    byte_compile(REPO / "pkube" / "runtime")
    byte_compile(REPO / "pkube" / "pdocker")
    print(f"byte-compiled {REPO / 'pkube' / 'runtime'} and {REPO / 'pkube' / 'pdocker'} first (python -m compileall, as `make setup` does)")
    base = Path(tempfile.mkdtemp(prefix="pkube-bench-"))
    parent = f"pkube-bench-{secrets.token_hex(4)}"
    rt = Runtime(base / "root", cgroup_parent=parent)
    try:
        bench_cli(rt, base, parent, args.runs, args.baseline, args.gap, podman=not args.no_podman)
        if args.cli_only:
            return 0
        bench_library(rt, parent, args.starts, args.concurrent)
        bench_cgroup_floor(parent)
        bench_memory(rt, args.idle)
    finally:
        for state in rt.list(all=True) + rt.list_sandboxes():
            rt.remove(state.id, force=True)
        CgroupManager.detect().open(parent).destroy()
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
