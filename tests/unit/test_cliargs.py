"""pdocker's lean command-line parser gives what argparse gives, over pdocker's real parser:
the same Namespace for the command lines it parses itself, and argparse's own help and error
messages for everything else."""

from __future__ import annotations

import os
import random
import subprocess
import sys

import pytest

from pkube.pdocker import containers, flags
from pkube.pdocker.parser import build_parser, requested_verb
from pkube.pdocker.cliargs import REMAINDER, Parser, UsageError

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def parser_for(argv: list[str]) -> Parser:
    """The parser pdocker builds for `argv` (only its verb, as main() does)."""
    return build_parser(requested_verb(argv))


def argparse_outcome(parser: Parser, argv: list[str]):
    """vars() of argparse's Namespace, or the UsageError's message, or ('exit', code)."""
    try:
        return vars(parser.argparse_parser().parse_args(argv))
    except UsageError as e:
        return str(e)
    except SystemExit as e:
        return ("exit", e.code)


LEAN_CASES = [
    ["run", "--rm", "--network", "none", "busybox", "true"],
    ["--root", "/r", "--bridge", "br9", "--subnet=10.9.0.0/16", "run", "busybox"],
    ["run", "-it", "--rm", "busybox", "sh", "-c", "echo hi; exit 3"],
    ["run", "-dit", "busybox"], ["run", "-itd", "busybox"], ["create", "-ti", "busybox", "sh"],
    ["run", "-p8080:80", "-p", "9090:90/udp", "--publish=1:2", "busybox"],
    ["run", "-e", "A=1", "-eB=2", "--env=C=3", "--env", "D", "-e=E=5", "busybox", "env"],
    ["run", "-v", "/tmp/x:/data:ro", "-w", "/data", "-u", "nobody", "-h", "box", "busybox"],
    ["run", "-m", "64m", "--cpus", "1.5", "--cpu-shares=512", "-c", "7", "--pids-limit", "9", "busybox"],
    ["run", "--entrypoint", "/bin/sh", "--name=web", "-l", "a=b", "--label", "c", "busybox"],
    ["run", "--net", "host", "busybox", "ls", "-l", "--color=auto", "-5"],
    ["run", "busybox", "sh", "-c", "--", "x"], ["run", "busybox", "--", "sh"],
    ["run", "--", "busybox", "sh"], ["run", "--rm", "busybox", "-it"],
    ["create", "--name", "x", "busybox"],
    ["exec", "web", "ls"], ["exec", "-it", "web", "sh", "-c", "ls -l"], ["exec", "web", "--", "ls"],
    ["exec", "-d", "-e", "X=1", "-w", "/etc", "-u", "0", "web", "top", "-b", "-n", "1"],
    ["ps"], ["ps", "-aq"], ["ps", "-a", "-q", "--no-trunc", "-f", "label=a=b", "--filter=label=c"],
    ["ps", "--no-tr"], ["logs", "-f", "-n", "5", "web"], ["logs", "web", "-f"],
    ["logs", "-t", "--tail", "all", "--since", "10m", "web"],
    ["kill", "-s", "TERM", "a"], ["kill", "-sHUP", "a", "b"], ["kill", "a"],
    ["rm", "-f", "a", "b"], ["rm", "a"], ["stop", "-t", "3", "a"], ["stop", "a", "b"],
    ["stop", "-t", "-1", "a"], ["restart", "--time=0.5", "a"],
    ["start", "-ai", "a"], ["start", "a", "b"], ["wait", "a"], ["attach", "--no-stdin", "a"],
    ["cp", "a:/etc/hosts", "/tmp/h"], ["inspect", "-f", "{{.Name}}", "a"], ["inspect", "a", "b"],
    ["top", "a"], ["stats"], ["stats", "--no-stream", "a"], ["commit", "a"],
    ["commit", "-m", "msg", "a", "repo:tag"], ["commit", "a", "-m", "msg"], ["diff", "a"],
    ["export", "-o", "/tmp/x.tar", "a"], ["info"], ["version"],
    ["images"], ["images", "-qa", "busybox"], ["rmi", "-f", "x", "y"], ["tag", "a", "b"],
    ["import", "-c", "CMD sh", "-m", "m", "f.tar", "repo"], ["load", "-i", "f.tar"], ["save", "-o", "f", "a"],
    ["pull", "-q", "localhost:5000/x"], ["push", "x"], ["build", "-t", "x", "-f", "f", "."],
    ["build", "--build-arg", "A=1", "--no-cache", "--target", "t", "-q", "ctx"],
    ["login", "-u", "me", "-p", "pw", "localhost:5000"], ["login", "--password-stdin", "-u", "me"],
    ["logout"], ["history", "--no-trunc", "busybox"],
]


@pytest.mark.parametrize("argv", LEAN_CASES, ids=" ".join)
def test_the_lean_parse_equals_argparses(argv):
    parser = parser_for(argv)
    lean = parser.lean_parse(argv)
    assert lean is not None, "the lean engine should parse this command line itself"
    assert vars(lean) == argparse_outcome(parser, argv)
    assert parser.parse_args(argv) == lean


def test_run_takes_everything_after_the_image_as_the_command():
    args = parser_for(["run", "-d", "busybox", "sh", "-c", "x", "--rm", "-it"]).parse_args(
        ["run", "-d", "busybox", "sh", "-c", "x", "--rm", "-it"])
    assert (args.image, args.command, args.rm, args.tty, args.detach) == \
        ("busybox", ["sh", "-c", "x", "--rm", "-it"], False, False, True)
    assert args.func is containers.cmd_run and args.verb == "run"


