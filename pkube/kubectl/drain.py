"""``pkubectl drain NODE``: cordon, then evict the node's pods (policy/v1 Eviction through
``pods/{name}/eviction``), and wait for them to be gone, as kubectl's drain does.

Which pods may go is decided by kubectl's filters, in its order (pure, in ``verdict``):
DaemonSet-managed pods (kept with ``--ignore-daemonsets``), mirror pods (skipped), pods
with emptyDir data (``--delete-emptydir-data``), pods no controller owns (``--force``).
A server that does not serve the eviction subresource (404/405 for a pod that exists)
gets DELETEs with the grace period instead, said in one line.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

from pkube.kubectl.errors import CliError

MIRROR_ANNOTATION = "kubernetes.io/config.mirror"
EVICTION_RETRY_SECONDS = 5.0
NO_TIMEOUT_SECONDS = 365 * 24 * 3600.0
DAEMONSET_FATAL = "DaemonSet-managed Pods (use --ignore-daemonsets to ignore)"
DAEMONSET_WARNING = "ignoring DaemonSet-managed Pods"
LOCAL_STORAGE_FATAL = "Pods with local storage (use --delete-emptydir-data to override)"
LOCAL_STORAGE_WARNING = "deleting Pods with local storage"
UNMANAGED_FATAL = "cannot delete Pods that declare no controller (use --force to override)"
UNMANAGED_WARNING = "deleting Pods that declare no controller"


@dataclass(frozen=True)
class DrainOptions:
    ignore_daemonsets: bool = False
    delete_emptydir_data: bool = False
    force: bool = False
    grace_period: int = -1      # -1: each pod's own terminationGracePeriodSeconds
    timeout: float = 0.0        # 0: wait forever
    pod_selector: Optional[str] = None
    dry_run: str = "none"       # client: evict nothing; server: evictions checked, not made


@dataclass(frozen=True)
class Verdict:
    """What drain does with one pod: delete it or not, and why (a warning or an error)."""

    delete: bool
    kind: str = "okay"      # okay, skip, warning, error
    message: str = ""


def verdict(pod: dict, options: DrainOptions, daemonset_error: Callable[[dict, str], Optional[Exception]]) -> Verdict:
    """kubectl's filter chain for one pod: the first verdict that keeps the pod, else the last
    one. ``daemonset_error(pod, name)`` is None when the owning DaemonSet exists, else the
    error reading it (NotFound for a missing one)."""
    result = Verdict(True)
    for check in (_daemonset_check, _mirror_check, _local_storage_check, _unreplicated_check):
        result = check(pod, options, daemonset_error)
        if not result.delete:
            return result
    return result


def _controller(pod: dict) -> Optional[dict]:
    refs = (pod.get("metadata") or {}).get("ownerReferences") or []
    return next((ref for ref in refs if ref.get("controller")), None)


def _finished(pod: dict) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def _daemonset_check(pod, options, daemonset_error) -> Verdict:
    from pkube.client.errors import NotFound

    ref = _controller(pod)
    if ref is None or ref.get("kind") != "DaemonSet" or _finished(pod):
        return Verdict(True)
    error = daemonset_error(pod, ref.get("name", ""))
    if error is not None:
        if isinstance(error, NotFound) and options.force:
            return Verdict(True, "warning", str(getattr(error, "message", error)))
        return Verdict(False, "error", str(getattr(error, "message", error)))
    if not options.ignore_daemonsets:
        return Verdict(False, "error", DAEMONSET_FATAL)
    return Verdict(False, "warning", DAEMONSET_WARNING)


def _mirror_check(pod, options, daemonset_error) -> Verdict:
    if MIRROR_ANNOTATION in ((pod.get("metadata") or {}).get("annotations") or {}):
        return Verdict(False, "skip")
    return Verdict(True)


def _local_storage_check(pod, options, daemonset_error) -> Verdict:
    volumes = (pod.get("spec") or {}).get("volumes") or []
    if not any("emptyDir" in v for v in volumes) or _finished(pod):
        return Verdict(True)
    if not options.delete_emptydir_data:
        return Verdict(False, "error", LOCAL_STORAGE_FATAL)
    return Verdict(True, "warning", LOCAL_STORAGE_WARNING)


def _unreplicated_check(pod, options, daemonset_error) -> Verdict:
    if _finished(pod) or _controller(pod) is not None:
        return Verdict(True)
    if not options.force:
        return Verdict(False, "error", UNMANAGED_FATAL)
    return Verdict(True, "warning", UNMANAGED_WARNING)


def pod_key(pod: dict) -> str:
    meta = pod.get("metadata") or {}
    return f"{meta.get('namespace', '')}/{meta.get('name', '')}"


def grouped(verdicts: list[tuple[dict, Verdict]], kind: str) -> list[tuple[str, list[str]]]:
    """(message, [ns/pod...]) for the verdicts of one kind, messages in first-seen order."""
    groups: dict[str, list[str]] = {}
    for pod, result in verdicts:
        if result.kind == kind:
            groups.setdefault(result.message or "unexpected error", []).append(pod_key(pod))
    return list(groups.items())


def error_lines(verdicts: list[tuple[dict, Verdict]]) -> list[str]:
    return [f"cannot delete {message}: {', '.join(pods)}" for message, pods in grouped(verdicts, "error")]


def warning_line(verdicts: list[tuple[dict, Verdict]]) -> Optional[str]:
    parts = [f"{message}: {', '.join(pods)}" for message, pods in grouped(verdicts, "warning")]
    return "Warning: " + "; ".join(parts) if parts else None


def failure_text(node: str, errors: list[str]) -> str:
    """kubectl's closing error of a drain that could not finish (after ``error: ``)."""
    joined = errors[0] if len(errors) == 1 else "[" + ", ".join(errors) + "]"
    return (f"unable to drain node \"{node}\" due to error: {joined}, continuing command...\n"
            f"There are pending nodes to be drained:\n {node}\n" + "\n".join(errors))


