"""pkubectl's command line: kubectl's words for unknown commands and flags (one line, exit 1,
never a traceback), flags between arguments, and the words after "--"."""

import io

import pytest

from pkube.kubectl.cli import main, parse_command_line
from pkube.kubectl.errors import CliError


def run(*argv):
    out, err = io.StringIO(), io.StringIO()
    return main(list(argv), out, err), out.getvalue(), err.getvalue()


@pytest.mark.parametrize("argv, expected", [
    (["frobnicate"], 'error: unknown command "frobnicate" for "pkubectl"\nRun \'pkubectl --help\' for usage.\n'),
    (["set", "colour", "x"], 'error: unknown command "colour" for "pkubectl set"\n'
                             "Run 'pkubectl set --help' for usage.\n"),
    (["get", "pods", "--nope"], "error: unknown flag: --nope\nSee 'pkubectl get --help' for usage.\n"),
    (["get", "pods", "--nope=1"], "error: unknown flag: --nope\nSee 'pkubectl get --help' for usage.\n"),
    (["drain", "n1", "-z"], "error: unknown shorthand flag: 'z' in -z\nSee 'pkubectl drain --help' for usage.\n"),
    (["run", "web"], 'error: required flag(s) "image" not set\nSee \'pkubectl run --help\' for usage.\n'),
    (["get", "pods", "--no-head"], "error: unknown flag: --no-head\nSee 'pkubectl get --help' for usage.\n"),
])
def test_unknown_commands_and_flags_say_what_exists(argv, expected):
    assert run(*argv) == (1, "", expected)


def test_flags_may_come_between_arguments():
    args = parse_command_line(["set", "env", "deploy/web", "-c", "app", "A=1", "B-"])
    assert (args.words, args.containers) == (["deploy/web", "A=1", "B-"], "app")
    args = parse_command_line(["taint", "nodes", "n1", "--overwrite", "k=v:NoSchedule"])
    assert (args.words, args.overwrite) == (["nodes", "n1", "k=v:NoSchedule"], True)


def test_the_words_after_dashes_belong_to_run_exec_and_create():
    args = parse_command_line(["run", "web", "--image=busybox", "--", "sh", "-c", "echo --help"])
    assert (args.name, args.after_dashes, args.use_command) == ("web", ["sh", "-c", "echo --help"], False)
    args = parse_command_line(["create", "deployment", "web", "--image=busybox", "--", "sleep", "1"])
    assert (args.what, args.image, args.after_dashes) == (["deployment", "web"], ["busybox"], ["sleep", "1"])
    args = parse_command_line(["get", "--", "pods"])
    assert (args.resources, args.after_dashes) == (["pods"], None)
    with pytest.raises(CliError):
        parse_command_line(["wait", "pod/web", "--for"])


def test_the_new_verbs_parse_kubectls_flags():
    wait = parse_command_line(["wait", "--for=condition=Ready", "pod", "-l", "app=web", "--timeout=60s"])
    assert (wait.for_, wait.targets, wait.selector, wait.timeout) == ("condition=Ready", ["pod"], "app=web", "60s")
    drain = parse_command_line(["drain", "n1", "--ignore-daemonsets", "--delete-emptydir-data", "--force",
                                "--grace-period=10", "--timeout=2m"])
    assert (drain.nodes, drain.ignore_daemonsets, drain.delete_emptydir_data, drain.force, drain.grace_period,
            drain.timeout) == (["n1"], True, True, True, 10, "2m")
    top = parse_command_line(["top", "pods", "-A", "--containers"])
    assert (top.what, top.all_namespaces, top.containers) == ("pods", True, True)
    expose = parse_command_line(["expose", "deploy", "web", "--port=80", "--target-port=http", "--type=NodePort",
                                 "--name=w", "--protocol=UDP"])
    assert (expose.targets, expose.port, expose.target_port, expose.type, expose.name, expose.protocol) == \
        (["deploy", "web"], 80, "http", "NodePort", "w", "UDP")
    forward = parse_command_line(["port-forward", "svc/web", "8080:80", "9090", "--address", "127.0.0.1"])
    assert (forward.target, forward.ports, forward.address) == ("svc/web", ["8080:80", "9090"], "127.0.0.1")
