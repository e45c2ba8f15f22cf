"""pkubectl output: table alignment, jsonpath, custom-columns, sort-by, -o name/yaml."""

import io

import pytest

from pkube.kubectl.cli import main
from pkube.kubectl.errors import CliError
from pkube.api.jsonpath import render
from pkube.kubectl.printers import (TableOptions, align, custom_columns, parse_output, print_objects, sort_table,
                              table_rows)

PODS = {"kind": "List", "items": [
    {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web-2", "namespace": "default", "labels": {"app": "web"}},
     "spec": {"containers": [{"name": "app", "image": "nginx:1"}, {"name": "log", "image": "busybox"}]},
     "status": {"conditions": [{"type": "Ready", "status": "True"}], "restarts": 3}},
    {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "db-1", "namespace": "prod"},
     "spec": {"containers": [{"name": "db", "image": "postgres"}]},
     "status": {"conditions": [{"type": "Ready", "status": "False"}], "restarts": 10}},
]}

TABLE = {"kind": "Table", "columnDefinitions": [
    {"name": "Name", "format": "name", "priority": 0}, {"name": "Ready", "priority": 0},
    {"name": "Status", "priority": 0}, {"name": "IP", "priority": 1}],
    "rows": [{"cells": ["web-2", "1/1", "Running", "10.0.0.2"], "object": PODS["items"][0]},
             {"cells": ["db-1", "0/1", "Pending", "<none>"], "object": PODS["items"][1]}]}


def test_tables_align_like_kubectl_tabwriter():
    assert align([["NAME", "READY", "STATUS"], ["web-2", "1/1", "Running"], ["a", "0/1", "Pending"]]) == (
        "NAME    READY   STATUS\n"
        "web-2   1/1     Running\n"
        "a       0/1     Pending\n")


def test_wide_namespace_and_labels_columns():
    rows = table_rows(TABLE, TableOptions(wide=True, with_namespace=True, show_labels=True))
    assert rows[0] == ["NAMESPACE", "NAME", "READY", "STATUS", "IP", "LABELS"]
    assert rows[1] == ["default", "web-2", "1/1", "Running", "10.0.0.2", "app=web"]
    assert rows[2][-1] == "<none>"
    narrow = table_rows(TABLE, TableOptions(name_prefix="pod/"))
    assert narrow[0] == ["NAME", "READY", "STATUS"] and narrow[1][0] == "pod/web-2"


def test_sort_by_orders_rows_numbers_numerically():
    by_name = sort_table(TABLE, ".metadata.name")
    assert [r["cells"][0] for r in by_name["rows"]] == ["db-1", "web-2"]
    by_restarts = sort_table(TABLE, "{.status.restarts}")
    assert [r["cells"][0] for r in by_restarts["rows"]] == ["web-2", "db-1"]


@pytest.mark.parametrize("template, expected", [
    ("{.items[*].metadata.name}", "web-2 db-1"),
    ("{.items[0].spec.containers[*].image}", "nginx:1 busybox"),
    ("{.items[-1].metadata.namespace}", "prod"),
    ('{range .items[*]}{.metadata.name}{"\\t"}{.status.conditions[?(@.type=="Ready")].status}{"\\n"}{end}',
     "web-2\tTrue\ndb-1\tFalse\n"),
    ("{.items[0].metadata.labels}", '{"app":"web"}'),
    ("{.items[0].metadata.missing}", ""),
    ("names: {..containers[*].name}", "names: app log db"),
    ("{.items[?(@.status.restarts>5)].metadata.name}", "db-1"),
    ("{.items[0:1].metadata.name}", "web-2"),
])
def test_jsonpath_templates(template, expected):
    assert render(template, PODS) == expected


def test_custom_columns_join_lists_and_mark_missing():
    text = custom_columns("NAME:.metadata.name,IMAGES:.spec.containers[*].image,NODE:.spec.nodeName", PODS["items"])
    assert text.splitlines() == ["NAME    IMAGES            NODE",
                                 "web-2   nginx:1,busybox   <none>",
                                 "db-1    postgres          <none>"]


def test_name_yaml_and_json_outputs():
    assert print_objects(PODS["items"], parse_output("name"), False) == "pod/web-2\npod/db-1\n"
    deploy = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}}
    assert print_objects([deploy], parse_output("name"), True) == "deployment.apps/web\n"
    assert print_objects([deploy], parse_output("yaml"), True).startswith("apiVersion: apps/v1\nkind: Deployment\n")
    listed = print_objects([deploy], parse_output("json"), False)
    assert '"kind": "List"' in listed and listed.startswith("{\n    ")


def test_unknown_output_format_is_one_line():
    with pytest.raises(CliError, match="unable to match a printer"):
        parse_output("xml")


def test_cli_errors_are_one_line_without_traceback(tmp_path):
    err = io.StringIO()
    assert main(["get", "pods", "--kubeconfig", str(tmp_path / "missing")], io.StringIO(), err) == 1
    assert err.getvalue() == f"error: kubeconfig {tmp_path / 'missing'}: no such file\n"
    err = io.StringIO()
    assert main(["frobnicate"], io.StringIO(), err) == 1
    assert err.getvalue() == 'error: unknown command "frobnicate" for "pkubectl"\nRun \'pkubectl --help\' for usage.\n'
    out = io.StringIO()
    assert main(["version", "--client"], out, io.StringIO()) == 0
    assert out.getvalue().startswith("Client Version: v1.32")


