"""Pod start-up on a real node (issue 9): a `pkube up` cluster with its kubelet, next to podman.

Prints, measured in one run on this machine (the first line times a fixed pure-Python loop,
the second gives the load average: both move these figures):
  1. one pod's create -> Running (as a watch on pods sees it: phase Running and Ready=True),
     p50 and p90 over N busybox pods (`sleep 3600`) created one at a time, each deleted
     (grace 1 s) and gone before the next — goal p50 <= 150 ms;
  2. B busybox pods created at once on the one node: create -> Running p50 and p99, and the
     time until the last one runs, split into create -> bound (the scheduler) and bound ->
     Running (the kubelet) — goal p99 <= 2 s;
  3. the runtime library's sandbox start (Runtime.create_sandbox) with the bridge network
     next to the same with network "none", p50 over S each, interleaved, on a temp root and a
     temp bridge, empty and then with B sandboxes on it (a busy node) — goal: the bridge
     costs <= 10 ms more;
  4. memory attributable to pkube per running pod, with the B pods running: the PSS of their
     pause processes and shims (/proc/PID/smaps_rollup) / B, plus the kubelet's RSS growth
     over the burst / B — goal <= 5 MiB;
  5. the kubelet's CPU while the B pods idle: utime+stime from /proc/PID/stat over 30 s, as
     % of one core — goal <= 2 %;
  6. the anchor: podman's pod (`podman pod create`, then `podman run -d --pod` of the same
     busybox rootfs, imported as an image) created and started one at a time, p50 over P.
     Podman runs on a storage root, a CNI network (its own bridge and subnet) and a
     containers.conf of its own in the temp dir, with the rlimits podman 4.3 needs here
     (nofile 1024, nproc 4096, as `--ulimit` would give, for the infra container too).

The cluster is the bench's own (`pkube up -d` on a temp data dir and free ports; `pkube down`
after, even when interrupted); a line says whether its control plane runs as processes or as
static pods of the node. The kubelet's pod bridge (`pkube-pods`), its cgroup
(`kubepods`) and its firewall table are the same for every pkube cluster on a host, so the
bench first waits (--wait seconds) until no other kubelet runs; it says so if one appears
during the run (its figures are then suspect).

Usage (root): python bench/pod_startup.py [--single 20] [--burst 100] [--sandboxes 20]
                                         [--podman 10] [--idle 30] [--wait 900]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.measure import percentile, python_loop_line  # noqa: E402
from pkube.client.aio import AsyncApiClient  # noqa: E402
from pkube.client.errors import Gone, NotFound, Unavailable  # noqa: E402
from pkube.client.kubeconfig import load_kubeconfig  # noqa: E402
from pkube.client.resources import NODES, PODS  # noqa: E402
from pkube.cluster.etcd import free_port  # noqa: E402
from pkube.runtime.cgroups import CgroupManager  # noqa: E402
from pkube.runtime.network import BridgeNetwork  # noqa: E402
from pkube.runtime.runtime import Runtime  # noqa: E402
from pkube.runtime.spec import SandboxSpec  # noqa: E402

POD_BRIDGE = "pkube-pods"          # every pkube kubelet's bridge (pkube/kubelet/kubelet.py)
NAMESPACE = "default"
POD_NAME_LABEL = "io.kubernetes.pod.name"     # pkube/kubelet/containers.py's labels on runtime records
POD_NAMESPACE_LABEL = "io.kubernetes.pod.namespace"
DELETE_GRACE = 1                   # busybox's sleep ignores SIGTERM as pid 1: killed after 1 s
CLUSTER_TIMEOUT = 120
PODMAN_INSTALL = "apt-get install -y podman"


class Interrupted(Exception):
    """SIGTERM: unwinds like Ctrl-C, so that every clean-up runs."""


def on_sigterm(*_args) -> None:
    raise Interrupted("terminated")


# ----- the machine -----

def pss_kib(pid: int) -> int:
    """Proportional set size of a process (0 when it is gone)."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return 0
    return next((int(line.split()[1]) for line in text.splitlines() if line.startswith("Pss:")), 0)


