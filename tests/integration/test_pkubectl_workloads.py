"""pkubectl's verbs for running workloads against a real etcd + apiserver: run, create
deployment, expose, set image/env and wait; each compared with what the real kubectl (v1.32)
prints or makes for the same command against the same apiserver."""

from __future__ import annotations

import io
import shutil
import subprocess
import threading

import httpx
import pytest

from pkube.kubectl.cli import main
from tests.helpers.kubeconfig import write_kubeconfig

KUBECTL = shutil.which("kubectl")
needs_kubectl = pytest.mark.skipif(KUBECTL is None, reason="the real kubectl is not installed")


class Cli:
    """pkubectl (in process) and kubectl (a subprocess) on one apiserver."""

    def __init__(self, url: str, kubeconfig):
        self.url, self.kubeconfig = url, str(kubeconfig)
        self.http = httpx.Client(base_url=url, timeout=30)

    def pk(self, *args: str) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        code = main(["--kubeconfig", self.kubeconfig, *args], out, err)
        return code, out.getvalue(), err.getvalue()

    def kubectl(self, *args: str) -> tuple[int, str, str]:
        done = subprocess.run([KUBECTL, "--kubeconfig", self.kubeconfig, *args], capture_output=True, text=True,
                              timeout=60, stdin=subprocess.DEVNULL)
        return done.returncode, done.stdout, done.stderr

    def get(self, path: str) -> dict:
        answer = self.http.get(path)
        answer.raise_for_status()
        return answer.json()


@pytest.fixture
def cli(reused_apiserver, tmp_path):
    c = Cli(reused_apiserver.url, write_kubeconfig(tmp_path / "kubeconfig", reused_apiserver.url))
    try:
        yield c
    finally:
        c.http.close()


def _spec(obj: dict) -> dict:
    """What a user asked for: labels and spec (server-set fields are the same for both tools)."""
    return {"labels": obj["metadata"].get("labels"), "spec": obj["spec"]}


def _renamed(obj: dict, old: str, new: str) -> dict:
    import json

    return json.loads(json.dumps(obj).replace(f'"{old}"', f'"{new}"'))


# ---------------------------------------------------------------- run

@needs_kubectl
def test_run_makes_the_pod_kubectl_run_makes(cli):
    args = ["--image=busybox", "--port=8080", "--env", "A=1", "--env", "B=two", "--restart=Never", "--", "sleep", "60"]
    assert cli.kubectl("run", "kpod", *args)[:2] == (0, "pod/kpod created\n")
    assert cli.pk("run", "ppod", *args) == (0, "pod/ppod created\n", "")
    mine, theirs = cli.get("/api/v1/namespaces/default/pods/ppod"), cli.get("/api/v1/namespaces/default/pods/kpod")
    assert _spec(mine) == _renamed(_spec(theirs), "kpod", "ppod")
    assert mine["metadata"]["labels"] == {"run": "ppod"}
    assert mine["spec"]["containers"][0]["args"] == ["sleep", "60"]


def test_run_with_command_labels_and_an_existing_name(cli):
    assert cli.pk("run", "web", "--image=busybox", "--labels=app=web,tier=front", "--command", "--",
                  "sh", "-c", "echo hi")[0] == 0
    pod = cli.get("/api/v1/namespaces/default/pods/web")
    assert pod["metadata"]["labels"] == {"app": "web", "tier": "front"}
    assert pod["spec"]["containers"][0]["command"] == ["sh", "-c", "echo hi"]
    assert pod["spec"]["restartPolicy"] == "Always"
    assert cli.pk("run", "web", "--image=busybox") == (1, "", 'Error from server (AlreadyExists): pods "web" already exists\n')


def test_run_dry_run_prints_the_pod_and_creates_nothing(cli):
    code, out, _ = cli.pk("run", "dry", "--image=busybox", "--dry-run=client", "-o", "yaml")
    assert code == 0 and "kind: Pod" in out and "name: dry" in out and "run: dry" in out
    assert cli.http.get("/api/v1/namespaces/default/pods/dry").status_code == 404
    assert cli.pk("run", "dry", "--image=busybox", "--restart=Sometimes") == (1, "", "error: invalid restart policy: Sometimes\n")
    code, _, err = cli.pk("run", "dry")
    assert code == 1 and err.startswith('error: required flag(s) "image" not set\n')


# ---------------------------------------------------------------- create deployment

