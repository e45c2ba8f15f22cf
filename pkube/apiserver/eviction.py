"""POST pods/NAME/eviction (policy/v1 Eviction): a delete that honours PodDisruptionBudgets, as
Kubernetes' pkg/registry/core/pod/storage/eviction.go does.

- A pod that is Pending, Succeeded or Failed, or already being deleted, goes regardless.
- A pod matched by more than one budget: 500 (the subresource does not support it).
- Under one budget: the budget's ``status.disruptionsAllowed`` is decremented and the pod is
  recorded in ``status.disruptedPods`` (so the disruption controller does not count it healthy
  before it is gone) in one compare-and-swap of the budget; when nothing is allowed (or the
  budget's status is older than its spec), 429 TooManyRequests with Kubernetes' message and a
  DisruptionBudget cause. A Running pod that is not Ready is let go without spending the
  budget when the budget is healthy (``IfHealthyBudget``) or always (``AlwaysAllow``).
- Before the delete the pod gets the DisruptionTarget condition (reason EvictionByEvictionAPI).
- The Eviction's ``deleteOptions`` (grace period, preconditions, dryRun) apply to the delete;
  with dryRun nothing is written at all. A running pod evicted without asking a budget (it was
  Pending) is deleted only at the resourceVersion seen, as Kubernetes does.
"""

from __future__ import annotations

from dataclasses import replace

from pkube.api import meta
from pkube.api.disruption import set_disruption_allowed
from pkube.api.kinds import Registry
from pkube.api.selectors import SelectorError, label_selector_from_dict
from pkube.apiserver import errors
from pkube.apiserver.deletion import Deleter, DeleteOptions, delete_options
from pkube.apiserver.paths import Target
from pkube.apiserver.resources import ResourceStore, translate
from pkube.apiserver.storage.interface import Preconditions

TOO_MANY_REQUESTS_MESSAGE = "Cannot evict pod as it would violate the pod's disruption budget."
MULTIPLE_BUDGETS_MESSAGE = ("This pod has more than one PodDisruptionBudget, which the eviction "
                            "subresource does not support.")
DISRUPTION_BUDGET_CAUSE = "DisruptionBudget"
MAX_DISRUPTED_PODS = 2000
EVICTION_VERSIONS = ("policy/v1", "policy/v1beta1")


async def evict(store: ResourceStore, deleter: Deleter, registry: Registry, target: Target,
                eviction: dict) -> dict:
    """Serve one Eviction of ``target`` (a pod); returns the Success Status (201). Raises
    ApiError: 429 when a budget forbids it, 500 for several budgets, 404 for no pod."""
    options = _delete_options(eviction)
    pod = await store.get(target)
    if can_ignore_budget(pod):
        options = _pinned(options, pod)
    else:
        budgets = await matching_budgets(store, registry, pod)
        if len(budgets) > 1:
            raise errors.internal_error(MULTIPLE_BUDGETS_MESSAGE)
        if budgets:
            await _spend(store, registry, budgets[0], pod, options.dry_run)
    if not options.dry_run:
        marked = await _mark_disruption_target(store, target, options.preconditions)
        if options.preconditions.resource_version is not None:   # the version we just wrote
            written = marked["metadata"].get("resourceVersion")
            options = replace(options, preconditions=replace(options.preconditions, resource_version=written))
    await deleter.delete(target, options)
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}


def _pinned(options: DeleteOptions, pod: dict) -> DeleteOptions:
    """A pod evicted without asking a budget is deleted only as it was seen (its
    resourceVersion as a precondition, unless the caller gave one), so that a pod that
    started running meanwhile is not deleted past its budget; finished pods need no pin."""
    if options.preconditions.resource_version is not None or (pod.get("status") or {}).get("phase") in (
            "Succeeded", "Failed"):
        return options
    return replace(options, preconditions=replace(options.preconditions,
                                                  resource_version=pod["metadata"].get("resourceVersion")))


def _delete_options(eviction: dict) -> DeleteOptions:
    if eviction.get("kind") not in (None, "Eviction"):
        raise errors.bad_request(f"expected an Eviction, got kind {eviction.get('kind')!r}")
    if eviction.get("apiVersion") not in (None, *EVICTION_VERSIONS):
        raise errors.bad_request(f"unsupported Eviction apiVersion {eviction.get('apiVersion')!r}")
    options = eviction.get("deleteOptions")
    return delete_options({}, options if isinstance(options, dict) else None)


def can_ignore_budget(pod: dict) -> bool:
    """Pods that are not running (or already going) are evicted without asking any budget."""
    phase = (pod.get("status") or {}).get("phase")
    return phase in ("Pending", "Succeeded", "Failed") or bool(pod["metadata"].get("deletionTimestamp"))


