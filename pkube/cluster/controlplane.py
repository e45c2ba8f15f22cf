"""The control plane as static pods of the local kubelet, kubeadm style.

`StaticControlPlane.prepare` makes the host image in the kubelet's image store;
`start` writes the manifests one stage at a time into the kubelet's manifests directory:
etcd (then it starts the kubelet, whose first scan finds it), once etcd answers /health the
apiserver, and once that answers /readyz the scheduler and the controller-manager. (Our
apiserver exits when etcd is not there yet, and the kubelet's back-off would then make
`pkube up` wait 10 s or more.) The kubelet runs them with hostNetwork and restarts any that
dies; the caller supervises the kubelet. `stop` runs after the kubelet has stopped: it stops
the control plane's containers in reverse order, gracefully, and removes the manifests; the
caller then removes every pod left (cluster.up.remove_pods).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Callable, Optional

from pkube.cluster import certs
from pkube.cluster.components import http_ok, tail
from pkube.cluster.manifests import (APISERVER, CONTROL_PLANE, CONTROLLER_MANAGER, ETCD, SCHEDULER, ManifestValues,
                               etcd_binary, installation_paths, mirror_name, remove_manifests, render,
                               write_manifest)

STAGE_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0
POD_NAME_LABEL = "io.kubernetes.pod.name"    # kubelet.containers.POD_NAME, as the runtime stores it


class ControlPlaneError(RuntimeError):
    """A stage did not come up: the message's last line names it (what `pkube up -d` shows);
    the lines before are the end of its container's (or the kubelet's) log."""


class StaticControlPlane:
    """The static pods of one cluster: `kubelet_dir` holds the kubelet's runtime (its image
    store), `manifests_dir` is the kubelet's --manifests-dir."""

    def __init__(self, kubelet_dir: Path, manifests_dir: Path, node_name: str, log: Callable[[str], None],
                 stage_timeout: float = STAGE_TIMEOUT, extra_flags: Optional[dict[str, list[str]]] = None):
        self.kubelet_dir = kubelet_dir
        self.extra_flags = extra_flags or {}   # by static pod name: flags added to its command
        self.manifests_dir = manifests_dir
        self.node_name = node_name
        self.log = log
        self.stage_timeout = stage_timeout
        self.mounts: list[str] = []          # host paths every container gets, set by prepare()

    def runtime(self):
        from pkube.runtime.runtime import Runtime
        return Runtime(self.kubelet_dir / "runtime")

    def prepare(self, data_dir: Path, apiserver_port: int, etcd_ports: tuple[int, int]) -> ManifestValues:
        """Make the host image (if the store lacks it) and etcd's data directory; the values
        the templates are filled with (the certificates and kubeconfigs of cluster.certs must
        be there already). Raises ManifestError, HostImageError, OSError."""
        from pkube.runtime.hostimage import ensure_host_image, mount_points
        etcd = etcd_binary()
        paths = installation_paths(etcd)
        self.mounts = sorted("/" + p for p in mount_points(paths))
        image = ensure_host_image(self.runtime().images, paths)
        (data_dir / "etcd").mkdir(parents=True, exist_ok=True)
        os.chmod(data_dir / "etcd", 0o700)
        remove_manifests(self.manifests_dir)
        return ManifestValues(image=image, python=sys.executable, etcd=etcd, data_dir=str(data_dir),
                              pki_dir=str(certs.pki_dir(data_dir)),
                              scheduler_kubeconfig=str(certs.kubeconfig_path(data_dir, "scheduler")),
                              controller_manager_kubeconfig=str(certs.kubeconfig_path(data_dir, "controllers")),
                              apiserver_port=apiserver_port,
                              etcd_client_port=etcd_ports[0], etcd_peer_port=etcd_ports[1])

    def start(self, values: ManifestValues, kubelet, stopping: Callable[[], bool] = lambda: False) -> None:
        """Write etcd's manifest, start `kubelet` (a cluster.components.Component; its first
        scan then finds it), then write the other stages, waiting for etcd and the apiserver
        to answer. Raises ControlPlaneError (a stage timed out, the kubelet exited, or
        `stopping()` became true), ComponentError, ManifestError."""
        stages = [((ETCD,), f"http://127.0.0.1:{values.etcd_client_port}/health"),
                  ((APISERVER,), f"https://127.0.0.1:{values.apiserver_port}/readyz"),
                  ((SCHEDULER, CONTROLLER_MANAGER), None)]
        for names, health_url in stages:
            for name in names:
                self.log(f"writing the static pod manifest {name}")
                write_manifest(self.manifests_dir, name,
                               render(name, values, self.mounts, self.extra_flags.get(name, [])))
            if kubelet.proc is None:
                self.log("starting kubelet")
                kubelet.start()
            if health_url:
                self._wait(names[0], health_url, kubelet, stopping, f"{values.pki_dir}/ca.crt")

    def _wait(self, name: str, url: str, kubelet, stopping: Callable[[], bool], cafile: str) -> None:
        deadline = time.monotonic() + self.stage_timeout
        while time.monotonic() < deadline:
            if http_ok(url, cafile):
                return
            if not kubelet.alive():
                raise ControlPlaneError(f"last lines of {kubelet.log_path}:\n{tail(kubelet.log_path, 5)}\n"
                                        f"the kubelet exited while {name} was starting (its log: {kubelet.log_path})")
            if stopping():
                raise ControlPlaneError(f"stopped while {name} was starting")
            time.sleep(0.05)
        raise ControlPlaneError(self._last_log_lines(name)
                                + f"{name} did not answer {url} within {self.stage_timeout:.0f}s")

    def _last_log_lines(self, name: str, lines: int = 10) -> str:
        """'last lines of the NAME container's log: ...' and a newline, from the newest
        container of static pod `name`; '' when there is none (the last line of an error
        stays its summary: `pkube up -d` shows only that one)."""
        try:
            runtime = self.runtime()
            records = runtime.list(all=True, labels={POD_NAME_LABEL: mirror_name(name, self.node_name)})
            if not records:
                return f"the kubelet has not started a {name} container\n"
            text = b"".join(e.data for e in runtime.logs(records[0].id, tail=lines)).decode(errors="replace")
        except Exception:   # noqa: BLE001 - only a hint for the error message
            return ""
        return f"last lines of the {name} container's log:\n{text.rstrip()}\n" if text.strip() else ""

    def stop(self) -> None:
        """After the kubelet stopped: stop the control plane's containers (newest stage first,
        SIGTERM then SIGKILL after STOP_TIMEOUT) and remove the manifests. Best effort."""
        try:
            runtime = self.runtime()
            for name in reversed(CONTROL_PLANE):
                for record in runtime.list(labels={POD_NAME_LABEL: mirror_name(name, self.node_name)}):
                    runtime.stop(record.id, timeout=STOP_TIMEOUT)
        except Exception as err:   # noqa: BLE001 - the caller removes everything anyway
            self.log(f"could not stop the control plane gracefully: {err}")
        remove_manifests(self.manifests_dir)
