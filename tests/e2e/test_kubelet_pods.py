"""Pods run for real on a `pkube up` cluster's kubelet, driven by the real kubectl and pkubectl."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request

import pytest

from tests.helpers.kubectls import streaming_kubectl
from tests.helpers.waiting import wait_for

KUBECTL = shutil.which("kubectl")
STREAMING_VERBS = ("exec", "attach", "cp")      # run by streaming_kubectl(): kubectl 1.32 may drop output
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="runs containers: needs root")


def kubectl(cluster, *args, input=None, timeout=60, check=True) -> subprocess.CompletedProcess:
    """The real kubectl on ``cluster``: the one on PATH, or for exec, attach and cp the one
    free of kubectl 1.32's stream race (tests/helpers/kubectls.py)."""
    binary = streaming_kubectl() if args and args[0] in STREAMING_VERBS else KUBECTL
    result = subprocess.run([binary, "--kubeconfig", str(cluster.kubeconfig), *args], capture_output=True,
                            text=True, input=input, timeout=timeout)
    if check:
        assert result.returncode == 0, f"kubectl {' '.join(args)}: {result.stderr}{result.stdout}"
    return result


def pkubectl(cluster, *args, timeout=60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pkube.kubectl", "--kubeconfig", str(cluster.kubeconfig), *args],
                          capture_output=True, text=True, timeout=timeout)


def get_pod(cluster, name: str, namespace: str = "default") -> dict:
    return json.loads(kubectl(cluster, "get", "pod", name, "-n", namespace, "-o", "json").stdout)


def apply(cluster, manifest: str) -> None:
    kubectl(cluster, "apply", "-f", "-", input=manifest)


def container_status(pod: dict, name: str | None = None) -> dict:
    statuses = pod.get("status", {}).get("containerStatuses") or [{}]
    return next((s for s in statuses if name is None or s.get("name") == name), {})


def wait_running(cluster, name: str, timeout: float = 60) -> dict:
    def running():
        pod = get_pod(cluster, name)
        ready = {c["type"]: c["status"] for c in pod["status"].get("conditions", [])}
        return pod if pod["status"].get("phase") == "Running" and ready.get("Ready") == "True" else None
    return wait_for(running, timeout)


def pod_manifest(name: str, containers: str, extra: str = "") -> str:
    return f"""apiVersion: v1
kind: Pod
metadata: {{name: {name}}}
spec:
  terminationGracePeriodSeconds: 3
{extra}  containers:
{containers}"""


def test_the_node_registers_ready_with_real_capacity(node_cluster):
    node = json.loads(kubectl(node_cluster, "get", "node", "e2e-node", "-o", "json").stdout)
    conditions = {c["type"]: c["status"] for c in node["status"]["conditions"]}
    assert conditions == {"MemoryPressure": "False", "DiskPressure": "False", "PIDPressure": "False", "Ready": "True"}
    assert int(node["status"]["capacity"]["cpu"]) == len(os.sched_getaffinity(0))
    assert node["spec"]["podCIDR"] and node["status"]["nodeInfo"]["containerRuntimeVersion"].startswith("pkube://")
    lease = json.loads(kubectl(node_cluster, "get", "lease", "-n", "kube-node-lease", "e2e-node", "-o", "json").stdout)
    assert lease["spec"]["holderIdentity"] == "e2e-node"


def test_a_deployment_serves_http_on_its_pod_ips(node_cluster):
    kubectl(node_cluster, "create", "deployment", "web", "--image=busybox", "--replicas=2", "--",
            "sh", "-c", "echo hello from $(hostname) > /tmp/index.html; exec httpd -f -p 8080 -h /tmp")
    kubectl(node_cluster, "rollout", "status", "deployment/web", "--timeout=60s")
    pods = json.loads(kubectl(node_cluster, "get", "pods", "-l", "app=web", "-o", "json").stdout)["items"]
    assert len(pods) == 2 and len({p["status"]["podIP"] for p in pods}) == 2
    for pod in pods:
        body = urllib.request.urlopen(f"http://{pod['status']['podIP']}:8080/", timeout=5).read().decode()
        assert body.strip() == f"hello from {pod['metadata']['name']}"
    listed = pkubectl(node_cluster, "get", "pods", "-l", "app=web")
    assert listed.returncode == 0 and listed.stdout.count("Running") == 2
    kubectl(node_cluster, "delete", "deployment", "web")


def test_each_component_writes_under_its_own_manager_name(node_cluster):
    """managedFields of a Deployment rolled out by the real components: kubectl-create made it,
    kube-controller-manager its ReplicaSet, pods and status, the kubelet the pods' status."""
    kubectl(node_cluster, "create", "deployment", "owners", "--image=busybox", "--", "sleep", "3600")
    kubectl(node_cluster, "rollout", "status", "deployment/owners", "--timeout=60s")

    def managers(*what):
        listed = json.loads(kubectl(node_cluster, "get", *what, "-o", "json", "--show-managed-fields").stdout)
        return {(e["manager"], e["operation"], e.get("subresource", ""))
                for item in listed.get("items", [listed]) for e in item["metadata"].get("managedFields", [])}

    assert {("kubectl-create", "Update", ""), ("kube-controller-manager", "Update", "status")} <= \
        managers("deployment", "owners")
    assert ("kube-controller-manager", "Update", "") in managers("rs", "-l", "app=owners")
    pods = managers("pods", "-l", "app=owners")
    assert {("kube-controller-manager", "Update", ""), ("kubelet", "Update", "status")} <= pods, pods
    assert ("kubelet", "Update", "status") in managers("node", "e2e-node")
    kubectl(node_cluster, "delete", "deployment", "owners")