def rss_kib(pid: int) -> int:
    text = Path(f"/proc/{pid}/status").read_text()
    return next(int(line.split()[1]) for line in text.splitlines() if line.startswith("VmRSS:"))


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def kubelet_pids() -> dict[int, list[str]]:
    """Every `python -m pkube.kubelet` on the host: pid -> argv."""
    found = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            argv = cmdline(int(entry))
            if "-m" in argv and "pkube.kubelet" in argv[argv.index("-m") + 1:argv.index("-m") + 2]:
                found[int(entry)] = argv
    return found


def link_exists(name: str) -> bool:
    return os.path.exists(f"/sys/class/net/{name}")


def others_running(ours: int | None = None) -> list[str]:
    """What says another pkube node runs here: its kubelets and the pod bridge (ours aside)."""
    found = [f"kubelet pid {pid} ({' '.join(argv[argv.index('--node-name'):][:2]) if '--node-name' in argv else ''})"
             for pid, argv in kubelet_pids().items() if pid != ours]
    if ours is None and link_exists(POD_BRIDGE):
        found.append(f"bridge {POD_BRIDGE}")
    return found


def wait_until_alone(timeout: float) -> None:
    """Return once no other pkube node runs on the host; SystemExit after `timeout` s."""
    deadline, said = time.monotonic() + timeout, False
    while others := others_running():
        if time.monotonic() > deadline:
            raise SystemExit(f"another pkube node is still running after {timeout:.0f} s "
                             f"({'; '.join(others)}): run the bench when it is gone")
        if not said:
            print(f"waiting (up to {timeout:.0f} s) for another pkube node to stop: {'; '.join(others)}", flush=True)
            said = True
        time.sleep(2)


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


class Summary:
    """The headline figures, printed together at the end next to their goals."""

    def __init__(self):
        self.rows: list[tuple[int, str, str, str]] = []

    def add(self, part: int, label: str, value: str, goal: str = "", met: bool | None = None) -> None:
        """A figure of part `part` (1-6: the order they are printed in); `met` None: no goal."""
        verdict = "" if met is None else ("met" if met else "MISSED")
        self.rows.append((part, label, value, f"{goal} {verdict}".strip()))

    def print(self) -> None:
        print("summary (figure, goal):")
        for part, label, value, goal in sorted(self.rows, key=lambda row: row[0]):
            print(f"  {label:<46}{value:>16}   {goal}")


# ----- the cluster -----

class BenchCluster:
    """`pkube up -d` on a temp data dir with the local node's kubelet; `stop` is `pkube down`
    (which removes the pods' containers, cgroups and network) and removes the directory."""

    def __init__(self, base: Path):
        self.data_dir = base / "cluster"
        self.port = free_port()
        self.node = f"pkbench-{secrets.token_hex(3)}"
        self.started = False
        self.neighbours: set[str] = set()

    def start(self) -> None:
        argv = ["up", "-d", "--data-dir", str(self.data_dir), "--port", str(self.port),
                "--node-name", self.node, "--kubelet-port", str(free_port())]
        self.started = True
        self._pkube(argv, timeout=CLUSTER_TIMEOUT)

    def stop(self) -> None:
        if self.started:
            self._pkube(["down", "--data-dir", str(self.data_dir)], timeout=CLUSTER_TIMEOUT, check=False)

    def _pkube(self, argv: list[str], timeout: float, check: bool = True) -> None:
        done = subprocess.run([sys.executable, "-m", "pkube.cluster", *argv], cwd=REPO, capture_output=True,
                              text=True, timeout=timeout)
        if check and done.returncode != 0:
            raise SystemExit(f"pkube {argv[0]} failed: {done.stderr.strip() or done.stdout.strip()}")

    @property
    def kubeconfig(self) -> str:
        return str(self.data_dir / "admin.kubeconfig")

    @property
    def runtime_root(self) -> Path:
        return self.data_dir / "kubelet" / "runtime"

    def look_around(self) -> None:
        """Note the other pkube nodes running now (called between the parts)."""
        self.neighbours.update(others_running(self.kubelet_pid()))

    def kubelet_pid(self) -> int:
        root = str(self.data_dir / "kubelet")
        for pid, argv in kubelet_pids().items():
            if root in argv:
                return pid
        raise SystemExit(f"the kubelet of {self.data_dir} is not running: see {self.data_dir}/logs/kubelet.log")


