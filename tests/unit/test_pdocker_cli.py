"""pdocker's pure parts: flag values, output formats, the parser's verb selection, error
translation (one line, exit 125), progress bars."""

from __future__ import annotations

import io
import os

import pytest

from pkube.pdocker import cli, containers, flags, output, parser, reports
from pkube.pdocker.cliargs import UsageError
from pkube.pdocker.output import ProgressBars
from pkube.runtime import logs
from pkube.runtime.spec import Mount


@pytest.mark.parametrize("text, value", [("512", 512), ("64m", 64 << 20), ("1g", 1 << 30),
                                         ("1.5k", 1536), ("20MB", 20 << 20)])
def test_parse_bytes(text, value):
    assert flags.parse_bytes(text) == value


def test_parse_bytes_refuses_garbage():
    with pytest.raises(UsageError):
        flags.parse_bytes("lots")


@pytest.mark.parametrize("seconds, text", [(0.2, "Less than a second"), (1, "1 second"), (30, "30 seconds"),
                                           (90, "About a minute"), (600, "10 minutes"), (3600, "About an hour"),
                                           (7200, "2 hours"), (3 * 86400, "3 days")])
def test_human_duration_like_docker(seconds, text):
    assert output.human_duration(seconds) == text


def test_table_and_format_and_cp_syntax():
    assert output.table([["A", "BB"], ["ccc", "d"]]) == "A     BB\nccc   d"
    doc = {"State": {"Running": True, "ExitCode": 0}, "Name": "/x"}
    assert output.render_format("{{.State.Running}} {{.Name}} {{json .State}}", doc) == \
        'true /x {"Running": true, "ExitCode": 0}'
    assert containers.split_cp("web:/etc/hosts") == ("web", "/etc/hosts")
    assert containers.split_cp("/tmp/a:b") == (None, "/tmp/a:b")
    assert output.command_text(["sh", "-c", "echo a very long command"]) == '"sh -c echo a very l…"'


def test_volume_syntax(tmp_path):
    assert flags.volume(f"{tmp_path}:/data:ro") == Mount(str(tmp_path), "/data", True)
    for bad in ("named:/data", f"{tmp_path}:/data:rx", "/only"):
        with pytest.raises(UsageError):
            flags.volume(bad)


def test_cli_usage_errors_are_one_line(capsys, tmp_path):
    assert cli.main(["--root", str(tmp_path), "kill", "-s", "NOPE", "x"]) == 125
    err = capsys.readouterr().err
    assert err.startswith("pdocker: error: ") and err.count("\n") == 1


def test_requested_verb_skips_global_options():
    assert parser.requested_verb(["--root", "/r", "--bridge", "b", "-x", "ps", "-a"]) == "ps"
    assert parser.requested_verb(["--root", "/r"]) is None


def verbs_of(parser) -> set[str]:
    """The verbs that got a parser (from the parser's record of add_parser calls)."""
    return {name for name, _kwargs, _parser in parser.subparsers.parsers}


def test_only_the_requested_verb_is_built_and_unknown_verbs_get_the_full_parser():
    full = verbs_of(parser.build_parser())
    assert {"run", "ps", "exec", "images", "build"} <= full
    assert verbs_of(parser.build_parser("ps")) == {"ps"}
    assert verbs_of(parser.build_parser("images")) == {"images"}
    assert verbs_of(parser.build_parser("frobnicate")) == full


def test_since_accepts_durations_and_timestamps():
    import time
    assert abs(flags.parse_since("10m") - (time.time() - 600)) < 5
    assert flags.parse_since("2026-01-01T00:00:00Z") == logs.parse_time("2026-01-01T00:00:00Z")
    with pytest.raises(UsageError):
        flags.parse_since("yesterday")


def test_decimal_sizes_like_docker():
    assert [output.decimal_size(n) for n in (0, 648, 1234, 3_400_000)] == ["0B", "648B", "1.23kB", "3.4MB"]
    assert reports.net_io(os.getpid()).count(" / ") == 1


def test_progress_bars_print_status_changes_off_a_terminal():
    from pkube.runtime.registry import Progress
    out = io.StringIO()
    bars = ProgressBars(out)
    for event in [Progress("aaa", "Downloading", 1, 4), Progress("bbb", "Already exists"),
                  Progress("aaa", "Downloading", 4, 4), Progress("aaa", "Pull complete", 4, 4)]:
        bars.update(event)
    assert out.getvalue() == "aaa: Downloading\nbbb: Already exists\naaa: Pull complete\n"


def test_progress_bar_line_on_a_terminal():
    from pkube.runtime.registry import Progress

    class Tty(io.StringIO):
        def isatty(self):
            return True
    out = Tty()
    ProgressBars(out).update(Progress("aaa", "Pushing", 500_000, 1_000_000))
    assert "aaa: Pushing [===================>" in out.getvalue() and "500kB/1MB" in out.getvalue()


class State:
    """The fields of runtime.state.ContainerState that ps's PORTS column reads."""

    def __init__(self, running: bool):
        self.running = running
        self.spec = {"port_mappings": [{"host_port": 8080, "container_port": 80, "protocol": "tcp"}]}


def test_ps_shows_published_ports_of_running_containers_only():
    assert reports.ports_text(State(running=True)) == "0.0.0.0:8080->80/tcp"
    assert reports.ports_text(State(running=False)) == ""


def test_images_of_unknown_creation_time_are_not_aged():
    assert output.ago("") == "N/A"
    assert output.ago("2020-01-01T00:00:00.123456789Z").endswith("years ago")


def test_a_bug_is_a_traceback_not_a_one_line_error(monkeypatch, tmp_path):
    def broken(rt, args):
        raise KeyError("bug")
    monkeypatch.setattr(reports, "cmd_version", broken)
    with pytest.raises(KeyError):
        cli.main(["--root", str(tmp_path), "version"])


def test_errors_of_library_modules_not_imported_are_not_looked_up():
    known = cli.user_errors()
    assert UsageError in known and KeyError not in known