def test_two_containers_share_an_empty_dir_localhost_and_with_share_process_namespace_ps(node_cluster):
    apply(node_cluster, pod_manifest("duo", """  - name: server
    image: busybox
    command: [sh, -c, "echo shared > /data/file; exec httpd -f -p 8081 -h /data"]
    volumeMounts: [{name: data, mountPath: /data}]
  - name: client
    image: busybox
    command: [sleep, "3600"]
    volumeMounts: [{name: data, mountPath: /data}]
""", "  shareProcessNamespace: true\n  volumes: [{name: data, emptyDir: {}}]\n"))
    wait_running(node_cluster, "duo")
    assert kubectl(node_cluster, "exec", "duo", "-c", "client", "--", "cat", "/data/file").stdout == "shared\n"
    fetched = wait_for(lambda: kubectl(node_cluster, "exec", "duo", "-c", "client", "--",
                                       "wget", "-qO-", "http://127.0.0.1:8081/file", check=False).stdout)
    assert fetched == "shared\n"
    processes = kubectl(node_cluster, "exec", "duo", "-c", "client", "--", "ps").stdout
    assert "httpd -f -p 8081" in processes and "sleep 3600" in processes
    kubectl(node_cluster, "delete", "pod", "duo")


def test_a_secret_as_env_and_as_a_volume_updated_in_place(node_cluster):
    kubectl(node_cluster, "create", "secret", "generic", "db", "--from-literal=password=one")
    apply(node_cluster, pod_manifest("uses-secret", """  - name: c
    image: busybox
    command: [sleep, "3600"]
    env: [{name: PASSWORD, valueFrom: {secretKeyRef: {name: db, key: password}}}]
    volumeMounts: [{name: s, mountPath: /etc/db, readOnly: true}]
""", "  volumes: [{name: s, secret: {secretName: db}}]\n"))
    wait_running(node_cluster, "uses-secret")
    assert kubectl(node_cluster, "exec", "uses-secret", "--", "sh", "-c", "echo $PASSWORD").stdout == "one\n"
    assert kubectl(node_cluster, "exec", "uses-secret", "--", "cat", "/etc/db/password").stdout == "one"
    kubectl(node_cluster, "patch", "secret", "db", "-p", '{"stringData": {"password": "two"}}')
    wait_for(lambda: kubectl(node_cluster, "exec", "uses-secret", "--", "cat", "/etc/db/password").stdout == "two",
             timeout=10)
    kubectl(node_cluster, "delete", "pod", "uses-secret")
    kubectl(node_cluster, "delete", "secret", "db")


def test_a_missing_secret_is_create_container_config_error_and_recovers(node_cluster):
    apply(node_cluster, pod_manifest("needs-cm", """  - name: c
    image: busybox
    command: [sleep, "3600"]
    env: [{name: MODE, valueFrom: {configMapKeyRef: {name: later, key: mode}}}]
"""))
    waiting = wait_for(lambda: container_status(get_pod(node_cluster, "needs-cm")).get("state", {}).get("waiting"))
    assert waiting["reason"] == "CreateContainerConfigError" and 'configmap "later" not found' in waiting["message"]
    assert "CreateContainerConfigError" in kubectl(node_cluster, "get", "pod", "needs-cm").stdout
    kubectl(node_cluster, "create", "configmap", "later", "--from-literal=mode=fast")
    wait_running(node_cluster, "needs-cm", timeout=40)
    kubectl(node_cluster, "delete", "pod", "needs-cm")
    kubectl(node_cluster, "delete", "configmap", "later")


def test_a_crash_loop_backs_off_and_shows_crash_loop_back_off(node_cluster):
    apply(node_cluster, pod_manifest("crasher", """  - name: c
    image: busybox
    command: [sh, -c, "echo attempt; exit 3"]
"""))
    pod = wait_for(lambda: (lambda p: p if container_status(p).get("restartCount", 0) >= 2 else None)(
        get_pod(node_cluster, "crasher")), timeout=40)
    status = container_status(pod)
    assert status["lastState"]["terminated"]["exitCode"] == 3
    wait_for(lambda: "CrashLoopBackOff" in kubectl(node_cluster, "get", "pod", "crasher").stdout, timeout=30)
    waiting = container_status(get_pod(node_cluster, "crasher"))["state"]["waiting"]
    assert waiting["reason"] == "CrashLoopBackOff" and "back-off" in waiting["message"]
    assert kubectl(node_cluster, "logs", "crasher", "--previous").stdout == "attempt\n"
    events = kubectl(node_cluster, "get", "events", "--field-selector", "involvedObject.name=crasher").stdout
    assert "Started" in events
    kubectl(node_cluster, "delete", "pod", "crasher")


