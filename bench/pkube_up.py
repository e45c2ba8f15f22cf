"""How long `pkube up -d` takes: the control plane as child processes against the control
plane as static pods of the kubelet (`--static-pods`).

Each run starts `pkube up -d` in a fresh data directory and polls, from that moment:
  - readyz: the apiserver's /readyz answers 200;
  - returned: `pkube up -d` returned (it waits for readyz itself);
  - node Ready: `kubectl get nodes` would show the node Ready (its Ready condition True;
    this needs the controller-manager's node IPAM to give the node a podCIDR).
then runs `pkube down` and times it. The medians over the runs are printed.

Needs root, etcd, and no other kubelet on the host.
Usage: python bench/pkube_up.py [--runs 3] [--modes processes,static]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx  # noqa: E402

from pkube.cluster.etcd import free_port  # noqa: E402

NODE = "bench-node"
MODES = {"processes": ["--no-static-pods"], "static": ["--static-pods"]}


def pkube(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "pkube.cluster", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)


def admin_http(data_dir: str) -> httpx.Client | None:
    """A client with the admin kubeconfig's CA and certificate, once `pkube up` has written it."""
    from pkube.client.kubeconfig import KubeconfigError, load_kubeconfig
    from pkube.client.rest import ssl_context
    try:
        config = load_kubeconfig(str(Path(data_dir) / "admin.kubeconfig"))
    except KubeconfigError:
        return None
    return httpx.Client(base_url=config.server, verify=ssl_context(config), timeout=2)


def node_ready(http: httpx.Client) -> bool:
    try:
        answer = http.get(f"/api/v1/nodes/{NODE}")
    except httpx.HTTPError:
        return False
    conditions = answer.json().get("status", {}).get("conditions", []) if answer.status_code == 200 else []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def readyz(http: httpx.Client) -> bool:
    try:
        return http.get("/readyz").status_code == 200
    except httpx.HTTPError:
        return False


def one_run(flags: list[str], timeout: float = 120) -> dict[str, float]:
    """Seconds from `pkube up -d` to readyz, to its return and to the node Ready; then down."""
    port = free_port()
    http = None
    with tempfile.TemporaryDirectory(prefix="pkube-bench-") as data_dir:
        start = time.monotonic()
        up = pkube("up", "-d", "--data-dir", data_dir, "--port", str(port), "--node-name", NODE,
                   "--kubelet-port", str(free_port()), *flags)
        times: dict[str, float] = {}
        try:
            while len(times) < 3 and time.monotonic() - start < timeout:
                now = time.monotonic() - start
                if "returned" not in times and up.poll() is not None:
                    if up.returncode != 0:
                        raise SystemExit(f"pkube up failed: {up.stderr.read().strip()}")
                    times["returned"] = now
                http = http or admin_http(data_dir)
                if http is None:
                    pass
                elif "readyz" not in times and readyz(http):
                    times["readyz"] = now
                elif "readyz" in times and "node Ready" not in times and node_ready(http):
                    times["node Ready"] = now
                time.sleep(0.02)
        finally:
            if http is not None:
                http.close()
            up.wait()
            down_start = time.monotonic()
            pkube("down", "--data-dir", data_dir).wait()
            times["down"] = time.monotonic() - down_start
    return times


def other_kubelets() -> list[int]:
    """Running kubelets (`python -m pkube.kubelet`): one host runs one at a time."""
    found = subprocess.run(["pgrep", "-f", "[-]m kubelet "], capture_output=True, text=True).stdout
    return [int(pid) for pid in found.split()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--modes", default="processes,static")
    args = parser.parse_args()
    if other_kubelets():
        raise SystemExit(f"another kubelet runs on this host (pids {other_kubelets()}); stop it first")
    for mode in args.modes.split(","):
        runs = [one_run(MODES[mode]) for _ in range(args.runs)]
        cells = "  ".join(f"{key} {statistics.median(r[key] for r in runs):5.2f}s"
                          for key in ("readyz", "returned", "node Ready", "down"))
        print(f"{mode:10} (median of {args.runs})  {cells}", flush=True)


if __name__ == "__main__":
    main()
