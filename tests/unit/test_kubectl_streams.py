"""pkubectl logs and exec: the requests they make and how exec ends."""

from urllib.parse import parse_qsl

import pytest

from kubectl.errors import CliError
from kubectl.streams import exec_query, exit_code_of, log_params


def test_log_flags_become_query_parameters():
    assert log_params("app", True, True, 10, True) == {
        "container": "app", "follow": "true", "previous": "true", "tailLines": "10", "timestamps": "true"}
    assert log_params(None, False, False, -1, False) == {}


def test_exec_sends_one_command_parameter_per_argument():
    query = parse_qsl(exec_query(["sh", "-c", "echo hi"], "app", stdin=True, tty=False))
    assert [v for k, v in query if k == "command"] == ["sh", "-c", "echo hi"]
    assert ("container", "app") in query and ("stdin", "true") in query and ("stderr", "true") in query
    tty = dict(parse_qsl(exec_query(["sh"], None, stdin=True, tty=True)))
    assert tty["tty"] == "true" and tty["stderr"] == "false"


def test_exit_code_comes_from_the_error_channel_status():
    assert exit_code_of({"status": "Success"}) == 0
    failure = {"status": "Failure", "reason": "NonZeroExitCode",
               "details": {"causes": [{"reason": "ExitCode", "message": "3"}]}}
    assert exit_code_of(failure) == 3
    with pytest.raises(CliError, match="container not found"):
        exit_code_of({"status": "Failure", "message": "container not found"})