def pod_body(name: str, run_id: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"pkbench": run_id}},
            "spec": {"containers": [{"name": "sleep", "image": "busybox", "command": ["sleep", "3600"]}]}}


def is_running(pod: dict) -> bool:
    status = pod.get("status") or {}
    return status.get("phase") == "Running" and any(
        c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])


class PodWatch:
    """One watch on the bench's pods: when (perf_counter) each was first seen Running and
    Ready, and when each was seen deleted."""

    def __init__(self, client, run_id: str):
        self.client, self.selector = client, f"pkbench={run_id}"
        self.bound: dict[str, float] = {}
        self.running: dict[str, float] = {}
        self.gone: dict[str, float] = {}
        self._changed = asyncio.Event()
        self._rv = ""

    async def start(self) -> asyncio.Task:
        """Start watching from now; returns the watching task (cancel it when done)."""
        self._rv = (await self.client.list(PODS, NAMESPACE, label_selector=self.selector))["metadata"]["resourceVersion"]
        return asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        while True:
            try:
                async for kind, pod in self.client.watch(PODS, NAMESPACE, self._rv, self.selector, timeout_seconds=3600):
                    self._seen(kind, pod, time.perf_counter())
            except Gone:
                raise SystemExit("the pod watch expired (410): the run is too slow to measure")
            except Unavailable:
                await asyncio.sleep(0.1)

    def _seen(self, kind: str, pod: dict, now: float) -> None:
        self._rv = pod["metadata"].get("resourceVersion", self._rv)
        name = pod["metadata"].get("name")
        if kind == "DELETED":
            self.gone.setdefault(name, now)
        elif kind != "BOOKMARK":
            if (pod.get("spec") or {}).get("nodeName"):
                self.bound.setdefault(name, now)
            if is_running(pod):
                self.running.setdefault(name, now)
        self._changed.set()

    async def wait(self, seen: dict[str, float], names: list[str], timeout: float) -> bool:
        """True once every name is in `seen` (self.running or self.gone); False at timeout."""
        deadline = time.monotonic() + timeout
        while not all(n in seen for n in names):
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), left)
            except asyncio.TimeoutError:
                return False
        return True


