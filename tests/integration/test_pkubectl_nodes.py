"""pkubectl cordon, uncordon, taint and drain against a real etcd + apiserver, with pods bound
to a Node object the test creates; compared with the real kubectl (v1.32), and with a stand-in
for the kubelet's part of a graceful delete (it removes a terminating pod) so that drain's wait
for the pods to be gone is followed to its end."""

from __future__ import annotations

import threading

import pytest

from tests.integration.test_pkubectl_workloads import Cli, needs_kubectl

PODS = "/api/v1/namespaces/default/pods"


@pytest.fixture
def cli(reused_apiserver, tmp_path):
    from tests.helpers.kubeconfig import write_kubeconfig

    c = Cli(reused_apiserver.url, write_kubeconfig(tmp_path / "kubeconfig", reused_apiserver.url))
    c.http.post("/api/v1/nodes", json={"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}}).raise_for_status()
    try:
        yield c
    finally:
        c.http.close()


def _node(cli: Cli, name: str = "n1") -> dict:
    return cli.get(f"/api/v1/nodes/{name}")


def _pod(cli: Cli, name: str, owner: str = "", emptydir: bool = False, node: str = "n1") -> None:
    meta: dict = {"name": name}
    if owner:
        meta["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": owner, "name": f"{name}-owner",
                                    "uid": f"uid-{name}", "controller": True}]
    spec: dict = {"nodeName": node, "containers": [{"name": "c", "image": "busybox"}]}
    if emptydir:
        spec["volumes"] = [{"name": "scratch", "emptyDir": {}}]
    cli.http.post(PODS, json={"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}).raise_for_status()


# ---------------------------------------------------------------- cordon / uncordon

@needs_kubectl
def test_cordon_and_uncordon_say_what_kubectl_says(cli):
    steps = [("cordon", "node/n1 cordoned\n"), ("cordon", "node/n1 already cordoned\n"),
             ("uncordon", "node/n1 uncordoned\n"), ("uncordon", "node/n1 already uncordoned\n")]
    for verb, line in steps:
        assert cli.pk(verb, "n1") == (0, line, "")
        assert bool(_node(cli)["spec"].get("unschedulable")) == (verb == "cordon")
    for verb, line in steps:
        assert cli.kubectl(verb, "n1") == (0, line, "")
    assert cli.pk("cordon", "ghost") == cli.kubectl("cordon", "ghost") == \
        (1, "", 'Error from server (NotFound): nodes "ghost" not found\n')


# ---------------------------------------------------------------- taint

@needs_kubectl
def test_taint_adds_overwrites_and_removes_like_kubectl(cli):
    """The same steps on n1 (pkubectl) and kn (kubectl): the same lines and the same taints."""
    cli.http.post("/api/v1/nodes", json={"apiVersion": "v1", "kind": "Node", "metadata": {"name": "kn"}}).raise_for_status()
    steps = [["k=v:NoSchedule"],                 # tainted
             ["k=w:NoSchedule"],                 # refused without --overwrite
             ["k=w:NoSchedule", "--overwrite"],  # modified
             ["x:NoExecute", "y=1:PreferNoSchedule"],
             ["k:NoSchedule-"],                  # untainted
             ["k:NoSchedule-"],                  # not found
             ["a=b:Sometimes"],                  # bad effect
             ["x-", "z=1:NoSchedule"],           # modified (added and removed)
             []]                                 # nothing to do
    for step in steps:
        mine = cli.pk("taint", "nodes", "n1", *step)
        theirs = cli.kubectl("taint", "nodes", "kn", *step)
        assert mine == tuple(t.replace("kn", "n1").replace("kubectl", "pkubectl") if isinstance(t, str) else t
                             for t in theirs), step
        assert _without_time(_node(cli, "n1")["spec"].get("taints")) == \
            _without_time(_node(cli, "kn")["spec"].get("taints")), step
    assert [t["key"] for t in _node(cli)["spec"]["taints"]] == ["z", "y"]


def _without_time(taints):
    return [{k: v for k, v in t.items() if k != "timeAdded"} for t in taints or []]


def test_a_noexecute_taint_gets_its_time(cli):
    assert cli.pk("taint", "node", "n1", "gone=yes:NoExecute")[:2] == (0, "node/n1 tainted\n")
    (taint,) = _node(cli)["spec"]["taints"]
    assert taint["key"] == "gone" and taint["value"] == "yes" and taint["timeAdded"].endswith("Z")
    assert cli.pk("taint", "nodes", "n1", "gone-")[:2] == (0, "node/n1 untainted\n")
    assert not _node(cli)["spec"].get("taints")


# ---------------------------------------------------------------- drain

class StandInKubelet:
    """The kubelet's last word in a graceful delete: every pod of node n1 that gets a
    deletionTimestamp is removed (DELETE with grace 0), as a kubelet does once its
    containers stopped. Runs a watch in a thread until ``stop``: each watch starts with the
    pods as they are (ADDED), so a deletion in the gap between two watches is not missed."""

    def __init__(self, cli: Cli):
        self.cli, self.stopped = cli, threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stopped.set()
        self.thread.join(10)

    def _run(self) -> None:
        import json

        import httpx

        with httpx.Client(base_url=self.cli.url, timeout=httpx.Timeout(None, connect=10)) as http:
            while not self.stopped.is_set():
                params = {"watch": "1", "fieldSelector": "spec.nodeName=n1", "timeoutSeconds": "1"}
                with http.stream("GET", PODS, params=params) as events:
                    for line in events.iter_lines():
                        event = json.loads(line) if line.strip() else {}
                        meta = (event.get("object") or {}).get("metadata") or {}
                        # ADDED too: a watch that starts after the eviction lists the pod,
                        # deletionTimestamp already set, as ADDED (the gap between two watches).
                        if event.get("type") in ("ADDED", "MODIFIED") and meta.get("deletionTimestamp"):
                            http.request("DELETE", f"{PODS}/{meta['name']}", json={"gracePeriodSeconds": 0})


@needs_kubectl
def test_drain_refuses_what_kubectl_refuses_and_cordons_anyway(cli):
    _pod(cli, "bare")
    _pod(cli, "scratch", owner="ReplicaSet", emptydir=True)
    mine = cli.pk("drain", "n1", "--timeout=5s")
    assert _node(cli)["spec"]["unschedulable"] is True
    cli.pk("uncordon", "n1")
    theirs = cli.kubectl("drain", "n1", "--timeout=5s")
    assert mine[:2] == theirs[:2] == (1, "node/n1 cordoned\n")
    expected = {"cannot delete cannot delete Pods that declare no controller (use --force to override): default/bare",
                "cannot delete Pods with local storage (use --delete-emptydir-data to override): default/scratch"}
    for err in (mine[2], theirs[2]):
        assert err.startswith('error: unable to drain node "n1" due to error: ')
        assert set(err.splitlines()[-2:]) == expected
    assert sorted(p["metadata"]["name"] for p in cli.get(PODS)["items"]) == ["bare", "scratch"]


def test_drain_evicts_waits_for_the_pods_to_be_gone_and_keeps_daemonset_and_other_nodes_pods(cli):
    _pod(cli, "web-1", owner="ReplicaSet")
    _pod(cli, "web-2", owner="ReplicaSet", emptydir=True)
    _pod(cli, "loner")
    _pod(cli, "elsewhere", owner="ReplicaSet", node="n2")
    with StandInKubelet(cli):
        code, out, err = cli.pk("drain", "n1", "--force", "--delete-emptydir-data", "--timeout=60s")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == "node/n1 cordoned" and lines[-1] == "node/n1 drained"
    assert sorted(lines[1:-1]) == sorted([f"evicting pod default/{n}" for n in ("web-1", "web-2", "loner")] +
                                         [f"pod/{n} evicted" for n in ("web-1", "web-2", "loner")])
    assert err == "Warning: deleting Pods that declare no controller: default/loner\n"
    assert [p["metadata"]["name"] for p in cli.get(PODS)["items"]] == ["elsewhere"]


def test_drain_times_out_naming_the_pods_still_there(cli):
    _pod(cli, "stuck", owner="ReplicaSet")
    code, out, err = cli.pk("drain", "n1", "--timeout=1s")      # no kubelet: it stays Terminating
    assert code == 1
    assert out == "node/n1 cordoned\nevicting pod default/stuck\n"
    assert err.startswith('There are pending pods in node "n1" when an error occurred: error when waiting for pod '
                          '"stuck" in namespace "default" to terminate: context deadline exceeded\npod/stuck\n')
    assert cli.get(f"{PODS}/stuck")["metadata"]["deletionTimestamp"]


def test_drain_with_disable_eviction_deletes_with_the_grace_period(cli):
    _pod(cli, "web-1", owner="ReplicaSet")
    code, out, _ = cli.pk("drain", "n1", "--disable-eviction", "--grace-period=0")
    assert (code, out) == (0, "node/n1 cordoned\npod/web-1 deleted\nnode/n1 drained\n")
    assert cli.get(PODS)["items"] == []


@needs_kubectl
@pytest.mark.parametrize("mode", ["client", "server"])
def test_drain_dry_run_says_what_kubectl_says_and_changes_nothing(cli, mode):
    _pod(cli, "web-1", owner="ReplicaSet")
    _pod(cli, "loner")
    args = ["drain", "n1", "--force", f"--dry-run={mode}"]
    mine, theirs = cli.pk(*args), cli.kubectl(*args)
    assert mine[0] == theirs[0] == 0, mine
    assert sorted(mine[1].splitlines()) == sorted(theirs[1].splitlines())
    assert mine[2] == theirs[2] == "Warning: deleting Pods that declare no controller: default/loner\n"
    suffix = " (dry run)" if mode == "client" else " (server dry run)"
    assert mine[1].splitlines()[0] == f"node/n1 cordoned{suffix}" and mine[1].endswith(f"node/n1 drained{suffix}\n")
    assert not _node(cli).get("spec", {}).get("unschedulable")
    assert sorted(p["metadata"]["name"] for p in cli.get(PODS)["items"]) == ["loner", "web-1"]
    assert not any(p["metadata"].get("deletionTimestamp") for p in cli.get(PODS)["items"])
