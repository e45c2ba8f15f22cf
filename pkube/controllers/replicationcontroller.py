"""ReplicationController controller (core/v1): the ReplicaSet controller's logic, with the
equality-based selector of an RC (``spec.selector`` is a map of labels, not a LabelSelector).

Everything else, claiming pods, slow-start creates, the scale-down order, the status and the
ReplicaFailure condition, is ``controllers.replicaset.ReplicaSetController``'s.
"""

from __future__ import annotations

from pkube.client.resources import REPLICATIONCONTROLLERS
from pkube.controllers.base import ControllerContext
from pkube.controllers.replicaset import DEFAULT_BURST, ReplicaSetController



class ReplicationControllerController(ReplicaSetController):
    name = "replicationcontroller"
    resource = REPLICATIONCONTROLLERS
    kind = "ReplicationController"

    @staticmethod
    def selector_of(obj: dict) -> dict:
        """An RC's map selector as the LabelSelector it means; {} (selects nothing) when empty."""
        selector = obj["spec"].get("selector")
        return {"matchLabels": selector} if isinstance(selector, dict) and selector else {}


def new_controller(ctx: ControllerContext) -> ReplicationControllerController:
    return ReplicationControllerController(ctx, burst=int(ctx.options.get("replicaset_burst", DEFAULT_BURST)))
