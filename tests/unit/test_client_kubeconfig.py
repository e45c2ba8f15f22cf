"""Kubeconfig loading: sources, merge order, contexts, inline and file credentials."""

import base64

import pytest
import yaml

from pkube.client.kubeconfig import KubeconfigError, load_kubeconfig


def write(path, doc):
    path.write_text(yaml.safe_dump(doc))
    return path


def kubeconfig(server="https://a:6443", context="a", cluster=None, user=None, namespace=None):
    ctx = {"cluster": "c-" + context, "user": "u-" + context}
    if namespace:
        ctx["namespace"] = namespace
    return {"apiVersion": "v1", "kind": "Config", "current-context": context,
            "clusters": [{"name": "c-" + context, "cluster": {"server": server, **(cluster or {})}}],
            "users": [{"name": "u-" + context, "user": user or {"token": "tok-" + context}}],
            "contexts": [{"name": context, "context": ctx}]}


def test_explicit_path_gives_server_token_and_namespace(tmp_path):
    path = write(tmp_path / "cfg", kubeconfig(namespace="team"))
    config = load_kubeconfig(str(path))
    assert (config.server, config.token, config.namespace) == ("https://a:6443", "tok-a", "team")


def test_namespace_defaults_to_default(tmp_path):
    assert load_kubeconfig(str(write(tmp_path / "cfg", kubeconfig()))).namespace == "default"


def test_inline_data_and_files_relative_to_the_kubeconfig(tmp_path):
    (tmp_path / "ca.crt").write_text("CA PEM")
    (tmp_path / "token").write_text("file-token\n")
    key_b64 = base64.b64encode(b"KEY PEM").decode()
    doc = kubeconfig(cluster={"certificate-authority": "ca.crt"},
                     user={"tokenFile": "token", "client-certificate-data":
                           base64.b64encode(b"CERT PEM").decode(), "client-key-data": key_b64})
    config = load_kubeconfig(str(write(tmp_path / "cfg", doc)))
    assert (config.ca, config.cert, config.key, config.token) == ("CA PEM", "CERT PEM", "KEY PEM", "file-token")


def test_insecure_skip_tls_verify(tmp_path):
    doc = kubeconfig(cluster={"insecure-skip-tls-verify": True})
    assert load_kubeconfig(str(write(tmp_path / "cfg", doc))).insecure


def test_kubeconfig_env_list_first_file_wins(tmp_path, monkeypatch):
    first = write(tmp_path / "one", kubeconfig("https://one:6443", context="a"))
    second = kubeconfig("https://two:6443", context="b")
    second["clusters"].append({"name": "c-a", "cluster": {"server": "https://ignored"}})
    second = write(tmp_path / "two", second)
    monkeypatch.setenv("KUBECONFIG", f"{tmp_path / 'missing'}:{first}:{second}")
    assert load_kubeconfig().server == "https://one:6443"
    assert load_kubeconfig(context="b").server == "https://two:6443"


def test_home_kube_config_is_the_fallback(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / ".kube").mkdir()
    write(tmp_path / ".kube" / "config", kubeconfig("https://home:6443"))
    assert load_kubeconfig().server == "https://home:6443"


def test_missing_everything_is_a_clear_error():
    with pytest.raises(KubeconfigError, match="no kubeconfig found"):
        load_kubeconfig()


def test_unknown_context_is_a_clear_error(tmp_path):
    path = write(tmp_path / "cfg", kubeconfig())
    with pytest.raises(KubeconfigError, match="context 'nope' not found"):
        load_kubeconfig(str(path), context="nope")