def test_a_failing_liveness_probe_restarts_the_container(node_cluster):
    apply(node_cluster, pod_manifest("unhealthy", """  - name: c
    image: busybox
    command: [sh, -c, "touch /tmp/healthy; sleep 2; rm /tmp/healthy; sleep 3600"]
    livenessProbe:
      exec: {command: [cat, /tmp/healthy]}
      periodSeconds: 1
      failureThreshold: 1
"""))
    pod = wait_for(lambda: (lambda p: p if container_status(p).get("restartCount", 0) >= 1 else None)(
        get_pod(node_cluster, "unhealthy")), timeout=40)
    events = kubectl(node_cluster, "get", "events", "--field-selector", "involvedObject.name=unhealthy").stdout
    assert "Liveness probe failed" in events
    kubectl(node_cluster, "delete", "pod", "unhealthy")


def test_readiness_flips_ready_both_ways(node_cluster):
    apply(node_cluster, pod_manifest("flappy", """  - name: c
    image: busybox
    command: [sleep, "3600"]
    readinessProbe:
      exec: {command: [cat, /tmp/ready]}
      periodSeconds: 1
"""))
    wait_for(lambda: get_pod(node_cluster, "flappy")["status"].get("phase") == "Running")
    assert container_status(get_pod(node_cluster, "flappy"))["ready"] is False
    kubectl(node_cluster, "exec", "flappy", "--", "touch", "/tmp/ready")
    wait_running(node_cluster, "flappy", timeout=15)
    kubectl(node_cluster, "exec", "flappy", "--", "rm", "/tmp/ready")
    wait_for(lambda: container_status(get_pod(node_cluster, "flappy"))["ready"] is False, timeout=15)
    kubectl(node_cluster, "delete", "pod", "flappy")


def test_deletion_runs_pre_stop_then_stops_within_the_grace_period(node_cluster, tmp_path):
    marker = tmp_path / "prestop"
    marker.mkdir()
    apply(node_cluster, f"""apiVersion: v1
kind: Pod
metadata: {{name: graceful}}
spec:
  terminationGracePeriodSeconds: 5
  volumes: [{{name: out, hostPath: {{path: {marker}}}}}]
  containers:
  - name: c
    image: busybox
    command: [sh, -c, "trap 'echo term > /out/term; exit 0' TERM; while true; do sleep 0.2; done"]
    volumeMounts: [{{name: out, mountPath: /out}}]
    lifecycle:
      preStop: {{exec: {{command: [sh, -c, "echo prestop > /out/prestop"]}}}}
""")
    wait_running(node_cluster, "graceful")
    started = time.monotonic()
    kubectl(node_cluster, "delete", "pod", "graceful", "--timeout=30s")
    assert time.monotonic() - started < 5 + 5
    assert (marker / "prestop").read_text() == "prestop\n"
    assert (marker / "term").read_text() == "term\n"


def test_an_oom_killed_container_shows_oom_killed(node_cluster):
    apply(node_cluster, pod_manifest("hog", """  - name: c
    image: busybox
    command: [sh, -c, "x=aaaaaaaaaa; while true; do x=$x$x; done"]
    resources: {limits: {memory: 16Mi}}
""", "  restartPolicy: Never\n"))
    pod = wait_for(lambda: (lambda p: p if p["status"].get("phase") == "Failed" else None)(
        get_pod(node_cluster, "hog")), timeout=60)
    assert container_status(pod)["state"]["terminated"]["reason"] == "OOMKilled"
    assert "OOMKilled" in kubectl(node_cluster, "get", "pod", "hog").stdout
    kubectl(node_cluster, "delete", "pod", "hog")


def test_a_static_pod_is_mirrored_within_two_seconds_and_gone_within_two_after_removal(node_cluster):
    manifests = node_cluster.data_dir / "manifests"
    manifests.mkdir(exist_ok=True)
    path = manifests / "static-web.yaml"
    path.write_text("apiVersion: v1\nkind: Pod\nmetadata: {name: static-web, namespace: kube-system}\n"
                    "spec:\n  containers: [{name: c, image: busybox, command: [sleep, '3600']}]\n")
    started = time.monotonic()
    wait_for(lambda: kubectl(node_cluster, "get", "pod", "-n", "kube-system", "static-web-e2e-node",
                             check=False).returncode == 0, timeout=10)
    assert time.monotonic() - started <= 2.5
    mirror = get_pod(node_cluster, "static-web-e2e-node", "kube-system")
    assert "kubernetes.io/config.mirror" in mirror["metadata"]["annotations"]
    assert mirror["metadata"]["ownerReferences"][0]["kind"] == "Node"
    kubectl(node_cluster, "delete", "pod", "-n", "kube-system", "static-web-e2e-node", "--wait=false")
    def replaced():
        found = kubectl(node_cluster, "get", "pod", "-n", "kube-system", "static-web-e2e-node", "-o", "json",
                        check=False)
        pod = json.loads(found.stdout) if found.returncode == 0 else {}
        return pod if pod and pod["metadata"]["uid"] != mirror["metadata"]["uid"] else None
    wait_for(replaced, timeout=10)
    wait_for(lambda: get_pod(node_cluster, "static-web-e2e-node", "kube-system")["status"].get("phase") == "Running")
    path.unlink()
    started = time.monotonic()
    wait_for(lambda: kubectl(node_cluster, "get", "pod", "-n", "kube-system", "static-web-e2e-node",
                             check=False).returncode != 0, timeout=10)
    assert time.monotonic() - started <= 2.5


