"""pdocker's prune verbs without a kernel: their command lines, the confirmation, Docker's
report, and which containers keep the bridge network (a fake runtime and network)."""

from __future__ import annotations

import io

import pytest

from pkube.pdocker import management
from pkube.pdocker.cliargs import Namespace, UsageError
from pkube.pdocker.parser import build_parser, requested_verb


@pytest.mark.parametrize("argv", [["container", "prune", "-f"], ["image", "prune", "-af"],
                                  ["image", "prune", "--all", "--force"], ["network", "ls"],
                                  ["network", "ls", "-q", "--no-trunc"], ["network", "prune"],
                                  ["--root", "/r", "system", "prune", "-a", "-f"]])
def test_the_lean_parse_equals_argparses(argv):
    parser = build_parser(requested_verb(argv))
    lean = parser.lean_parse(argv)
    assert lean is not None and vars(lean) == vars(parser.argparse_parser().parse_args(argv))
    assert lean.func.__name__.startswith("cmd_")


@pytest.mark.parametrize("argv, message", [
    (["network"], "the following arguments are required: subcommand"),
    (["network", "rm"], "argument subcommand: invalid choice: 'rm' (choose from 'ls', 'prune')"),
    (["container", "prune", "--filter", "x"], "unrecognized arguments: --filter x"),
])
def test_bad_command_lines_are_argparses_errors(argv, message):
    with pytest.raises(UsageError) as info:
        build_parser(requested_verb(argv)).parse_args(argv)
    assert str(info.value) == message


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_confirmation_reads_y_on_a_terminal_and_refuses_without_one(monkeypatch, capsys):
    monkeypatch.setattr("sys.stdin", io.StringIO("y\n"))
    assert management.confirmed(True, ["x"], "container prune")   # -f: stdin never read
    with pytest.raises(UsageError, match="^container prune asks for confirmation .* use -f"):
        management.confirmed(False, ["x"], "container prune")
    for answer, expected in (("y\n", True), ("YES\n", True), ("\n", False), ("n\n", False), ("", False)):
        monkeypatch.setattr("sys.stdin", Terminal(answer))
        assert management.confirmed(False, ["all stopped containers"], "container prune") is expected
    assert capsys.readouterr().out.startswith(
        "WARNING! This will remove all stopped containers.\nAre you sure you want to continue? [y/N] ")
    management.confirmed(False, ["a", "b"], "system prune")
    assert capsys.readouterr().out == ("WARNING! This will remove:\n  - a\n  - b\n\n"
                                       "Are you sure you want to continue? [y/N] ")


def test_the_report_has_a_section_per_kind_then_the_total(capsys):
    args = Namespace(verb="system", force=True)
    pruners = [lambda rt: (["Deleted Containers:", "c1"], 1500), lambda rt: ([], 0),
               lambda rt: (["Deleted Images:", "deleted: sha256:1"], 1000)]
    assert management.prune(None, args, ["x"], pruners) == 0
    assert capsys.readouterr().out == ("Deleted Containers:\nc1\n\nDeleted Images:\ndeleted: sha256:1\n\n"
                                       "Total reclaimed space: 2.5kB\n")


def test_a_declined_prune_prunes_nothing(monkeypatch, capsys):
    monkeypatch.setattr("sys.stdin", Terminal("n\n"))

    def never(rt):
        raise AssertionError("pruned after a no")
    assert management.prune(None, Namespace(verb="image", force=False), ["x"], [never]) == 1
    assert capsys.readouterr().err == "image prune has been cancelled\n"


class State:
    def __init__(self, cid: str, name: str, **spec):
        self.id, self.name, self.spec = cid, name, spec


class FakeRuntime:
    def __init__(self, net, containers=(), sandboxes=()):
        self.bridge_network = net
        self.states = {"container": list(containers), "sandbox": list(sandboxes)}

    def list(self, all=False, kind="container"):
        return self.states[kind]


class FakeNetwork:
    bridge = "pkt0"

    def __init__(self, exists=True, endpoints=()):
        self._exists, self._endpoints, self.torn_down = exists, list(endpoints), False

    def exists(self):
        return self._exists

    def endpoints(self):
        return {key: None for key in self._endpoints}

    def teardown(self):
        self.torn_down = True


def test_the_bridge_stays_while_a_container_or_an_attachment_uses_it():
    net = FakeNetwork(endpoints=["f" * 64])
    rt = FakeRuntime(net, containers=[State("a" * 64, "web"), State("b" * 64, "quiet", network="none"),
                                      State("c" * 64, "inpod", sandbox_id="s" * 64)],
                     sandboxes=[State("s" * 64, "pod", network="bridge")])
    assert management.prune_network(rt) == (["Kept network bridge (pkt0): in use by web, pod, ffffffffffff"], 0)
    assert not net.torn_down


def test_an_unused_bridge_is_torn_down_and_a_missing_one_is_not_reported():
    net = FakeNetwork()
    rt = FakeRuntime(net, containers=[State("b" * 64, "quiet", network="host")])
    assert management.prune_network(rt) == (["Deleted Networks:", "bridge"], 0) and net.torn_down
    missing = FakeNetwork(exists=False)
    assert management.prune_network(FakeRuntime(missing)) == ([], 0) and not missing.torn_down