async def wait_node_ready(client, node: str, timeout: float = CLUSTER_TIMEOUT) -> None:
    """The node registered and Ready (its pod network is up): set-up, so polling is fine."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            conditions = ((await client.get(NODES, node)).get("status") or {}).get("conditions") or []
            if any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions):
                return
        except (NotFound, Unavailable):
            pass
        await asyncio.sleep(0.2)
    raise SystemExit(f"node {node} not Ready within {timeout:.0f} s")


async def start_one(client, watch: PodWatch, name: str, run_id: str, timeout: float = 60) -> float:
    """Seconds from the create request to the watch seeing the pod Running and Ready."""
    began = time.perf_counter()
    await client.create(PODS, pod_body(name, run_id), NAMESPACE)
    if not await watch.wait(watch.running, [name], timeout):
        raise SystemExit(f"pod {name} not Running within {timeout:.0f} s")
    return watch.running[name] - began


async def delete_all(client, watch: PodWatch, names: list[str], timeout: float) -> float:
    """Delete the pods (grace DELETE_GRACE) and wait until the kubelet has removed them all;
    seconds taken."""
    began = time.perf_counter()
    await asyncio.gather(*(client.delete(PODS, n, NAMESPACE, grace_period_seconds=DELETE_GRACE) for n in names))
    if not await watch.wait(watch.gone, names, timeout):
        left = [n for n in names if n not in watch.gone]
        raise SystemExit(f"{len(left)} pods not gone within {timeout:.0f} s (say {left[0]})")
    return max(watch.gone[n] for n in names) - began


async def bench_single(client, watch: PodWatch, run_id: str, count: int, summary: Summary) -> None:
    first = await start_one(client, watch, "pkbench-warm", run_id)
    await delete_all(client, watch, ["pkbench-warm"], 60)
    print(f"first pod of the node (not counted): {ms(first)}", flush=True)
    latencies = []
    for i in range(count):
        name = f"pkbench-one-{i}"
        latencies.append(await start_one(client, watch, name, run_id))
        await delete_all(client, watch, [name], 60)
    print(f"1. one pod, create -> Running (watch), {count} one at a time: p50 {ms(percentile(latencies, 0.5))}, "
          f"p90 {ms(percentile(latencies, 0.9))}, min {ms(min(latencies))}, max {ms(max(latencies))} "
          f"(goal p50 <= 150 ms)", flush=True)
    p50 = percentile(latencies, 0.5)
    summary.add(1, "1. one pod, create -> Running, p50", ms(p50), "<= 150 ms", p50 <= 0.150)


async def bench_burst(client, watch: PodWatch, run_id: str, count: int, summary: Summary) -> list[str]:
    """Create `count` pods at once; returns their names (left running)."""
    names = [f"pkbench-burst-{i}" for i in range(count)]
    sent: dict[str, float] = {}

    async def create(name: str) -> None:
        sent[name] = time.perf_counter()
        await client.create(PODS, pod_body(name, run_id), NAMESPACE)

    began = time.perf_counter()
    await asyncio.gather(*(create(n) for n in names))
    created = time.perf_counter() - began
    if not await watch.wait(watch.running, names, 600):
        raise SystemExit(f"only {sum(n in watch.running for n in names)} of {count} pods Running after 600 s")
    latencies = [watch.running[n] - sent[n] for n in names]
    bound = [watch.bound[n] - sent[n] for n in names]
    kubelet = [watch.running[n] - watch.bound[n] for n in names]
    last = max(watch.running[n] for n in names) - began
    p99 = percentile(latencies, 0.99)
    print(f"2. {count} pods created at once (the creates took {ms(created)}), create -> Running: "
          f"p50 {ms(percentile(latencies, 0.5))}, p99 {ms(p99)}, the last one Running after {last:.2f} s "
          f"(goal p99 <= 2 s)\n   of which create -> bound (scheduler) p50 {ms(percentile(bound, 0.5))}, "
          f"p99 {ms(percentile(bound, 0.99))}; bound -> Running (kubelet) p50 {ms(percentile(kubelet, 0.5))}, "
          f"p99 {ms(percentile(kubelet, 0.99))}", flush=True)
    summary.add(2, f"2. {count} pods at once, create -> Running, p99", ms(p99), "<= 2000 ms", p99 <= 2.0)
    summary.add(2, f"   p50; the last one Running after", f"{ms(percentile(latencies, 0.5))}; {last:.2f} s")
    return names


def pod_processes(runtime_root: Path, names: set[str]) -> dict[str, list[int]]:
    """The pause, sandbox-shim and container-shim pids of the named pods, read from the
    runtime's records (read only: the kubelet owns them)."""
    runtime = Runtime(runtime_root)
    found: dict[str, list[int]] = {"pause": [], "sandbox shim": [], "container shim": []}
    for cid in runtime.store.ids():
        state = runtime.store.load(cid)
        if state is None or not state.pid or state.labels.get(POD_NAME_LABEL) not in names \
                or state.labels.get(POD_NAMESPACE_LABEL) != NAMESPACE or state.status != "running":
            continue
        if state.kind == "sandbox":
            found["pause"].append(state.pid)
            found["sandbox shim"].append(state.shim_pid)
        else:
            found["container shim"].append(state.shim_pid)
    return found


def report_memory(runtime_root: Path, names: list[str], kubelet_growth_kib: int, summary: Summary) -> None:
    processes = pod_processes(runtime_root, set(names))
    pss = {what: sum(pss_kib(pid) for pid in pids) for what, pids in processes.items()}
    per_pod = (sum(pss.values()) + max(0, kubelet_growth_kib)) / len(names) / 1024
    parts = ", ".join(f"{what} {pss[what] / max(1, len(pids)):.0f} KiB ({len(pids)})"
                      for what, pids in processes.items())
    print(f"4. memory per running pod: {per_pod:.2f} MiB = PSS of pause and shims / {len(names)} "
          f"[{parts}] + kubelet RSS growth {kubelet_growth_kib / 1024:.1f} MiB / {len(names)} (goal <= 5 MiB)",
          flush=True)
    summary.add(4, "4. memory per running pod", f"{per_pod:.2f} MiB", "<= 5 MiB", per_pod <= 5)