def test_logs_follow_exec_with_a_tty_and_port_forward(node_cluster):
    apply(node_cluster, pod_manifest("talker", """  - name: c
    image: busybox
    command: [sh, -c, "echo hi > /tmp/index.html; httpd -p 8082 -h /tmp; i=0; while true; do echo line $i; i=$((i+1)); sleep 0.2; done"]
"""))
    wait_running(node_cluster, "talker")
    follow = subprocess.Popen([KUBECTL, "--kubeconfig", str(node_cluster.kubeconfig), "logs", "-f", "talker"],
                              stdout=subprocess.PIPE, text=True)
    try:
        lines = [follow.stdout.readline() for _ in range(8)]
        assert lines[-1].startswith("line ")
    finally:
        follow.kill()
        follow.wait()
    tty = subprocess.run(["script", "-qec", f"{KUBECTL} --kubeconfig {node_cluster.kubeconfig} exec -it talker -- "
                          "sh -c 'tty; echo done'", "/dev/null"], capture_output=True, text=True, timeout=30)
    assert "/dev/pts/" in tty.stdout and "done" in tty.stdout
    from pkube.cluster.etcd import free_port
    port = free_port()
    forward = subprocess.Popen([KUBECTL, "--kubeconfig", str(node_cluster.kubeconfig), "port-forward", "pod/talker",
                                f"{port}:8082"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        body = wait_for(lambda: _fetch(f"http://127.0.0.1:{port}/index.html"), timeout=15)
        assert body == "hi\n"
    finally:
        forward.send_signal(signal.SIGINT)
        forward.wait(10)
    kubectl(node_cluster, "delete", "pod", "talker")


def _fetch(url: str) -> str | None:
    try:
        return urllib.request.urlopen(url, timeout=2).read().decode()
    except OSError:
        return None


def test_sigkill_of_the_kubelet_and_a_restart_leave_every_container_running(node_cluster):
    apply(node_cluster, pod_manifest("survivor", """  - name: c
    image: busybox
    command: [sleep, "3601"]
"""))
    wait_running(node_cluster, "survivor")
    before = set(subprocess.run(["pgrep", "-f", "sleep 3601"], capture_output=True, text=True).stdout.split())
    assert before
    kubelet = subprocess.run(["pgrep", "-f", f"kubelet --kubeconfig {node_cluster.data_dir}/kubelet.kubeconfig"],
                             capture_output=True, text=True).stdout.split()
    assert len(kubelet) == 1
    os.kill(int(kubelet[0]), signal.SIGKILL)
    restarted = wait_for(lambda: [p for p in subprocess.run(
        ["pgrep", "-f", f"kubelet --kubeconfig {node_cluster.data_dir}/kubelet.kubeconfig"], capture_output=True,
        text=True).stdout.split() if p != kubelet[0]], timeout=40)
    assert restarted
    apply(node_cluster, pod_manifest("after-restart", """  - name: c
    image: busybox
    command: [sleep, "3602"]
"""))
    wait_running(node_cluster, "after-restart")          # the new kubelet is at work
    now = set(subprocess.run(["pgrep", "-f", "sleep 3601"], capture_output=True, text=True).stdout.split())
    assert now == before
    assert container_status(get_pod(node_cluster, "survivor"))["restartCount"] == 0
    kubectl(node_cluster, "delete", "pod", "after-restart", "--wait=false")
    kubectl(node_cluster, "delete", "pod", "survivor", "--wait=false")   # the new kubelet must stop it
    wait_for(lambda: kubectl(node_cluster, "get", "pod", "survivor", check=False).returncode != 0, timeout=30)
    after = set(subprocess.run(["pgrep", "-f", "sleep 3601"], capture_output=True, text=True).stdout.split())
    assert after == set()


def test_bad_input_gets_kubernetes_reasons_and_harms_no_other_pod(node_cluster):
    apply(node_cluster, pod_manifest("no-image", "  - {name: c, image: registry.invalid/nope:1}\n") + "---\n" +
          pod_manifest("no-command", "  - {name: c, image: busybox, command: [/does-not-exist]}\n") + "---\n" +
          pod_manifest("as-root", "  - {name: c, image: busybox, command: [sleep, '3600'], "
                                  "securityContext: {runAsNonRoot: true}}\n") + "---\n" +
          pod_manifest("fine", "  - {name: c, image: busybox, command: [sleep, '3600']}\n"))
    wait_running(node_cluster, "fine")

    def waiting_reason(name, *reasons):
        state = container_status(get_pod(node_cluster, name)).get("state", {})
        reason = (state.get("waiting") or state.get("terminated") or {}).get("reason")
        return reason if reason in reasons else None
    assert wait_for(lambda: waiting_reason("no-image", "ErrImagePull", "ImagePullBackOff"), timeout=40)
    assert wait_for(lambda: waiting_reason("no-command", "RunContainerError", "CrashLoopBackOff", "StartError"),
                    timeout=40)
    refused = wait_for(lambda: container_status(get_pod(node_cluster, "as-root")).get("state", {}).get("waiting"))
    assert refused["reason"] == "CreateContainerConfigError"
    assert "runAsNonRoot and image will run as root" in refused["message"]
    assert get_pod(node_cluster, "fine")["status"]["phase"] == "Running"
    kubectl(node_cluster, "delete", "pod", "no-image", "no-command", "as-root", "fine", "--wait=false")


def test_termination_message_deadline_security_context_and_host_aliases(node_cluster):
    apply(node_cluster, pod_manifest("says-why", """  - name: c
    image: busybox
    command: [sh, -c, "echo out of coffee > /dev/termination-log; exit 4"]
""", "  restartPolicy: Never\n") + "---\n" + pod_manifest("too-long", """  - name: c
    image: busybox
    command: [sleep, "3600"]
""", "  activeDeadlineSeconds: 2\n") + "---\n" + pod_manifest("locked", """  - name: c
    image: busybox
    command: [sleep, "3600"]
    securityContext:
      readOnlyRootFilesystem: true
      capabilities: {drop: [ALL], add: [NET_BIND_SERVICE]}
""", "  hostAliases: [{ip: 10.1.2.3, hostnames: [coffee.local]}]\n"))
    said = wait_for(lambda: container_status(get_pod(node_cluster, "says-why")).get("state", {}).get("terminated"),
                    timeout=30)
    assert said["exitCode"] == 4 and said["message"] == "out of coffee\n"
    failed = wait_for(lambda: (lambda p: p if p["status"].get("phase") == "Failed" else None)(
        get_pod(node_cluster, "too-long")), timeout=30)
    assert failed["status"]["reason"] == "DeadlineExceeded"
    wait_running(node_cluster, "locked")
    touched = kubectl(node_cluster, "exec", "locked", "--", "touch", "/x", check=False)
    assert touched.returncode != 0 and "Read-only file system" in touched.stderr
    assert kubectl(node_cluster, "exec", "locked", "--", "grep", "CapEff", "/proc/1/status").stdout.split()[1] \
        == f"{1 << 10:016x}"
    assert "10.1.2.3\tcoffee.local" in kubectl(node_cluster, "exec", "locked", "--", "cat", "/etc/hosts").stdout
    kubectl(node_cluster, "delete", "pod", "says-why", "too-long", "locked", "--wait=false")


def test_an_image_is_pulled_with_the_pods_image_pull_secret(node_cluster, tmp_path):
    from pkube.runtime.imagestore import ImageStore
    from tests.system.test_registry_auth import PASSWORD, USER, serve_busybox
    server, _image = serve_busybox(ImageStore(str(tmp_path / "source")), "basic")
    host = f"127.0.0.1:{server.server_address[1]}"
    try:
        config = json.dumps({"auths": {host: {"username": USER, "password": PASSWORD}}})
        kubectl(node_cluster, "create", "secret", "generic", "regcred", "--type=kubernetes.io/dockerconfigjson",
                f"--from-literal=.dockerconfigjson={config}")
        image = f"{host}/test/bb:latest"
        apply(node_cluster, pod_manifest("pulled", f"  - {{name: c, image: '{image}', command: [sleep, '3600']}}\n",
                                         "  imagePullSecrets: [{name: regcred}]\n") + "---\n" +
              pod_manifest("no-secret", f"  - {{name: c, image: '{host}/test/bb:v9', command: [sleep, '3600']}}\n"))
        wait_running(node_cluster, "pulled")
        events = kubectl(node_cluster, "get", "events", "--field-selector", "involvedObject.name=pulled").stdout
        assert "Pulling" in events and "Successfully pulled" in events
        refused = wait_for(lambda: container_status(get_pod(node_cluster, "no-secret")).get("state", {}).get("waiting")
                           if container_status(get_pod(node_cluster, "no-secret")).get("state", {}).get(
                               "waiting", {}).get("reason") in ("ErrImagePull", "ImagePullBackOff") else None,
                           timeout=30)
        assert refused["reason"] in ("ErrImagePull", "ImagePullBackOff")
    finally:
        kubectl(node_cluster, "delete", "pod", "pulled", "no-secret", "--wait=false", check=False)
        kubectl(node_cluster, "delete", "secret", "regcred", check=False)
        server.shutdown()
        server.server_close()


def test_a_host_port_reaches_the_pod(node_cluster):
    from pkube.cluster.etcd import free_port
    port = free_port()
    apply(node_cluster, pod_manifest("hostport", f"""  - name: c
    image: busybox
    command: [sh, -c, "echo via host port > /tmp/index.html; exec httpd -f -p 8083 -h /tmp"]
    ports: [{{containerPort: 8083, hostPort: {port}}}]
"""))
    wait_running(node_cluster, "hostport")
    node = json.loads(kubectl(node_cluster, "get", "node", "e2e-node", "-o", "json").stdout)
    address = next(a["address"] for a in node["status"]["addresses"] if a["type"] == "InternalIP")
    assert wait_for(lambda: _fetch(f"http://{address}:{port}/index.html"), timeout=10) == "via host port\n"
    kubectl(node_cluster, "delete", "pod", "hostport", "--wait=false")


def test_pods_keep_running_while_the_apiserver_is_away_and_the_status_catches_up(node_cluster):
    apply(node_cluster, pod_manifest("outlives", "  - {name: c, image: busybox, command: [sleep, '3604']}\n")
          + "---\n" + pod_manifest("exits-meanwhile", """  - name: c
    image: busybox
    command: [sh, -c, "while [ ! -e /proc/1 ] || sleep 3; do exit 7; done"]
""", "  restartPolicy: Never\n"))
    wait_running(node_cluster, "outlives")
    wait_running(node_cluster, "exits-meanwhile")
    apiserver = subprocess.run(["pgrep", "-f", f"apiserver .*--port {node_cluster.port}"], capture_output=True,
                               text=True).stdout.split()
    assert len(apiserver) == 1
    before = subprocess.run(["pgrep", "-f", "sleep 3604"], capture_output=True, text=True).stdout.split()
    os.kill(int(apiserver[0]), signal.SIGSTOP)
    try:
        wait_for(lambda: subprocess.run(["pgrep", "-f", "sleep 3; do exit 7"], capture_output=True).returncode != 0,
                 timeout=20)                      # the container exited while nobody could be told
    finally:
        os.kill(int(apiserver[0]), signal.SIGCONT)
    failed = wait_for(lambda: (lambda p: p if p["status"].get("phase") == "Failed" else None)(
        get_pod(node_cluster, "exits-meanwhile")), timeout=60)
    assert container_status(failed)["state"]["terminated"]["exitCode"] == 7
    assert subprocess.run(["pgrep", "-f", "sleep 3604"], capture_output=True, text=True).stdout.split() == before
    kubectl(node_cluster, "delete", "pod", "outlives", "exits-meanwhile", "--wait=false")


def test_a_pod_deleted_while_the_kubelet_was_down_is_stopped_when_it_returns(node_cluster):
    apply(node_cluster, pod_manifest("forgotten", "  - {name: c, image: busybox, command: [sleep, '3605']}\n"))
    wait_running(node_cluster, "forgotten")
    assert subprocess.run(["pgrep", "-f", "sleep 3605"], capture_output=True).returncode == 0
    kubelet = subprocess.run(["pgrep", "-f", f"kubelet --kubeconfig {node_cluster.data_dir}/kubelet.kubeconfig"],
                             capture_output=True, text=True).stdout.split()
    assert len(kubelet) == 1
    os.kill(int(kubelet[0]), signal.SIGSTOP)
    kubectl(node_cluster, "delete", "pod", "forgotten", "--force", "--grace-period=0")
    os.kill(int(kubelet[0]), signal.SIGKILL)       # it never learns of the deletion; its successor must
    wait_for(lambda: subprocess.run(["pgrep", "-f", "sleep 3605"], capture_output=True).returncode != 0, timeout=40)


def test_kubectl_top_reads_metrics_from_the_kubelets(node_cluster):
    apply(node_cluster, pod_manifest("busy", """  - name: c
    image: busybox
    command: [sh, -c, "while true; do :; done"]
    resources: {limits: {cpu: 200m}}
"""))
    wait_running(node_cluster, "busy")
    nodes = wait_for(lambda: kubectl(node_cluster, "top", "node", check=False).stdout, timeout=30)
    assert nodes.split("\n")[0].split()[:2] == ["NAME", "CPU(cores)"] and "e2e-node" in nodes

    def busy_millicores():
        line = next((l for l in kubectl(node_cluster, "top", "pod", "busy", check=False).stdout.splitlines()
                     if l.startswith("busy")), "")
        return int(line.split()[1].rstrip("m")) if line else 0
    assert 100 <= wait_for(lambda: busy_millicores() or None, timeout=30) <= 260   # limited to 200m
    kubectl(node_cluster, "delete", "pod", "busy", "--wait=false")


def test_a_new_image_restarts_the_container(node_cluster):
    apply(node_cluster, pod_manifest("changing", "  - {name: c, image: busybox, command: [sleep, '3606']}\n"))
    first = container_status(wait_running(node_cluster, "changing"))["containerID"]
    kubectl(node_cluster, "set", "image", "pod/changing", "c=docker.io/library/busybox:latest")
    pod = wait_for(lambda: (lambda p: p if container_status(p).get("containerID") not in (None, first)
                            and container_status(p).get("ready") else None)(get_pod(node_cluster, "changing")),
                   timeout=30)
    assert container_status(pod)["image"] == "docker.io/library/busybox:latest"
    assert container_status(pod)["restartCount"] == 1
    kubectl(node_cluster, "delete", "pod", "changing", "--wait=false")


def test_a_chatty_containers_log_is_rotated_and_logs_still_read(node_cluster):
    apply(node_cluster, pod_manifest("chatty", """  - name: c
    image: busybox
    command: [sh, -c, "i=0; while [ $i -lt 200000 ]; do echo line $i of a chatty container; i=$((i+1)); done; echo done; sleep 3600"]
"""))
    pod = wait_running(node_cluster, "chatty")
    cid = container_status(pod)["containerID"].split("://", 1)[1]
    logs_dir = node_cluster.data_dir / "kubelet" / "runtime" / "containers" / cid
    wait_for(lambda: (logs_dir / "container.log.1").exists(), timeout=90)
    wait_for(lambda: kubectl(node_cluster, "logs", "chatty", "--tail=1").stdout == "done\n", timeout=60)
    assert (logs_dir / "container.log").stat().st_size <= 11 * 1024 * 1024
    kubectl(node_cluster, "delete", "pod", "chatty", "--wait=false")


def test_init_containers_run_in_order_before_the_app(node_cluster):
    apply(node_cluster, """apiVersion: v1
kind: Pod
metadata: {name: initialized}
spec:
  terminationGracePeriodSeconds: 2
  volumes: [{name: work, emptyDir: {}}]
  initContainers:
  - {name: first, image: busybox, command: [sh, -c, "sleep 1; echo one >> /work/log"], volumeMounts: [{name: work, mountPath: /work}]}
  - {name: second, image: busybox, command: [sh, -c, "echo two >> /work/log"], volumeMounts: [{name: work, mountPath: /work}]}
  containers:
  - {name: app, image: busybox, command: [sleep, "3600"], volumeMounts: [{name: work, mountPath: /work}]}
""")
    assert wait_for(lambda: "Init:0/2" in kubectl(node_cluster, "get", "pod", "initialized").stdout or
                    get_pod(node_cluster, "initialized")["status"].get("phase") == "Running", timeout=20)
    pod = wait_running(node_cluster, "initialized")
    assert [s["state"]["terminated"]["reason"] for s in pod["status"]["initContainerStatuses"]] == ["Completed"] * 2
    assert kubectl(node_cluster, "exec", "initialized", "--", "cat", "/work/log").stdout == "one\ntwo\n"
    kubectl(node_cluster, "delete", "pod", "initialized", "--wait=false")


def test_allow_privilege_escalation_decides_no_new_privs(node_cluster):
    apply(node_cluster, pod_manifest("escalates", """  - name: c
    image: busybox
    command: [sleep, "3600"]
    securityContext: {allowPrivilegeEscalation: true}
""") + "---\n" + pod_manifest("contained", """  - name: c
    image: busybox
    command: [sleep, "3600"]
    securityContext: {allowPrivilegeEscalation: false}
"""))
    for name, expected in (("escalates", "0"), ("contained", "1")):
        wait_running(node_cluster, name)
        status = kubectl(node_cluster, "exec", name, "--", "grep", "NoNewPrivs", "/proc/1/status").stdout
        assert status.split() == ["NoNewPrivs:", expected]
    kubectl(node_cluster, "delete", "pod", "escalates", "contained", "--wait=false")


def test_pods_terminating_for_their_grace_period_do_not_hold_up_new_ones(node_cluster):
    stubborn = "\n---\n".join(pod_manifest(f"stubborn-{i}", "  - {name: c, image: busybox, command: [sleep, '3607']}\n")
                              .replace("terminationGracePeriodSeconds: 3", "terminationGracePeriodSeconds: 20")
                              for i in range(10))
    apply(node_cluster, stubborn)
    for i in range(10):
        wait_running(node_cluster, f"stubborn-{i}")
    kubectl(node_cluster, "delete", "pod", *[f"stubborn-{i}" for i in range(10)], "--wait=false")
    wait_for(lambda: all(get_pod(node_cluster, f"stubborn-{i}")["metadata"].get("deletionTimestamp")
                         for i in range(10)))
    started = time.monotonic()
    apply(node_cluster, pod_manifest("newcomer", "  - {name: c, image: busybox, command: [sleep, '3600']}\n"))
    wait_running(node_cluster, "newcomer", timeout=15)
    assert time.monotonic() - started < 10          # not after the others' 20 s (sleep ignores SIGTERM as pid 1)
    kubectl(node_cluster, "delete", "pod", "newcomer", "--wait=false")


def test_a_volume_that_cannot_be_set_up_is_failed_mount_until_it_can(node_cluster):
    apply(node_cluster, pod_manifest("mounts-later", """  - name: c
    image: busybox
    command: [sleep, "3600"]
    volumeMounts: [{name: s, mountPath: /etc/s}]
""", "  volumes: [{name: s, secret: {secretName: not-yet}}]\n"))

    def failed_mount():
        events = kubectl(node_cluster, "get", "events", "--field-selector",
                         "involvedObject.name=mounts-later,reason=FailedMount", "-o", "json").stdout
        items = json.loads(events)["items"]
        return items[0]["message"] if items else None
    assert 'secret "not-yet" not found' in wait_for(failed_mount, timeout=30)
    state = container_status(get_pod(node_cluster, "mounts-later")).get("state", {})
    assert state.get("waiting", {}).get("reason") == "ContainerCreating"
    kubectl(node_cluster, "create", "secret", "generic", "not-yet", "--from-literal=k=v")
    wait_running(node_cluster, "mounts-later", timeout=30)
    assert kubectl(node_cluster, "exec", "mounts-later", "--", "cat", "/etc/s/k").stdout == "v"
    kubectl(node_cluster, "delete", "pod", "mounts-later", "--wait=false")
    kubectl(node_cluster, "delete", "secret", "not-yet")


def test_a_bridge_deleted_behind_the_kubelets_back_is_set_up_again(node_cluster):
    """Kept last in this module: it cuts the pods already running off their bridge."""
    subprocess.run(["ip", "link", "delete", "pkube-pods"], check=True)
    apply(node_cluster, pod_manifest("rebridged", "  - {name: c, image: busybox, command: [sleep, '3600']}\n"))
    pod = wait_running(node_cluster, "rebridged", timeout=30)
    assert pod["status"]["podIP"] and os.path.exists("/sys/class/net/pkube-pods")
    kubectl(node_cluster, "delete", "pod", "rebridged", "--wait=false")


def test_containers_get_the_service_environment_variables(node_cluster):
    kubectl(node_cluster, "create", "service", "clusterip", "env-web", "--tcp=8080:80")
    service_ip = json.loads(kubectl(node_cluster, "get", "svc", "env-web", "-o", "json").stdout)["spec"]["clusterIP"]
    kubernetes_ip = json.loads(kubectl(node_cluster, "get", "svc", "kubernetes", "-o", "json").stdout)["spec"]["clusterIP"]
    apply(node_cluster, pod_manifest("env-reader", """  - name: c
    image: busybox
    command: [sleep, "3600"]
    env: [{name: OWN, value: "$(ENV_WEB_SERVICE_HOST):$(ENV_WEB_SERVICE_PORT)"}]
"""))
    try:
        wait_running(node_cluster, "env-reader")
        env = dict(line.split("=", 1) for line in
                   kubectl(node_cluster, "exec", "env-reader", "--", "env").stdout.splitlines() if "=" in line)
        assert env["ENV_WEB_SERVICE_HOST"] == service_ip and env["ENV_WEB_SERVICE_PORT"] == "8080"
        assert env["ENV_WEB_PORT_8080_TCP"] == f"tcp://{service_ip}:8080"
        assert env["KUBERNETES_SERVICE_HOST"] == kubernetes_ip
        assert env["OWN"] == f"{service_ip}:8080"     # $(VAR) expands service variables too
    finally:
        kubectl(node_cluster, "delete", "pod", "env-reader", "--wait=false", check=False)
        kubectl(node_cluster, "delete", "svc", "env-web", check=False)


def test_pods_run_under_the_runtime_default_seccomp_profile_unless_unconfined(node_cluster):
    apply(node_cluster, pod_manifest("sc-default", """  - name: c
    image: busybox
    command: [sleep, "3600"]
"""))
    apply(node_cluster, pod_manifest("sc-unconfined", """  - name: c
    image: busybox
    command: [sleep, "3600"]
    securityContext: {seccompProfile: {type: Unconfined}}
"""))
    apply(node_cluster, pod_manifest("sc-localhost", """  - name: c
    image: busybox
    command: [sleep, "3600"]
""", "  securityContext: {seccompProfile: {type: Localhost, localhostProfile: my.json}}\n"))
    try:
        wait_running(node_cluster, "sc-default")
        wait_running(node_cluster, "sc-unconfined")
        mode = lambda name: kubectl(node_cluster, "exec", name, "--", "grep", "^Seccomp:", "/proc/self/status").stdout.split()[1]  # noqa: E731
        assert mode("sc-default") == "2" and mode("sc-unconfined") == "0"
        refused = kubectl(node_cluster, "exec", "sc-default", "--", "unshare", "-U", "true", check=False)
        assert refused.returncode != 0 and "Operation not permitted" in refused.stderr
        waiting = wait_for(lambda: container_status(get_pod(node_cluster, "sc-localhost")).get("state", {}).get("waiting"))
        assert waiting["reason"] == "CreateContainerConfigError" and "Localhost" in waiting["message"]
    finally:
        kubectl(node_cluster, "delete", "pod", "sc-default", "sc-unconfined", "sc-localhost", "--wait=false", check=False)
