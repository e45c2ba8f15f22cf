"""pkubectl taint and drain: taint specs and kubectl's reorganizeTaints; drain's filters, its
messages, and the fall back from pods/eviction to DELETE."""

import datetime
import io
import json
from types import SimpleNamespace

import pytest

from pkube.client.errors import ApiError, NotFound, error_for_status, status_for
from pkube.kubectl.drain import Drainer, DrainOptions, error_lines, failure_text, verdict, warning_line
from pkube.kubectl.errors import CliError
from pkube.kubectl.nodes import MODIFIED, TAINTED, UNTAINTED, Taint, parse_taint_specs, reorganize_taints

NOW = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)


def test_taint_specs():
    adds, removals = parse_taint_specs(["k=v:NoSchedule", "gpu:NoExecute", "old:PreferNoSchedule-", "any-"])
    assert adds == [Taint("k", "v", "NoSchedule"), Taint("gpu", "", "NoExecute")]
    assert removals == [Taint("old", "", "PreferNoSchedule"), Taint("any")]
    assert str(adds[0]) == "k=v:NoSchedule" and str(removals[1]) == "any"
    with pytest.raises(CliError, match="invalid taint effect: Bogus, unsupported taint effect"):
        parse_taint_specs(["k=v:Bogus"])
    with pytest.raises(CliError, match="invalid taint spec: k=v"):
        parse_taint_specs(["k=v"])
    with pytest.raises(CliError, match="invalid taint spec"):
        parse_taint_specs(["bad key:NoSchedule"])


def test_reorganize_taints_as_kubectl():
    current = [{"key": "a", "value": "1", "effect": "NoSchedule"}]
    verb, taints = reorganize_taints("n1", current, [Taint("b", "", "NoExecute")], [], False, NOW)
    assert verb == TAINTED
    assert taints == [{"key": "b", "effect": "NoExecute", "timeAdded": "2026-01-02T03:04:05Z"}, current[0]]
    assert reorganize_taints("n1", current, [], [Taint("a")], False) == (UNTAINTED, [])
    assert reorganize_taints("n1", current, [Taint("a", "2", "NoSchedule")], [], True)[0] == MODIFIED
    assert reorganize_taints("n1", current, [Taint("c", "", "NoSchedule")], [Taint("a", "", "NoSchedule")],
                             False)[0] == MODIFIED
    with pytest.raises(CliError, match="node n1 already has a taint"):
        reorganize_taints("n1", current, [Taint("a", "9", "NoSchedule")], [], False)
    with pytest.raises(CliError, match='taint "a:NoExecute" not found'):
        reorganize_taints("n1", current, [], [Taint("a", "", "NoExecute")], False)


# ---------------------------------------------------------------- drain's filters

def pod(name, owner=None, emptydir=False, phase="Running", mirror=False):
    meta = {"name": name, "namespace": "default", "uid": f"uid-{name}"}
    if owner:
        meta["ownerReferences"] = [{"kind": owner, "name": "o", "controller": True}]
    if mirror:
        meta["annotations"] = {"kubernetes.io/config.mirror": "hash"}
    spec = {"volumes": [{"name": "v", "emptyDir": {}}]} if emptydir else {}
    return {"metadata": meta, "spec": spec, "status": {"phase": phase}}


def no_daemonset(pod, name):
    return NotFound(status_for(404, "NotFound", f'daemonsets.apps "{name}" not found'))


def daemonset_exists(pod, name):
    return None


def test_verdicts_follow_kubectls_filters():
    plain = DrainOptions()
    assert verdict(pod("rs", "ReplicaSet"), plain, daemonset_exists).delete
    assert verdict(pod("bare"), plain, daemonset_exists).message.startswith("cannot delete Pods that declare no controller")
    assert verdict(pod("bare"), DrainOptions(force=True), daemonset_exists).kind == "warning"
    assert verdict(pod("done", phase="Succeeded"), plain, daemonset_exists).delete
    assert verdict(pod("scratch", "ReplicaSet", emptydir=True), plain, daemonset_exists).kind == "error"
    assert verdict(pod("scratch", "ReplicaSet", emptydir=True), DrainOptions(delete_emptydir_data=True),
                   daemonset_exists).delete
    assert verdict(pod("static", mirror=True), plain, daemonset_exists) == verdict(pod("m", mirror=True), plain,
                                                                                    daemonset_exists)
    assert verdict(pod("static", mirror=True), plain, daemonset_exists).kind == "skip"
    ds = pod("ds", "DaemonSet")
    assert verdict(ds, plain, daemonset_exists).message == "DaemonSet-managed Pods (use --ignore-daemonsets to ignore)"
    kept = verdict(ds, DrainOptions(ignore_daemonsets=True), daemonset_exists)
    assert (kept.delete, kept.kind) == (False, "warning")
    assert verdict(ds, plain, no_daemonset).kind == "error"
    assert verdict(ds, DrainOptions(force=True), no_daemonset).delete      # an orphan goes with --force


