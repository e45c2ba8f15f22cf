"""Dockerfile syntax: continuations, comments, forms, variables, config instructions."""

from __future__ import annotations

import pytest

from pkube.runtime.dockerfile import (DockerfileError, apply_config_instruction, expand, key_values,
                                parse, parse_line)

SAMPLE = """\
# syntax comment
ARG BASE=busybox
FROM ${BASE} AS base

# a comment between instructions
ENV GREETING="hello world" \\
    TARGET=/srv
RUN echo one && \\
    # comments inside a continuation are dropped
    echo two
COPY --chown=1:2 a.txt b.txt $TARGET/
CMD ["sh", "-c", "echo $GREETING"]
"""


def test_parse_joins_continuations_and_drops_comments():
    instructions = parse(SAMPLE)
    assert [i.cmd for i in instructions] == ["ARG", "FROM", "ENV", "RUN", "COPY", "CMD"]
    run = instructions[3]
    assert run.args == "echo one && echo two" and run.line == 8
    assert run.command() == ["/bin/sh", "-c", "echo one && echo two"]
    assert instructions[4].flags == {"chown": "1:2"}
    assert instructions[5].exec_form() == ["sh", "-c", "echo $GREETING"]


def test_escape_directive_backtick():
    text = "# escape=`\nFROM scratch\nLABEL a=1 `\n  b=2\n"
    assert parse(text)[1].args == "a=1 b=2"


@pytest.mark.parametrize("text, message", [
    ("", "no instructions"),
    ("RUN echo hi\n", "must be FROM"),
    ("FROM scratch\nFROBNICATE x\n", "line 2: unknown instruction 'FROBNICATE'"),
])
def test_bad_dockerfiles_have_clear_errors(text, message):
    with pytest.raises(DockerfileError, match=message):
        parse(text)


def test_variable_expansion():
    env = {"A": "1", "EMPTY": ""}
    assert expand("$A ${A} ${B:-dflt} ${A:+set} ${EMPTY:-x} \\$A", env) == "1 1 dflt set x $A"
    assert expand("${B}/x", env) == "/x"


def test_env_label_forms():
    assert key_values(parse_line('ENV A="x y" B=$A'), {"A": "old"}) == [("A", "x y"), ("B", "old")]
    assert key_values(parse_line("ENV LEGACY some value"), {}) == [("LEGACY", "some value")]
    assert key_values(parse_line("ARG ONLY"), {}) == [("ONLY", None)]
    with pytest.raises(DockerfileError, match="expected KEY=value"):
        key_values(parse_line("LABEL nokey"), {})


def test_config_instructions():
    config = {"Env": ["PATH=/bin"], "Cmd": ["sh"]}
    for line in ['ENV HOME=/root PATH=$PATH:/opt', "WORKDIR /app", "WORKDIR sub/../web",
                 "USER nobody", "EXPOSE 80 53/udp", 'LABEL "com.x"="y z"',
                 'ENTRYPOINT ["/bin/app"]', "CMD --serve", "VOLUME /data"]:
        apply_config_instruction(config, parse_line(line))
    assert config["Env"] == ["HOME=/root", "PATH=/bin:/opt"]
    assert config["WorkingDir"] == "/app/web"
    assert config["User"] == "nobody"
    assert config["ExposedPorts"] == {"80/tcp": {}, "53/udp": {}}
    assert config["Labels"] == {"com.x": "y z"}
    assert config["Entrypoint"] == ["/bin/app"]
    assert config["Cmd"] == ["/bin/sh", "-c", "--serve"]
    assert config["Volumes"] == {"/data": {}}


def test_entrypoint_resets_inherited_cmd():
    config = {"Cmd": ["sh"]}
    apply_config_instruction(config, parse_line("ENTRYPOINT top -b"))
    assert config == {"Entrypoint": ["/bin/sh", "-c", "top -b"]}


def test_run_is_not_a_config_change():
    with pytest.raises(DockerfileError, match="only config instructions"):
        apply_config_instruction({}, parse_line("RUN true"))


def test_bad_port():
    with pytest.raises(DockerfileError, match="invalid port"):
        apply_config_instruction({}, parse_line("EXPOSE http"))


def test_healthcheck_and_onbuild():
    config = {}
    apply_config_instruction(config, parse_line(
        'HEALTHCHECK --interval=1m30s --timeout=500ms --retries=3 CMD ["wget", "-q", "x"]'))
    assert config["Healthcheck"] == {"Test": ["CMD", "wget", "-q", "x"], "Interval": 90_000_000_000,
                                     "Timeout": 500_000_000, "Retries": 3}
    apply_config_instruction(config, parse_line("HEALTHCHECK CMD wget -q localhost || exit 1"))
    assert config["Healthcheck"] == {"Test": ["CMD-SHELL", "wget -q localhost || exit 1"]}
    apply_config_instruction(config, parse_line("HEALTHCHECK NONE"))
    assert config["Healthcheck"] == {"Test": ["NONE"]}
    with pytest.raises(DockerfileError, match="invalid duration"):
        apply_config_instruction(config, parse_line("HEALTHCHECK --interval=soon CMD true"))
    apply_config_instruction(config, parse_line("ONBUILD COPY . /app"))
    assert config["OnBuild"] == ["COPY . /app"]
    with pytest.raises(DockerfileError, match="not allowed as an ONBUILD trigger"):
        apply_config_instruction(config, parse_line("ONBUILD FROM x"))
