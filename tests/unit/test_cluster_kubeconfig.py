"""pkube's kubeconfig: the admin file, and the merge into a user's ~/.kube/config."""

import yaml

from pkube.cluster.kubeconfig import admin_kubeconfig, merge_into_user_config, merge_kubeconfig, user_kubeconfig_path


def test_merge_keeps_other_contexts_and_switches_current():
    theirs = {"apiVersion": "v1", "kind": "Config", "current-context": "prod",
              "clusters": [{"name": "prod", "cluster": {"server": "https://prod"}},
                           {"name": "pkube", "cluster": {"server": "http://old"}}],
              "users": [{"name": "prod-user", "user": {"token": "t"}}],
              "contexts": [{"name": "prod", "context": {"cluster": "prod", "user": "prod-user"}}]}
    merged = merge_kubeconfig(theirs, admin_kubeconfig("http://127.0.0.1:6443"))
    assert merged["current-context"] == "pkube"
    servers = {c["name"]: c["cluster"]["server"] for c in merged["clusters"]}
    assert servers == {"prod": "https://prod", "pkube": "http://127.0.0.1:6443"}
    assert [c["name"] for c in merged["contexts"]] == ["prod", "pkube"]
    assert {u["name"] for u in merged["users"]} == {"prod-user", "pkube-admin"}


def test_merge_into_user_config_backs_up_first(tmp_path):
    path = tmp_path / ".kube" / "config"
    path.parent.mkdir()
    original = "apiVersion: v1\nkind: Config\ncurrent-context: mine\ncontexts: []\n"
    path.write_text(original)
    backup = merge_into_user_config(admin_kubeconfig("http://127.0.0.1:1"), path)
    assert backup.read_text() == original
    assert yaml.safe_load(path.read_text())["current-context"] == "pkube"
    assert path.stat().st_mode & 0o777 == 0o600


def test_merge_into_missing_config_creates_it(tmp_path):
    path = tmp_path / "new" / "config"
    assert merge_into_user_config(admin_kubeconfig("http://127.0.0.1:1"), path) is None
    assert yaml.safe_load(path.read_text())["clusters"][0]["cluster"]["server"] == "http://127.0.0.1:1"


def test_user_kubeconfig_path_follows_kubeconfig_env(monkeypatch, tmp_path):
    monkeypatch.setenv("KUBECONFIG", f"{tmp_path}/a:{tmp_path}/b")
    assert user_kubeconfig_path() == tmp_path / "a"
    monkeypatch.delenv("KUBECONFIG")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert user_kubeconfig_path() == tmp_path / ".kube" / "config"