def test_unreachable_server_is_one_line(tmp_path):
    config = tmp_path / "config"
    config.write_text("apiVersion: v1\nkind: Config\ncurrent-context: c\nclusters:\n- name: c\n  cluster:\n"
                      "    server: http://127.0.0.1:1\ncontexts:\n- name: c\n  context:\n    cluster: c\n"
                      "users: []\n")
    err = io.StringIO()
    assert main(["get", "pods", "--kubeconfig", str(config)], io.StringIO(), err) == 1
    assert len(err.getvalue().strip().splitlines()) == 1
    assert "127.0.0.1:1" in err.getvalue()


def test_discovery_cache_round_trip_and_expiry(tmp_path):
    import os

    from pkube.kubectl.session import ApiResource, read_discovery_cache, write_discovery_cache

    path = tmp_path / "cache" / "server.json"
    deploy = ApiResource("apps", "v1", "deployments", "Deployment", True, "deployment", ("deploy",), ("all",),
                         ("get", "list"))
    write_discovery_cache(path, [deploy])
    assert read_discovery_cache(path) == [deploy]
    old = path.stat().st_mtime - 7 * 3600
    os.utime(path, (old, old))
    assert read_discovery_cache(path) is None
    assert read_discovery_cache(tmp_path / "missing.json") is None


def test_explain_renders_fields_from_the_served_schema():
    from pkube.apiserver.openapi import OpenAPIDocuments
    from pkube.kubectl.info import explain_text
    from pkube.kubectl.session import ApiResource

    class Pods:
        group, version, kind, plural, namespaced, subresources, group_version = "", "v1", "Pod", "pods", True, {}, "v1"

    document = OpenAPIDocuments([Pods()]).v3_group("v1")
    pod = ApiResource("", "v1", "pods", "Pod", True)
    page = explain_text(pod, document, ["spec", "containers"])
    assert page.startswith("KIND:       Pod\nVERSION:    v1\n\nFIELD: containers <[]Container>\n")
    assert "  image\t<string>" in page and "  name\t<string> -required-" in page
    with pytest.raises(CliError, match='field "nope" does not exist'):
        explain_text(pod, document, ["spec", "nope"])


def test_watch_rows_keep_the_first_tables_alignment():
    widths: list[int] = []
    first = align([["NAME", "DATA", "AGE"], ["p1", "0", "13m"]], widths)
    later = align([["w9", "1", "0s"]], widths)
    assert first.splitlines()[1] == "p1     0      13m"
    assert later == "w9     1      0s\n"


def test_describe_aligns_like_kubectl_tabwriter():
    import datetime

    from pkube.kubectl.describe import describe, tabwrite

    assert tabwrite(["Name:\tweb", "Namespace:\tdefault", "Pod Template:", "  Labels:\tapp=web"]) == [
        "Name:       web", "Namespace:  default", "Pod Template:", "  Labels:  app=web"]
    svc = {"kind": "Service", "metadata": {"name": "web", "namespace": "default"},
           "spec": {"type": "ClusterIP", "clusterIP": "10.96.0.1", "selector": {"app": "web"},
                    "ports": [{"port": 80, "targetPort": 8080, "protocol": "TCP"}]}}
    endpoints = {"subsets": [{"addresses": [{"ip": "10.244.0.5"}], "ports": [{"port": 8080}]}]}
    event = {"type": "Normal", "reason": "Synced", "lastTimestamp": "2026-01-01T00:00:00Z",
             "source": {"component": "endpoint-controller"}, "message": "ok"}
    page = describe(svc, [event], datetime.datetime(2026, 1, 1, 0, 0, 30, tzinfo=datetime.timezone.utc), endpoints)
    assert "Endpoints:                10.244.0.5:8080\n" in page
    assert page.splitlines()[0] == "Name:                     web"
    assert page.endswith("Events:\n"
                         "  Type    Reason  Age   From                 Message\n"
                         "  ----    ------  ----  ----                 -------\n"
                         "  Normal  Synced  30s   endpoint-controller  ok\n")


def test_yaml_quotes_like_kubectl():
    from pkube.kubectl.printers import dump_yaml

    data = {"a": "yes", "c": "1", "d": "", "e": "x: y", "f": "multi\nline", "h": "null", "l": " lead",
            "n": "true", "p": "2026-01-01", "plain": "web", "y": "ok", "z": "*star"}
    assert dump_yaml(data) == ('a: "yes"\nc: "1"\nd: ""\ne: \'x: y\'\nf: |-\n  multi\n  line\nh: "null"\n'
                               'l: \' lead\'\n"n": "true"\np: "2026-01-01"\nplain: web\n"y": ok\nz: \'*star\'\n')


def test_exec_flags_before_dashes_and_the_command_after():
    from pkube.kubectl.cli import build_parser, split_at_dashes

    flags, command = split_at_dashes(["exec", "web", "-c", "main", "-i", "--", "sh", "-c", "echo -n hi"])
    args = build_parser().parse_args(flags)
    assert (args.pod, args.container, args.stdin, command) == ("web", "main", True, ["sh", "-c", "echo -n hi"])