@needs_kubectl
def test_create_deployment_makes_what_kubectl_makes(cli):
    for args in (["--image=busybox:1.36", "--image=registry.local/team/app", "--replicas=3", "--port=80"],
                 ["--image=busybox", "--", "sleep", "1d"]):
        cli.http.delete("/apis/apps/v1/namespaces/default/deployments/kweb")
        cli.http.delete("/apis/apps/v1/namespaces/default/deployments/pweb")
        assert cli.kubectl("create", "deployment", "kweb", *args)[:2] == (0, "deployment.apps/kweb created\n")
        assert cli.pk("create", "deployment", "pweb", *args) == (0, "deployment.apps/pweb created\n", "")
        mine = cli.get("/apis/apps/v1/namespaces/default/deployments/pweb")
        theirs = cli.get("/apis/apps/v1/namespaces/default/deployments/kweb")
        assert _spec(mine) == _renamed(_spec(theirs), "kweb", "pweb")
    assert mine["spec"]["template"]["spec"]["containers"][0]["command"] == ["sleep", "1d"]
    both = ["--image=busybox", "--image=nginx", "--", "sleep", "1d"]
    assert cli.pk("create", "deployment", "two", *both)[2] == cli.kubectl("create", "deployment", "two", *both)[2] == \
        "error: cannot specify multiple --image options and command\n"
    assert cli.kubectl("create", "deployment", "kweb", "--image=x")[2] == \
        'error: failed to create deployment: deployments.apps "kweb" already exists\n'
    assert cli.pk("create", "deployment", "pweb", "--image=x") == \
        (1, "", 'error: failed to create deployment: deployments.apps "pweb" already exists\n')


def test_create_still_creates_namespaces_and_secrets(cli):
    assert cli.pk("create", "namespace", "team")[:2] == (0, "namespace/team created\n")
    assert cli.pk("create", "secret", "generic", "s", "--from-literal=a=b")[:2] == (0, "secret/s created\n")
    code, _, err = cli.pk("create", "deployment", "nothing")
    assert (code, err) == (1, 'error: required flag(s) "image" not set\n')


# ---------------------------------------------------------------- expose

@needs_kubectl
def test_expose_a_deployment_selects_its_pods_like_kubectl(cli):
    assert cli.pk("create", "deployment", "web", "--image=busybox", "--port=8080")[0] == 0
    assert cli.kubectl("expose", "deployment", "web", "--name=kweb", "--port=80", "--target-port=8080")[:2] == \
        (0, "service/kweb exposed\n")
    assert cli.pk("expose", "deployment", "web", "--name=pweb", "--port=80", "--target-port=8080") == \
        (0, "service/pweb exposed\n", "")
    mine = cli.get("/api/v1/namespaces/default/services/pweb")
    theirs = cli.get("/api/v1/namespaces/default/services/kweb")
    assert mine["spec"]["selector"] == theirs["spec"]["selector"] == {"app": "web"}
    assert mine["spec"]["ports"] == theirs["spec"]["ports"] == [{"port": 80, "protocol": "TCP", "targetPort": 8080}]
    assert mine["metadata"]["labels"] == {"app": "web"}
    # without --port: the container's port; a second expose under the same name is refused
    assert cli.pk("expose", "deploy/web", "--type=NodePort")[:2] == (0, "service/web exposed\n")
    service = cli.get("/api/v1/namespaces/default/services/web")
    assert service["spec"]["type"] == "NodePort" and service["spec"]["ports"][0]["port"] == 8080
    assert cli.pk("expose", "deploy/web") == (1, "", 'Error from server (AlreadyExists): services "web" already exists\n')


def test_expose_a_pod_a_service_and_what_cannot_be_exposed(cli):
    cli.pk("run", "solo", "--image=busybox", "--labels=app=solo")
    assert cli.pk("expose", "pod", "solo", "--port=81", "--protocol=UDP")[:2] == (0, "service/solo exposed\n")
    assert cli.get("/api/v1/namespaces/default/services/solo")["spec"]["ports"][0]["protocol"] == "UDP"
    assert cli.pk("expose", "svc/solo", "--name=again", "--port=82")[:2] == (0, "service/again exposed\n")
    assert cli.get("/api/v1/namespaces/default/services/again")["spec"]["selector"] == {"app": "solo"}
    cli.pk("create", "deployment", "noport", "--image=busybox")
    assert cli.pk("expose", "deploy/noport") == (1, "", "error: couldn't find port via --port flag or introspection\n")
    assert cli.pk("expose", "deploy/ghost", "--port=80") == \
        (1, "", 'Error from server (NotFound): deployments.apps "ghost" not found\n')


# ---------------------------------------------------------------- set image / set env

def test_set_image_changes_the_template_and_says_nothing_when_unchanged(cli):
    cli.pk("create", "deployment", "web", "--image=busybox:1", "--image=nginx:1")
    assert cli.pk("set", "image", "deployment/web", "busybox=busybox:2") == (0, "deployment.apps/web image updated\n", "")
    images = [c["image"] for c in cli.get("/apis/apps/v1/namespaces/default/deployments/web")
              ["spec"]["template"]["spec"]["containers"]]
    assert images == ["busybox:2", "nginx:1"]
    assert cli.pk("set", "image", "deployment/web", "busybox=busybox:2") == (0, "", "")
    assert cli.pk("set", "image", "deployment", "web", "*=busybox:3")[:2] == (0, "deployment.apps/web image updated\n")
    assert cli.pk("set", "image", "deploy/web", "ghost=x") == (1, "", 'error: unable to find container named "ghost"\n')
    cli.pk("run", "solo", "--image=busybox:1")
    assert cli.pk("set", "image", "pod/solo", "solo=busybox:2")[:2] == (0, "pod/solo image updated\n")
    assert cli.get("/api/v1/namespaces/default/pods/solo")["spec"]["containers"][0]["image"] == "busybox:2"