async def report_idle_cpu(kubelet_pid: int, count: int, seconds: float, summary: Summary) -> None:
    before, began = cpu_seconds(kubelet_pid), time.monotonic()
    await asyncio.sleep(seconds)
    used, elapsed = cpu_seconds(kubelet_pid) - before, time.monotonic() - began
    print(f"5. kubelet CPU with {count} pods idle: {used / elapsed * 100:.2f} % of one core "
          f"({used:.2f} s over {elapsed:.0f} s) (goal <= 2 %)", flush=True)
    percent = used / elapsed * 100
    summary.add(5, f"5. kubelet CPU, {count} pods idle", f"{percent:.2f} %", "<= 2 %", percent <= 2)


async def bench_node(cluster: BenchCluster, args, summary: Summary) -> None:
    run_id = secrets.token_hex(4)
    async with AsyncApiClient(load_kubeconfig(cluster.kubeconfig), timeout=120) as client:
        await wait_node_ready(client, cluster.node)
        static = len((await client.list(PODS, "kube-system"))["items"])
        print(f"cluster: pkube up -d, the control plane as {f'{static} static pods of the node' if static else 'processes'}",
              flush=True)
        watch = PodWatch(client, run_id)
        task = await watch.start()
        try:
            await bench_single(client, watch, run_id, args.single, summary)
            cluster.look_around()
            kubelet = cluster.kubelet_pid()
            rss_before = rss_kib(kubelet)
            names = await bench_burst(client, watch, run_id, args.burst, summary)
            cluster.look_around()
            await asyncio.sleep(2)     # the last status writes and events
            report_memory(cluster.runtime_root, names, rss_kib(kubelet) - rss_before, summary)
            await report_idle_cpu(kubelet, len(names), args.idle, summary)
            cluster.look_around()
            gone = await delete_all(client, watch, names, 300)
            print(f"   (the {len(names)} pods deleted at once, grace {DELETE_GRACE} s: all gone after {gone:.2f} s)")
        finally:
            task.cancel()


# ----- the runtime's sandbox -----

def sandbox_starts(runtime: Runtime, count: int, tag: str) -> dict[str, float]:
    """p50 seconds of `count` sandbox starts with the bridge and with no network, interleaved
    (each removed before the next)."""
    times: dict[str, list[float]] = {"bridge": [], "none": []}
    for i in range(count):
        for net in (("bridge", "none") if i % 2 else ("none", "bridge")):
            began = time.perf_counter()
            sandbox = runtime.create_sandbox(SandboxSpec(name=f"pkbench-{tag}-{net}-{i}", network=net))
            times[net].append(time.perf_counter() - began)
            runtime.remove_sandbox(sandbox.id)
    return {net: statistics.median(values) for net, values in times.items()}


def bench_sandboxes(base: Path, count: int, residents: int, summary: Summary) -> Path:
    """Sandbox starts with the bridge and with no network, on an empty bridge and then with
    `residents` sandboxes on it (a busy node); returns the runtime's busybox layer directory
    (for podman)."""
    tag = secrets.token_hex(3)
    parent = f"pkube-bench-{tag}"
    network = BridgeNetwork(base / "rt" / "network", bridge=f"pkb{tag}",
                            subnet=f"10.204.{secrets.randbelow(250) + 1}.0/24", nft_table=f"pkb_{tag}")
    runtime = Runtime(base / "rt", network=network, cgroup_parent=parent)
    try:
        sandbox_starts(runtime, 1, "warm")           # the bridge, the pause binary
        empty = sandbox_starts(runtime, count, "empty")
        for i in range(residents):
            runtime.create_sandbox(SandboxSpec(name=f"pkbench-resident-{i}", network="bridge"))
        busy = sandbox_starts(runtime, count, "busy")
        for label, p50 in ((f"3. sandbox start (Runtime.create_sandbox), p50 of {count}:", empty),
                           (f"   the same with {residents} sandboxes on the bridge:", busy)):
            print(f"{label} bridge {ms(p50['bridge'])}, --network none {ms(p50['none'])}, the bridge costs "
                  f"{ms(p50['bridge'] - p50['none'])} more (goal <= 10 ms)", flush=True)
        summary.add(3, "3. sandbox start, bridge over none", ms(empty["bridge"] - empty["none"]), "<= 10 ms",
                    empty["bridge"] - empty["none"] <= 0.010)
        summary.add(3, f"   the same, {residents} sandboxes on the bridge", ms(busy["bridge"] - busy["none"]), "<= 10 ms",
                    busy["bridge"] - busy["none"] <= 0.010)
        return Path(runtime.image("busybox").layer_dirs[-1])
    finally:
        for state in runtime.list(all=True, kind="sandbox"):
            runtime.remove_sandbox(state.id)
        network.teardown()
        CgroupManager.detect().open(parent).destroy()


