"""A worker node's processes: the kubelet and the proxy of a machine that joined a cluster
(cluster.join), supervised as `pkube up` supervises its own (cluster.components).

`run_foreground` holds DIR/pkube.lock and DIR/pkube.pid as `pkube up` does, so `pkube down
--data-dir DIR` stops a joined node the same way; on SIGTERM or SIGINT it stops the proxy and
the kubelet, then removes the proxy's rules and every pod the kubelet left (its containers,
its cgroup root, its volumes' mounts and the pods' bridge): what `pkube down` must not leave.
"""

from __future__ import annotations

from typing import Callable

from pkube.cluster import up
from pkube.cluster.components import Component, ComponentError, watch_components
from pkube.cluster.up import ClusterConfig, ClusterError, kubelet_component, proxy_component, remove_pods, remove_proxy_rules


class WorkerNode:
    """The kubelet and the proxy of one joined node (config: its data dir, name, flags)."""

    def __init__(self, config: ClusterConfig, log: Callable[[str], None]):
        self.config = config
        self.log = log
        self.components: list[Component] = []
        self._stopping = False

    def start(self) -> None:
        """Start the kubelet, then the proxy; ClusterError (after stopping both) on failure."""
        self.config.log_dir.mkdir(parents=True, exist_ok=True)
        for comp in (kubelet_component(self.config), proxy_component(self.config)):
            self.log(f"starting {comp.name}")
            try:
                comp.start()
            except (ComponentError, OSError) as err:
                self.stop()
                raise ClusterError(f"{comp.name}: {err}") from err
            self.components.append(comp)

    def supervise(self) -> None:
        watch_components(self.components, lambda: self._stopping, self.log)

    def request_stop(self, *_args) -> None:
        self._stopping = True

    def stop(self) -> None:
        """Stop the proxy and the kubelet, then remove their rules and pods. Idempotent."""
        self._stopping = True
        for comp in reversed(self.components):
            comp.stop()
        self.components = []
        remove_proxy_rules(self.log)
        remove_pods(self.config.data_dir / "kubelet", self.log, self.config.cgroup_root)


def run_foreground(config: ClusterConfig, log: Callable[[str], None], on_ready: Callable[[], None]) -> None:
    """Run the node's processes in this process until SIGINT/SIGTERM; raise ClusterError."""
    up.run_foreground(config, log, on_ready, runner=WorkerNode)