@needs_kubectl
def test_set_env_sets_replaces_and_removes_like_kubectl(cli):
    for name in ("kweb", "pweb"):
        cli.pk("create", "deployment", name, "--image=busybox")
    for tool, name in ((cli.kubectl, "kweb"), (cli.pk, "pweb")):
        assert tool("set", "env", f"deployment/{name}", "A=1", "B=2")[:2] == (0, f"deployment.apps/{name} env updated\n")
        assert tool("set", "env", f"deployment/{name}", "A=1")[:2] == (0, "")
        assert tool("set", "env", f"deployment/{name}", "A-", "B=3")[:2] == (0, f"deployment.apps/{name} env updated\n")
        assert tool("set", "env", f"deployment/{name}", "-c", "ghost", "X=1")[2] == \
            f'Warning: Deployment/{name} does not have any containers matching "ghost"\n'
    envs = [cli.get(f"/apis/apps/v1/namespaces/default/deployments/{n}")["spec"]["template"]["spec"]["containers"][0]["env"]
            for n in ("kweb", "pweb")]
    assert envs[0] == envs[1] == [{"name": "B", "value": "3"}]
    assert cli.pk("set", "env", "deploy/pweb", "--list") == (0, "# Deployment pweb, container busybox\nB=3\n", "")
    assert cli.kubectl("set", "env", "deploy/kweb", "--list")[1] == "# Deployment kweb, container busybox\nB=3\n"


# ---------------------------------------------------------------- wait

def _set_pod_condition(cli: Cli, name: str, status: str) -> None:
    answer = cli.http.patch(f"/api/v1/namespaces/default/pods/{name}/status",
                            json={"status": {"conditions": [{"type": "Ready", "status": status}]}},
                            headers={"Content-Type": "application/merge-patch+json"})
    answer.raise_for_status()


def _in_background(func, *args) -> tuple[threading.Thread, dict]:
    result: dict = {}
    thread = threading.Thread(target=lambda: result.update(answer=func(*args)), daemon=True)
    thread.start()
    return thread, result


@pytest.fixture
def watching(monkeypatch) -> threading.Event:
    """Set once pkubectl (in this process) opens a watch: it has read the objects and now
    follows their changes."""
    from pkube.client.rest import ApiClient

    started, real_watch = threading.Event(), ApiClient.watch

    def watch(self, *args, **kwargs):
        started.set()
        return real_watch(self, *args, **kwargs)
    monkeypatch.setattr(ApiClient, "watch", watch)
    return started


def test_wait_follows_a_watch_until_the_condition_is_set_through_the_api(cli, watching):
    cli.pk("run", "web", "--image=busybox")
    thread, result = _in_background(cli.pk, "wait", "--for=condition=Ready", "pod/web", "--timeout=30s")
    assert watching.wait(30)
    _set_pod_condition(cli, "web", "False")
    _set_pod_condition(cli, "web", "True")
    thread.join(30)
    assert result["answer"] == (0, "pod/web condition met\n", "")


@needs_kubectl
def test_wait_times_out_with_kubectls_message(cli):
    cli.pk("run", "web", "--image=busybox")
    expected = "error: timed out waiting for the condition on pods/web\n"
    assert cli.kubectl("wait", "--for=condition=Ready", "pod/web", "--timeout=1s") == (1, "", expected)
    assert cli.pk("wait", "--for=condition=Ready", "pod/web", "--timeout=1s") == (1, "", expected)
    _set_pod_condition(cli, "web", "True")
    assert cli.pk("wait", "--for=condition=ready=true", "pod/web", "--timeout=5s") == (0, "pod/web condition met\n", "")
    assert cli.pk("wait", "--for=jsonpath={.spec.restartPolicy}=Always", "pod/web") == (0, "pod/web condition met\n", "")


@needs_kubectl
def test_wait_errors_match_kubectl(cli):
    cli.pk("run", "web", "--image=busybox", "--labels=app=web")
    cases = [["--for=condition=Ready", "pod/ghost", "--timeout=1s"],
             ["--for=condition=Ready", "pod", "-l", "app=nothing", "--timeout=1s"],
             ["--for=delete", "pod/ghost", "--timeout=1s"],
             ["--for=sideways", "pod/web"],
             ["pod/web"]]
    for case in cases:
        assert cli.pk("wait", *case) == cli.kubectl("wait", *case), case


def test_wait_for_delete_and_by_selector(cli, watching):
    for name in ("a", "b"):
        cli.pk("run", name, "--image=busybox", "--labels=app=pair")
    thread, result = _in_background(cli.pk, "wait", "--for=delete", "pod", "-l", "app=pair", "--timeout=30s")
    assert watching.wait(30)
    for name in ("a", "b"):
        cli.http.delete(f"/api/v1/namespaces/default/pods/{name}").raise_for_status()   # unbound: gone at once
    thread.join(30)
    assert result["answer"] == (0, "pod/a condition met\npod/b condition met\n", "")