# ----- podman, the anchor -----

class Podman:
    """podman on a storage root, network config and containers.conf of its own under `base`;
    `clean` leaves nothing (pods, storage mounts, bridge, cgroups)."""

    def __init__(self, base: Path):
        self.base = base / "podman"
        tag = secrets.token_hex(3)
        self.network, self.bridge = f"pkbench-{tag}", f"pkbpm{tag}"
        self.cgroup_parent = f"pkube-bench-podman-{tag}"
        self.libpod_parent_existed = any(Path("/sys/fs/cgroup").glob("*/libpod_parent"))

    def command(self, *argv: str) -> list[str]:
        b = self.base
        return ["podman", "--root", str(b / "storage"), "--runroot", str(b / "run"), "--tmpdir", str(b / "tmp"),
                "--cgroup-manager", "cgroupfs", "--events-backend", "none",
                "--network-config-dir", str(b / "cni"), *argv]

    def run(self, *argv: str) -> str:
        env = dict(os.environ, CONTAINERS_CONF=str(self.base / "containers.conf"))
        done = subprocess.run(self.command(*argv), capture_output=True, text=True, env=env)
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no message"])[-1]
            raise RuntimeError(f"podman {' '.join(argv[:2])}: {last}")
        return done.stdout

    def prepare(self, layer_dir: Path) -> None:
        """containers.conf, the CNI network, and the busybox rootfs imported as an image."""
        (self.base / "cni").mkdir(parents=True)
        (self.base / "containers.conf").write_text(
            '[containers]\ndefault_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]\n')
        subnet = f"10.205.{secrets.randbelow(250) + 1}"
        (self.base / "cni" / f"{self.network}.conflist").write_text(
            f'{{"cniVersion": "0.4.0", "name": "{self.network}", "plugins": [{{"type": "bridge", '
            f'"bridge": "{self.bridge}", "isGateway": true, "ipMasq": true, "hairpinMode": true, '
            f'"ipam": {{"type": "host-local", "dataDir": "{self.base / "ipam"}", "routes": [{{"dst": "0.0.0.0/0"}}], '
            f'"ranges": [[{{"subnet": "{subnet}.0/24", "gateway": "{subnet}.1"}}]]}}}}]}}\n')
        with tarfile.open(self.base / "busybox.tar", "w") as tar:
            tar.add(layer_dir, arcname=".")
        self.run("import", str(self.base / "busybox.tar"), "localhost/pkbench-busybox:latest")

    def start_pod(self, name: str) -> tuple[float, float]:
        """(pod create, run --pod) seconds of one pod."""
        began = time.perf_counter()
        self.run("pod", "create", "--name", name, "--network", self.network, "--cgroup-parent", self.cgroup_parent)
        created = time.perf_counter()
        self.run("run", "-d", "--pod", name, "localhost/pkbench-busybox", "sleep", "3600")
        return created - began, time.perf_counter() - created

    def clean(self) -> None:
        env = dict(os.environ, CONTAINERS_CONF=str(self.base / "containers.conf"))
        for argv in (("pod", "rm", "-a", "-f", "-t", "0"), ("system", "reset", "-f")):
            subprocess.run(self.command(*argv), capture_output=True, env=env, timeout=120)
        if link_exists(self.bridge):
            subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)
        for mount in reversed(Path("/proc/mounts").read_text().splitlines()):
            if mount.split()[1].startswith(str(self.base)):
                subprocess.run(["umount", "-l", mount.split()[1]], capture_output=True)
        parents = [self.cgroup_parent] + ([] if self.libpod_parent_existed else ["libpod_parent"])
        for hierarchy in Path("/sys/fs/cgroup").iterdir():
            for parent in parents:
                remove_cgroup_tree(hierarchy / parent)