@pytest.mark.parametrize("argv, message", [
    (["run", "--bogus-flag", "busybox"], "unrecognized arguments: --bogus-flag"),
    (["run", "--rm=yes", "busybox"], "argument --rm: ignored explicit argument 'yes'"),
    (["run", "--name"], "argument --name: expected one argument"),
    (["run", "--name", "-x", "busybox"], "argument --name: expected one argument"),
    (["run"], "the following arguments are required: image, command"),
    (["stop", "-t", "soon", "a"], "argument -t/--time: invalid float value: 'soon'"),
    (["run", "--cpu-shares", "lots", "busybox"], "argument --cpu-shares/-c: invalid int value: 'lots'"),
    (["rm"], "the following arguments are required: containers"),
    (["rm", "a", "-f", "b"], "unrecognized arguments: b"),
    (["run", "busybox", "ls", "--n"], "ambiguous option: --n could match --name, --network, --net"),
    (["ps", "-ax"], "argument -a/--all: ignored explicit argument 'x'"),
    ([], "the following arguments are required: verb"),
    (["--root"], "argument --root: expected one argument"),
])
def test_bad_input_gets_argparses_error(argv, message):
    parser = parser_for(argv)
    assert parser.lean_parse(argv) is None
    with pytest.raises(UsageError) as info:
        parser.parse_args(argv)
    assert str(info.value) == message == argparse_outcome(parser, argv)


def test_an_unknown_verb_gets_argparses_error_listing_every_verb():
    with pytest.raises(UsageError) as info:
        parser_for(["frobnicate"]).parse_args(["frobnicate"])
    assert str(info.value).startswith("argument verb: invalid choice: 'frobnicate' (choose from 'run', ")
    assert "'images'" in str(info.value) and "'build'" in str(info.value)


@pytest.mark.parametrize("argv", [["-h"], ["--help"], ["ps", "-h"], ["run", "--help"], ["images", "--help"]])
def test_help_is_argparses(argv, capsys):
    parser = parser_for(argv)
    with pytest.raises(SystemExit) as info:
        parser.parse_args(argv)
    shown = capsys.readouterr().out
    assert info.value.code == 0 and shown.startswith("usage: pdocker")
    assert argparse_outcome(parser, argv) == ("exit", 0)
    assert capsys.readouterr().out == shown


def test_run_help_lists_its_flags_and_h_is_the_hostname(capsys):
    with pytest.raises(SystemExit):
        parser_for(["run", "--help"]).parse_args(["run", "--help"])
    shown = capsys.readouterr().out
    assert shown.startswith("usage: pdocker run ") and "-h HOSTNAME, --hostname HOSTNAME" in shown
    assert parser_for(["run"]).parse_args(["run", "-h", "box", "busybox"]).hostname == "box"


TOKENS = ["-i", "-t", "-it", "-dit", "--rm", "-d", "--name", "x", "-e", "A=1", "-eA=1", "--",
          "busybox", "sh", "-c", "-x", "--network=none", "-h", "-5", "--help", "--na", "-m",
          "--cpus", "2", "-p", "1:2", "--ne", "-", "a b", "-e=", "--rm=1"]


@pytest.mark.parametrize("verb", ["run", "exec", "stop", "commit", "ps", "logs"])
def test_random_command_lines_parse_as_argparse_parses_them(verb):
    """Whatever the words, the lean engine either defers to argparse or agrees with it."""
    rng = random.Random(f"pdocker-{verb}")
    parser = parser_for([verb])
    reference = parser.argparse_parser()
    handled = 0
    for _ in range(400):
        argv = [verb] + rng.choices(TOKENS, k=rng.randint(0, 6))
        lean = parser.lean_parse(argv)
        try:
            expected = vars(reference.parse_args(argv))
        except (UsageError, SystemExit):
            expected = None
        if lean is not None:
            handled += 1
            assert vars(lean) == expected, argv
    assert handled > 10


def test_recording_parser_keeps_argparses_defaults_rules():
    parser = Parser(prog="t")
    parser.set_defaults(level="low")
    parser.add_argument("--level")
    parser.add_argument("--count", type=int, default="7")
    parser.add_argument("rest", nargs=REMAINDER)
    assert vars(parser.parse_args([])) == {"level": "low", "count": 7, "rest": []}
    assert vars(parser.parse_args(["--count", "2", "a", "--level", "x"])) == \
        {"level": "low", "count": 2, "rest": ["a", "--level", "x"]}


def test_features_the_lean_engine_lacks_go_to_argparse():
    parser = Parser(prog="t")
    parser.add_argument("--mode", choices=["a", "b"])
    assert parser.lean_parse(["--mode", "a"]) is None
    assert parser.parse_args(["--mode", "a"]).mode == "a"
    with pytest.raises(UsageError, match="invalid choice"):
        parser.parse_args(["--mode", "c"])


def test_parsing_a_run_imports_no_argparse():
    code = ("import sys; sys.path[:0] = [%r]; from pkube.pdocker import parser; "
            "argv = ['run', '--rm', '-it', 'busybox', 'sh']; "
            "parser.build_parser(parser.requested_verb(argv)).parse_args(argv); "
            "heavy = {'argparse', 're', 'json', 'pathlib', 'gettext', 'locale', 'enum', 'signal'}; "
            "print(sorted(heavy & set(sys.modules)))" % REPO)
    result = subprocess.run([sys.executable, "-I", "-S", "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_kill_signal_names_are_signal_modules():
    import signal
    for member in signal.Signals:
        for text in (member.name, member.name[3:], member.name.lower(), str(int(member))):
            assert flags.signal_number(text) == int(member)
    for bad in ("SIG_DFL", "_IGN", "NOPE", "sig"):
        with pytest.raises(UsageError, match="invalid signal"):
            flags.signal_number(bad)
