"""Benchmark: `pkubectl version --client` start-up and `get pods` on N pods, next to the real kubectl;
the real kubectl's discovery (`get namespaces` with a cold cache, its requests counted, next to a warm one).

Usage: python bench/kubectl.py [--pods 1000] [--kubeconfig FILE] [--runs 5]

Without --kubeconfig it starts a throwaway `pkube up` in a temp dir (and stops it).
Prints the median wall time of each command; the anchor is the real kubectl
v1.32 against the same server (a Go binary: ~50-100 ms for a list of 1,000).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.measure import python_loop_line  # noqa: E402 - after the path


def timed(argv: list[str], env: dict, runs: int) -> str:
    """Median wall and CPU (user+sys) milliseconds of ``runs`` executions, as text."""
    walls, cpus = [], []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        walls.append(time.perf_counter() - started)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return f"{statistics.median(walls) * 1000:.0f} ms wall, {statistics.median(cpus) * 1000:.0f} ms CPU"


def discovery(kubectl: str, env: dict, runs: int) -> str:
    """`kubectl get namespaces` with an empty discovery cache each run (so it discovers the API
    first: aggregated discovery takes 2 requests, the per-group-version documents one each),
    next to the same with a warm cache, as text."""
    walls, requests = [], 0
    with tempfile.TemporaryDirectory() as warm:
        for _ in range(runs):
            with tempfile.TemporaryDirectory() as cold:
                started = time.perf_counter()
                done = subprocess.run([kubectl, "--cache-dir", cold, "get", "namespaces", "-v=6"], env=env, check=True,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                walls.append(time.perf_counter() - started)
                requests = sum(1 for line in done.stderr.splitlines() if "round_trippers" in line and "GET" in line)
        subprocess.run([kubectl, "--cache-dir", warm, "get", "namespaces"], env=env, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        cached = timed([kubectl, "--cache-dir", warm, "get", "namespaces"], env, runs)
    return (f"cold discovery cache: {statistics.median(walls) * 1000:.0f} ms wall, {requests} requests; "
            f"warm [anchor]: {cached}")


def make_pods(kubeconfig: str, namespace: str, count: int) -> float:
    """Create ``count`` pods through the REST client (8 threads); returns seconds taken."""
    from pkube.client.kubeconfig import load_kubeconfig
    from pkube.client.resources import NAMESPACES, PODS
    from pkube.client.rest import ApiClient

    config = load_kubeconfig(kubeconfig)
    started = time.perf_counter()
    with ApiClient(config) as api:
        api.create(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})

        def one(i: int) -> None:
            api.create(PODS, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"bench-{i:05d}"},
                              "spec": {"containers": [{"name": "app", "image": "busybox"}]}}, namespace)

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            list(pool.map(one, range(count)))
    return time.perf_counter() - started


def start_cluster(data_dir: str) -> str:
    from pkube.cluster.etcd import free_port

    port = free_port()
    subprocess.run([sys.executable, "-m", "pkube.cluster", "up", "-d", "--data-dir", data_dir, "--port", str(port)],
                   check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    return str(Path(data_dir) / "admin.kubeconfig")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pods", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--kubeconfig")
    args = parser.parse_args()
    data_dir = None if args.kubeconfig else tempfile.mkdtemp(prefix="pkube-bench-")
    kubeconfig = args.kubeconfig or start_cluster(data_dir)
    namespace = f"bench-{os.getpid()}"
    env = dict(os.environ, KUBECONFIG=kubeconfig)
    pkubectl = [sys.executable, "-m", "pkube.kubectl"]
    try:
        print(python_loop_line())
        print(f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
        print(f"pkubectl version --client: {timed([*pkubectl, 'version', '--client'], env, args.runs)}")
        print(f"created {args.pods} pods in {make_pods(kubeconfig, namespace, args.pods):.1f} s")
        get = ["get", "pods", "-n", namespace]
        print(f"pkubectl get pods ({args.pods}): {timed([*pkubectl, *get], env, args.runs)}")
        print(f"pkubectl get pods -o json ({args.pods}): {timed([*pkubectl, *get, '-o', 'json'], env, args.runs)}")
        if shutil.which("kubectl"):
            print(f"kubectl get pods ({args.pods}) [anchor]: {timed(['kubectl', *get], env, args.runs)}")
            print(f"kubectl get namespaces, {discovery(shutil.which('kubectl'), env, args.runs)}")
    finally:
        if data_dir:
            subprocess.run([sys.executable, "-m", "pkube.cluster", "down", "--data-dir", data_dir], cwd=ROOT,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