def remove_cgroup_tree(path: Path) -> None:
    """rmdir a cgroup directory tree, deepest first (best effort: busy ones stay)."""
    if not path.is_dir():
        return
    for sub in sorted((p for p in path.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
        try:
            sub.rmdir()
        except OSError:
            pass
    try:
        path.rmdir()
    except OSError:
        pass


def bench_podman(base: Path, layer_dir: Path, count: int, summary: Summary) -> None:
    if shutil.which("podman") is None:
        print(f"6. anchor: podman is not installed (install it with: {PODMAN_INSTALL})")
        summary.add(6, "6. anchor, podman pod create + run", "not installed", PODMAN_INSTALL)
        return
    podman = Podman(base)
    try:
        podman.prepare(layer_dir)
        podman.start_pod("pkbench-warm")                # builds podman's pause image
        podman.run("pod", "rm", "-f", "-t", "0", "pkbench-warm")
        times = []
        for i in range(count):
            times.append(podman.start_pod(f"pkbench-{i}"))
            podman.run("pod", "rm", "-f", "-t", "0", f"pkbench-{i}")
        total = statistics.median(c + r for c, r in times)
        version = subprocess.run(["podman", "--version"], capture_output=True, text=True).stdout.strip()
        print(f"6. anchor, {version}: pod create + run -d --pod (busybox sleep 3600, a CNI bridge), "
              f"one at a time, p50 of {count}: {ms(total)} (pod create {ms(statistics.median(c for c, _ in times))}, "
              f"run {ms(statistics.median(r for _, r in times))})", flush=True)
        summary.add(6, "6. anchor, podman pod create + run, p50", ms(total))
    except (RuntimeError, OSError) as err:
        print(f"6. anchor: podman cannot run here ({err}); going on without it")
        summary.add(6, "6. anchor, podman pod create + run", "failed", "see above")
    finally:
        podman.clean()


# ----- main -----

def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--single", type=int, default=20, help="pods created one at a time")
    parser.add_argument("--burst", type=int, default=100, help="pods created at once")
    parser.add_argument("--sandboxes", type=int, default=20, help="sandbox starts of each network")
    parser.add_argument("--podman", type=int, default=10, help="podman pods (the anchor)")
    parser.add_argument("--idle", type=float, default=30, help="seconds the kubelet's idle CPU is measured over")
    parser.add_argument("--wait", type=float, default=900,
                        help="seconds to wait for another pkube node on this host to stop")
    return parser.parse_args()


def run_node(base: Path, args, summary: Summary) -> None:
    cluster = BenchCluster(base)
    try:
        cluster.start()
        asyncio.run(bench_node(cluster, args, summary))
        if cluster.neighbours:
            print(f"warning: another pkube node ran during the run ({'; '.join(sorted(cluster.neighbours))}): "
                  "figures 1, 2, 4 and 5 are suspect")
    finally:
        cluster.stop()


def main() -> int:
    args = parse_args()
    if os.geteuid() != 0:
        print("bench/pod_startup.py needs root", file=sys.stderr)
        return 1
    signal.signal(signal.SIGTERM, on_sigterm)
    print(python_loop_line(), flush=True)
    print(f"load average: {load_average()} ({os.cpu_count()} CPUs)", flush=True)
    base = Path(tempfile.mkdtemp(prefix="pkube-bench-pods-"))
    try:
        wait_until_alone(args.wait)
        summary = Summary()
        run_node(base, args, summary)
        layer_dir = bench_sandboxes(base, args.sandboxes, args.burst, summary)
        bench_podman(base, layer_dir, args.podman, summary)
        print(f"load average: {load_average()}")
        summary.print()
    except (KeyboardInterrupt, Interrupted):
        print("interrupted; cleaned up", file=sys.stderr)
        return 130
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