def test_messages_group_pods_by_reason():
    verdicts = [(p, verdict(p, DrainOptions(), daemonset_exists)) for p in (pod("a"), pod("b"), pod("c", "DaemonSet"))]
    assert error_lines(verdicts) == [
        "cannot delete cannot delete Pods that declare no controller (use --force to override): default/a, default/b",
        "cannot delete DaemonSet-managed Pods (use --ignore-daemonsets to ignore): default/c"]
    forced = [(p, verdict(p, DrainOptions(force=True, ignore_daemonsets=True), daemonset_exists))
              for p in (pod("a"), pod("c", "DaemonSet"))]
    assert warning_line(forced) == ("Warning: deleting Pods that declare no controller: default/a; "
                                    "ignoring DaemonSet-managed Pods: default/c")
    assert failure_text("n1", ["one"]) == ('unable to drain node "n1" due to error: one, continuing command...\n'
                                           'There are pending nodes to be drained:\n n1\none')
    assert failure_text("n1", ["x", "y"]).startswith('unable to drain node "n1" due to error: [x, y], continuing')


# ---------------------------------------------------------------- eviction, or DELETE when it is not served

class NoEvictionServer:
    """A session whose server answers pods/eviction with ``code`` and keeps pods until DELETE."""

    def __init__(self, code: int):
        self.code, self.pods, self.deleted = code, {"web": pod("web", "ReplicaSet")}, []
        self.client = SimpleNamespace(get=self.get, delete=self.delete)

    def request(self, method, path, body=None, content_type=None):
        assert method == "POST" and path.endswith("/pods/web/eviction")
        assert json.loads(body)["deleteOptions"] == {"gracePeriodSeconds": 5}
        raise error_for_status(status_for(self.code, "NotFound" if self.code == 404 else "MethodNotAllowed", "no"))

    def get(self, resource, name, namespace=None):
        if name not in self.pods:
            raise NotFound(status_for(404, "NotFound", f'pods "{name}" not found'))
        return self.pods[name]

    def delete(self, resource, name, namespace=None, grace_period_seconds=None):
        self.deleted.append((name, grace_period_seconds))
        self.pods.pop(name)


@pytest.mark.parametrize("code", [404, 405])
def test_without_the_eviction_subresource_drain_deletes_with_the_grace_period(code):
    server, err = NoEvictionServer(code), io.StringIO()
    drainer = Drainer(server, "n1", DrainOptions(grace_period=5), io.StringIO(), err)
    assert drainer.evict(server.pods["web"], deadline=1e12) == "done"
    assert server.deleted == [("web", 5)] and drainer.use_delete
    assert err.getvalue() == f"the server does not serve pods/eviction (HTTP {code}): deleting pods instead\n"


def test_an_eviction_404_for_a_pod_already_gone_is_success():
    server = NoEvictionServer(404)
    gone = server.pods.pop("web")
    drainer = Drainer(server, "n1", DrainOptions(grace_period=5), io.StringIO(), io.StringIO())
    assert drainer.evict(gone, deadline=1e12) == "done" and not drainer.use_delete and server.deleted == []


def test_other_eviction_errors_are_kept_for_the_report():
    server = NoEvictionServer(500)
    drainer = Drainer(server, "n1", DrainOptions(grace_period=5), io.StringIO(), io.StringIO())
    assert drainer.evict(server.pods["web"], deadline=1e12) == "failed"
    assert drainer.errors == ['error when evicting pods/"web" -n "default": no']
    assert isinstance(error_for_status(status_for(500, "InternalError", "x")), ApiError)
