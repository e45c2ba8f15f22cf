"""The controller-manager: builds the chosen controllers on one shared context and runs them.

``ControllerManager(client, names).run()`` builds every controller (each module's
``new_controller(ctx)``), starts the shared informers and the Event recorder,
and runs the controllers until cancelled. With leader election (``__main__``)
``run`` is what the elected leader does; a standby builds nothing.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
from typing import Callable, Optional

from pkube.client.clock import Clock
from pkube.controllers.base import Controller, ControllerContext

log = logging.getLogger(__name__)

# name -> module whose new_controller(ctx) builds the controller.
CONTROLLERS = {
    "replicaset": "pkube.controllers.replicaset",
    "deployment": "pkube.controllers.deployment",
    "daemonset": "pkube.controllers.daemonset",
    "statefulset": "pkube.controllers.statefulset",
    "garbagecollector": "pkube.controllers.garbagecollector",
    "namespace": "pkube.controllers.namespace",
    "serviceaccount": "pkube.controllers.serviceaccount",
    "root-ca-cert-publisher": "pkube.controllers.rootcacert",
    "csrsigning": "pkube.controllers.certificates",
    "csrapproving": "pkube.controllers.csrapproving",
    "endpoints": "pkube.controllers.endpoints",
    "endpointslice": "pkube.controllers.endpointslice",
    "nodelifecycle": "pkube.controllers.nodelifecycle",
    "nodeipam": "pkube.controllers.nodeipam",
    "disruption": "pkube.controllers.disruption",
    "horizontalpodautoscaling": "pkube.controllers.horizontal",
    "job": "pkube.controllers.job",
    "cronjob": "pkube.controllers.cronjob",
    "ttlafterfinished": "pkube.controllers.ttlafterfinished",
    "podgc": "pkube.controllers.podgc",
    "replicationcontroller": "pkube.controllers.replicationcontroller",
    "persistentvolume-binder": "pkube.controllers.persistentvolume",
    "volume-protection": "pkube.controllers.volumeprotection",
}


def available_controllers() -> dict[str, Callable[[ControllerContext], Controller]]:
    """name -> new_controller of every controller."""
    return {name: importlib.import_module(module).new_controller for name, module in CONTROLLERS.items()}


def choose(names: Optional[list[str]]) -> dict[str, Callable]:
    """The controllers to run: all available ones for None (or "*"); ValueError for unknown names."""
    available = available_controllers()
    if not names or names == ["*"]:
        return available
    unknown = [n for n in names if n not in available]
    if unknown:
        raise ValueError(f"unknown controllers {unknown}; available: {', '.join(sorted(available))}")
    return {n: available[n] for n in names}


class ControllerManager:
    """See the module docstring. ``options`` reach controllers as ``ctx.options``."""

    def __init__(self, client, names: Optional[list[str]] = None, clock: Optional[Clock] = None,
                 resync_period: float = 0.0, **options):
        self.client = client
        self.factories = choose(names)
        self.clock = clock or Clock()
        self.resync_period = resync_period
        self.options = options
        self.controllers: list[Controller] = []

    async def run(self) -> None:
        """Build, start and run every controller until cancelled."""
        ctx = ControllerContext.create(self.client, self.clock, self.resync_period, **self.options)
        self.controllers = [factory(ctx) for factory in self.factories.values()]
        log.info("starting controllers: %s", ", ".join(self.factories))
        ctx.informers.start()
        events = asyncio.ensure_future(ctx.recorder.run())
        try:
            await asyncio.gather(*(c.run() for c in self.controllers))
        finally:
            events.cancel()
            await ctx.informers.stop()