async def matching_budgets(store: ResourceStore, registry: Registry, pod: dict) -> list[dict]:
    """The budgets of the pod's namespace whose selector matches it (a null selector matches
    nothing, an empty one everything, as in policy/v1)."""
    info = registry.by_kind("PodDisruptionBudget", "policy")
    namespace = pod["metadata"].get("namespace")
    listed = await store.storage.list(info.key_prefix(namespace))
    labels = pod["metadata"].get("labels") or {}
    return [pdb for pdb in listed.items if _selects(pdb, labels)]


def _selects(pdb: dict, labels: dict) -> bool:
    try:
        return label_selector_from_dict((pdb.get("spec") or {}).get("selector")).matches(labels)
    except SelectorError:
        return False


async def _spend(store: ResourceStore, registry: Registry, pdb: dict, pod: dict, dry_run: bool) -> None:
    """Take one disruption from ``pdb`` for ``pod`` (a compare-and-swap on the budget, retried
    on conflicts with the fresh budget); raises 429/403 when the budget forbids it."""
    info = registry.by_kind("PodDisruptionBudget", "policy")
    name = meta.name_of(pdb)
    key = info.key(pdb["metadata"].get("namespace"), name)
    now = meta.now_rfc3339()
    if dry_run:
        decremented(pdb, pod, now)
        return
    with translate(info, name):
        await store.storage.guaranteed_update(key, lambda current: decremented(current, pod, now))


def decremented(pdb: dict, pod: dict, now: str) -> dict:
    """Pure: ``pdb`` (mutated, its own copy) with one disruption spent on ``pod``; the same
    ``pdb`` unchanged when the pod may go without spending any. Raises ApiError when the
    budget does not allow it."""
    spec, status = pdb.get("spec") or {}, pdb.setdefault("status", {})
    name = meta.name_of(pdb)
    if status.get("observedGeneration", 0) < pdb["metadata"].get("generation", 1):
        raise too_many_requests(f"The disruption budget {name} is still being processed by the server.", 10)
    if not _is_ready(pod) and _unready_may_go(spec, status):
        return pdb
    allowed = int(status.get("disruptionsAllowed") or 0)
    if allowed < 0:
        raise _forbidden(name, "pdb disruptions allowed is negative")
    if len(status.get("disruptedPods") or {}) > MAX_DISRUPTED_PODS:
        raise _forbidden(name, "DisruptedPods map too big - too many evictions not confirmed by PDB controller")
    if allowed == 0:
        raise too_many_requests(f"The disruption budget {name} needs {int(status.get('desiredHealthy') or 0)} "
                                f"healthy pods and has {int(status.get('currentHealthy') or 0)} currently")
    status["disruptionsAllowed"] = allowed - 1
    if allowed - 1 == 0:
        set_disruption_allowed(status, False, now)
    status.setdefault("disruptedPods", {})[meta.name_of(pod)] = now
    return pdb


def _unready_may_go(spec: dict, status: dict) -> bool:
    if spec.get("unhealthyPodEvictionPolicy") == "AlwaysAllow":
        return True
    desired = int(status.get("desiredHealthy") or 0)
    return int(status.get("currentHealthy") or 0) >= desired > 0


def _is_ready(pod: dict) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def too_many_requests(cause: str, retry_after: int = 0) -> errors.ApiError:
    details: dict = {"causes": [{"reason": DISRUPTION_BUDGET_CAUSE, "message": cause}]}
    if retry_after:
        details["retryAfterSeconds"] = retry_after
    return errors.ApiError(429, "TooManyRequests", TOO_MANY_REQUESTS_MESSAGE, details)


def _forbidden(name: str, why: str) -> errors.ApiError:
    return errors.ApiError(403, "Forbidden", f'poddisruptionbudgets.policy "{name}" is forbidden: {why}',
                           {"name": name, "group": "policy", "kind": "poddisruptionbudgets"})


async def _mark_disruption_target(store: ResourceStore, target: Target, preconditions: Preconditions) -> dict:
    """The pod with the DisruptionTarget condition written (409 when ``preconditions`` fail)."""
    now = meta.now_rfc3339()
    with translate(target.info, target.name):
        return await store.storage.guaranteed_update(target.key, lambda pod: with_disruption_target(pod, now),
                                                     preconditions)


def with_disruption_target(pod: dict, now: str) -> dict:
    """Pure: ``pod`` with the DisruptionTarget=True condition of an eviction (unchanged when it
    has it already)."""
    status = pod.setdefault("status", {})
    conditions = status.get("conditions") or []
    if any(c.get("type") == "DisruptionTarget" and c.get("status") == "True" for c in conditions):
        return pod
    status["conditions"] = [c for c in conditions if c.get("type") != "DisruptionTarget"] + [
        {"type": "DisruptionTarget", "status": "True", "lastProbeTime": None, "lastTransitionTime": now,
         "reason": "EvictionByEvictionAPI", "message": "Eviction API: evicting"}]
    return pod