def _go_duration(seconds: float) -> str:
    """A duration as Go prints it: 30s, 1m30s, 2m0s, 1h0m0s."""
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    return f"{minutes}m{secs}s" if minutes else f"{secs}s"


def _dry_run_suffix(dry_run: str) -> str:
    return {"client": " (dry run)", "server": " (server dry run)"}.get(dry_run, "")


# ---------------------------------------------------------------- talking to the server

@dataclass
class Drainer:
    """One drain of one node; ``run`` prints kubectl's lines and raises CliError on failure."""

    session: object
    node: str
    options: DrainOptions
    out: object
    err: object
    use_delete: bool = False      # set once the server turned out not to serve pods/eviction
    errors: list = field(default_factory=list)

    def run(self) -> None:
        from pkube.kubectl.mutate import Target
        from pkube.kubectl.nodes import set_unschedulable

        nodes = self.session.resolve("nodes")
        self._say(set_unschedulable(self.session, Target(nodes, self.node, None), True, self.options.dry_run))
        verdicts = [(pod, verdict(pod, self.options, self._daemonset_error)) for pod in self._pods()]
        problems = error_lines(verdicts)
        if problems:
            raise CliError(failure_text(self.node, problems))
        warning = warning_line(verdicts)
        if warning:
            self._say(warning, self.err)
        chosen = [pod for pod, result in verdicts if result.delete]
        if self.options.dry_run != "none":
            self._rehearse(chosen)
        else:
            self._remove(chosen)
        self._say(f"node/{self.node} drained{_dry_run_suffix(self.options.dry_run)}")

    def _say(self, line: str, stream=None) -> None:
        stream = stream or self.out
        stream.write(line + "\n")
        stream.flush()

    def _pods(self) -> list[dict]:
        from pkube.client.resources import PODS

        listed = self.session.client.list_all(PODS, None, self.options.pod_selector,
                                              field_selector=f"spec.nodeName={self.node}")
        return listed.get("items") or []

    def _daemonset_error(self, pod: dict, name: str) -> Optional[Exception]:
        from pkube.client.errors import ApiError
        from pkube.client.resources import DAEMONSETS

        try:
            self.session.client.get(DAEMONSETS, name, (pod.get("metadata") or {}).get("namespace"))
            return None
        except ApiError as error:
            return error

    def _rehearse(self, pods: list[dict]) -> None:
        """``--dry-run``: say what would be evicted; with server, each Eviction is sent with
        dryRun (checked by the server, nothing deleted). Nothing is waited for."""
        for pod in pods:
            meta = pod["metadata"]
            if self.options.dry_run == "server" and not self.use_delete:
                self._post_eviction(pod)
            self._say(f"evicting pod {meta.get('namespace', '')}/{meta['name']}{_dry_run_suffix(self.options.dry_run)}")

    def _remove(self, pods: list[dict]) -> None:
        """Evict (or delete) every pod, then wait for each to be gone, under one deadline.

        As kubectl's concurrent evictions: every pod is asked at once; those a disruption
        budget holds back (429) are asked again every 5 s, saying so, until the deadline."""
        deadline = time.monotonic() + (self.options.timeout or NO_TIMEOUT_SECONDS)
        removed, waiting = [], list(pods)
        while waiting:
            outcomes = [(pod, self.evict(pod, deadline)) for pod in waiting]
            removed += [pod for pod, outcome in outcomes if outcome == "done"]
            waiting = [pod for pod, outcome in outcomes if outcome == "retry"]
            if waiting:
                time.sleep(EVICTION_RETRY_SECONDS)
        pending = [pod for pod in removed if not self._gone(pod, deadline)]
        if pending or self.errors:
            self._fail(pending)

    def _gone(self, pod: dict, deadline: float) -> bool:
        if not self._wait_gone(pod, deadline):
            return False
        self._say(f"pod/{pod['metadata']['name']} {'deleted' if self.use_delete else 'evicted'}")
        return True

    def _fail(self, pending: list[dict]) -> None:
        """Say which pods drain would still remove from the node (listed again, as kubectl
        does) and raise kubectl's closing error; ``pending``: evicted, not gone in time."""
        errors = self.errors + [f"error when waiting for pod \"{p['metadata']['name']}\" in namespace "
                                f"\"{p['metadata'].get('namespace', '')}\" to terminate: context deadline exceeded"
                                for p in pending]
        joined = errors[0] if len(errors) == 1 else "[" + ", ".join(errors) + "]"
        self._say(f"There are pending pods in node \"{self.node}\" when an error occurred: {joined}", self.err)
        for pod in self._pods():
            if verdict(pod, self.options, self._daemonset_error).delete:
                self._say(f"pod/{pod['metadata']['name']}", self.err)
        raise CliError(failure_text(self.node, errors))

    def evict(self, pod: dict, deadline: float) -> str:
        """Ask once for one pod to go (what drain does for each pod it removes): "done",
        "retry" (a budget holds it back: 429), or "failed" (the error kept; also once
        ``deadline`` has passed)."""
        from pkube.client.errors import ApiError, NotFound

        meta = pod["metadata"]
        where = f"pods/\"{meta['name']}\" -n \"{meta.get('namespace', '')}\""
        if not self.use_delete:
            self._say(f"evicting pod {meta.get('namespace', '')}/{meta['name']}")
        if time.monotonic() > deadline:
            self.errors.append(f"error when evicting {where}: global timeout reached: "
                               f"{_go_duration(self.options.timeout)}")
            return "failed"
        try:
            if self.use_delete or not self._post_eviction(pod):
                self._delete(pod)
            return "done"
        except NotFound:
            return "done"    # already gone
        except ApiError as error:
            if error.code == 429:
                self._say(f"error when evicting {where} (will retry after 5s): {error.message}", self.err)
                return "retry"
            self.errors.append(f"error when evicting {where}: {error.message}")
            return "failed"

    def _post_eviction(self, pod: dict) -> bool:
        """POST the Eviction; False (and deletes from now on) when the server does not serve
        pods/eviction: 405, or 404 for a pod that still exists. Raises ApiError otherwise."""
        from pkube.client.errors import ApiError

        meta = pod["metadata"]
        body = {"apiVersion": "policy/v1", "kind": "Eviction",
                "metadata": {"name": meta["name"], "namespace": meta.get("namespace")}}
        options: dict = {"gracePeriodSeconds": self.options.grace_period} if self.options.grace_period >= 0 else {}
        if self.options.dry_run == "server":
            options["dryRun"] = ["All"]
        if options:
            body["deleteOptions"] = options
        path = f"/api/v1/namespaces/{meta.get('namespace')}/pods/{meta['name']}/eviction"
        try:
            self.session.request("POST", path, body=json.dumps(body).encode(), content_type="application/json")
            return True
        except ApiError as error:
            if error.code == 405 or (error.code == 404 and self._still_there(pod)):
                self.use_delete = True
                self._say(f"the server does not serve pods/eviction (HTTP {error.code}): deleting pods instead",
                          self.err)
                return False
            raise

    def _still_there(self, pod: dict) -> bool:
        from pkube.client.errors import NotFound
        from pkube.client.resources import PODS

        meta = pod["metadata"]
        try:
            self.session.client.get(PODS, meta["name"], meta.get("namespace"))
            return True
        except NotFound:
            return False

    def _delete(self, pod: dict) -> None:
        from pkube.client.resources import PODS

        meta = pod["metadata"]
        grace = self.options.grace_period if self.options.grace_period >= 0 else None
        self.session.client.delete(PODS, meta["name"], meta.get("namespace"), grace_period_seconds=grace)

    def _wait_gone(self, pod: dict, deadline: float) -> bool:
        from pkube.kubectl.mutate import Target
        from pkube.kubectl.waiting import WaitFor, wait_one

        meta = pod["metadata"]
        target = Target(self.session.resolve("pods"), meta["name"], meta.get("namespace"))
        try:
            wait_one(self.session, target, WaitFor("delete"), deadline, meta.get("uid"))
            return True
        except CliError:
            return False
