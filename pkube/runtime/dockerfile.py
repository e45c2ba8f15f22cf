"""Dockerfile parsing: instructions, continuations, comments, variables, and config edits.

This module knows the syntax only; pkube/runtime/build.py executes the instructions.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field

KNOWN = {"FROM", "RUN", "COPY", "ADD", "ENV", "ARG", "WORKDIR", "USER", "CMD", "ENTRYPOINT",
         "EXPOSE", "LABEL", "VOLUME", "STOPSIGNAL", "SHELL", "MAINTAINER", "HEALTHCHECK", "ONBUILD"}
CONFIG_ONLY = {"ENV", "CMD", "ENTRYPOINT", "EXPOSE", "LABEL", "USER", "WORKDIR", "VOLUME",
               "STOPSIGNAL", "MAINTAINER", "SHELL", "HEALTHCHECK", "ONBUILD"}
DURATION_UNITS = {"ns": 1, "us": 1_000, "ms": 1_000_000, "s": 1_000_000_000,
                  "m": 60_000_000_000, "h": 3_600_000_000_000}
EXPANDED = {"ADD", "COPY", "ENV", "EXPOSE", "FROM", "LABEL", "STOPSIGNAL", "USER", "VOLUME",
            "WORKDIR"}
DEFAULT_SHELL = ["/bin/sh", "-c"]
_DIRECTIVE_RE = re.compile(r"^#\s*([a-zA-Z]+)\s*=\s*(.+?)\s*$")
_VAR_RE = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)(?:(:[-+])([^}]*))?\}|([A-Za-z_][A-Za-z0-9_]*))")


class DockerfileError(Exception):
    """A Dockerfile that cannot be parsed or executed; the message names the line."""


@dataclass(frozen=True)
class Instruction:
    """One instruction. ``args`` is the raw text after the keyword and its --flags."""

    cmd: str
    args: str
    line: int = 0
    flags: dict = field(default_factory=dict)

    @property
    def original(self) -> str:
        flags = " ".join(f"--{k}={v}" for k, v in self.flags.items())
        return " ".join(p for p in (self.cmd, flags, self.args) if p)

    def exec_form(self) -> list[str] | None:
        """The JSON-array (exec) form of the arguments, or None for the shell form."""
        text = self.args.strip()
        if not text.startswith("["):
            return None
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            return None
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return value
        return None

    def command(self, shell: list[str] | None = None) -> list[str]:
        """argv for RUN/CMD/ENTRYPOINT: exec form as is, shell form through ``shell``."""
        argv = self.exec_form()
        return argv if argv is not None else list(shell or DEFAULT_SHELL) + [self.args]

    def fail(self, message: str) -> DockerfileError:
        return DockerfileError(f"Dockerfile line {self.line}: {self.cmd}: {message}")


def parse(text: str) -> list[Instruction]:
    """All instructions of a Dockerfile. Raises DockerfileError for unknown instructions."""
    escape = _escape_directive(text)
    instructions = []
    for line_no, logical in _logical_lines(text, escape):
        instructions.append(parse_line(logical, line_no))
    if not instructions:
        raise DockerfileError("the Dockerfile has no instructions")
    first = next((i for i in instructions if i.cmd != "ARG"), None)
    if first is None or first.cmd != "FROM":
        raise DockerfileError("the first instruction (after ARGs) must be FROM")
    return instructions


def parse_line(text: str, line: int = 0) -> Instruction:
    """One logical line ("CMD [\"sh\"]") as an Instruction."""
    stripped = text.strip()
    if not stripped:
        raise DockerfileError(f"Dockerfile line {line}: empty instruction")
    keyword, rest = _split_keyword(stripped)
    cmd = keyword.upper()
    if cmd not in KNOWN:
        raise DockerfileError(f"Dockerfile line {line}: unknown instruction {keyword!r}")
    flags, rest = _split_flags(rest) if cmd in ("COPY", "ADD", "FROM", "RUN", "HEALTHCHECK") \
        else ({}, rest)
    return Instruction(cmd, rest.strip(), line, flags)


def _split_keyword(text: str) -> tuple[str, str]:
    match = re.match(r"^(\S+)\s*(.*)$", text, re.S)
    return match.group(1), match.group(2)


def _split_flags(rest: str) -> tuple[dict, str]:
    flags = {}
    while rest.startswith("--"):
        word, _, rest = rest.partition(" ")
        key, _, value = word[2:].partition("=")
        flags[key] = value
        rest = rest.lstrip()
    return flags, rest


def _escape_directive(text: str) -> str:
    for raw in text.splitlines():
        match = _DIRECTIVE_RE.match(raw.strip())
        if not match:
            break
        if match.group(1).lower() == "escape":
            if match.group(2) not in ("\\", "`"):
                raise DockerfileError(f"invalid escape directive {match.group(2)!r}")
            return match.group(2)
    return "\\"


def _logical_lines(text: str, escape: str) -> list[tuple[int, str]]:
    """(first line number, joined text): comments dropped, continuations joined."""
    result, parts, start = [], [], 0
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and not parts):
            continue
        if not stripped:
            continue
        if not parts:
            start = number
        body = raw.rstrip()
        if body.endswith(escape):
            parts.append(body[:-1])
            continue
        parts.append(body)
        result.append((start, " ".join(p.strip() for p in parts)))
        parts = []
    if parts:
        result.append((start, " ".join(p.strip() for p in parts)))
    return result


# ---------------------------------------------------------------------------------------------
# Variables


def expand(text: str, variables: dict[str, str]) -> str:
    """Substitute $VAR, ${VAR}, ${VAR:-default}, ${VAR:+alt}; ``\\$`` stays a literal $."""
    out, i = [], 0
    while i < len(text):
        if text.startswith("\\$", i):
            out.append("$")
            i += 2
            continue
        match = _VAR_RE.match(text, i) if text[i] == "$" else None
        if not match:
            out.append(text[i])
            i += 1
            continue
        out.append(_substitute(match, variables))
        i = match.end()
    return "".join(out)


def _substitute(match: re.Match, variables: dict[str, str]) -> str:
    name = match.group(1) or match.group(4)
    value = variables.get(name)
    op, word = match.group(2), match.group(3) or ""
    if op == ":-":
        return value if value else expand(word, variables)
    if op == ":+":
        return expand(word, variables) if value else ""
    return value or ""


def key_values(ins: Instruction, variables: dict[str, str]) -> list[tuple[str, str]]:
    """The pairs of ENV/LABEL/ARG: ``k=v k2="v 2"`` or the legacy ``ENV key some value``."""
    text = ins.args
    first = text.split(None, 1)[0] if text.split() else ""
    if ins.cmd == "ENV" and "=" not in first:
        parts = text.split(None, 1)
        if len(parts) != 2:
            raise ins.fail("ENV needs a value: ENV KEY=value")
        return [(parts[0], expand(parts[1], variables))]
    try:
        words = shlex.split(expand(text, variables))
    except ValueError as e:
        raise ins.fail(f"cannot parse {text!r}: {e}") from None
    pairs = []
    for word in words:
        key, sep, value = word.partition("=")
        if not key or (not sep and ins.cmd != "ARG"):
            raise ins.fail(f"expected KEY=value, got {word!r}")
        pairs.append((key, value if sep else None))
    return pairs


# ---------------------------------------------------------------------------------------------
# Config edits


def env_dict(config: dict) -> dict[str, str]:
    """The image's Env list as a dict (later entries win)."""
    result = {}
    for item in config.get("Env") or []:
        key, _, value = item.partition("=")
        result[key] = value
    return result


def set_env(config: dict, key: str, value: str) -> None:
    env = [e for e in config.get("Env") or [] if e.partition("=")[0] != key]
    env.append(f"{key}={value}")
    config["Env"] = env


def apply_config_instruction(config: dict, ins: Instruction,
                             variables: dict[str, str] | None = None) -> None:
    """Apply a config-only instruction (ENV, CMD, ...) to an OCI config section in place."""
    if ins.cmd not in CONFIG_ONLY:
        raise ins.fail("not allowed here (only config instructions: "
                       + ", ".join(sorted(CONFIG_ONLY)) + ")")
    variables = dict(env_dict(config), **(variables or {}))
    handler = _HANDLERS[ins.cmd]
    handler(config, ins, variables)


def _env(config, ins, variables):
    for key, value in key_values(ins, variables):
        set_env(config, key, value)
        variables[key] = value


def _cmd(config, ins, variables):
    config["Cmd"] = ins.command(config.get("Shell"))


def _entrypoint(config, ins, variables):
    config["Entrypoint"] = ins.command(config.get("Shell"))
    config.pop("Cmd", None)


def _expose(config, ins, variables):
    ports = dict(config.get("ExposedPorts") or {})
    for word in expand(ins.args, variables).split():
        port, _, proto = word.partition("/")
        if not port.isdigit() or proto not in ("", "tcp", "udp", "sctp"):
            raise ins.fail(f"invalid port {word!r}")
        ports[f"{port}/{proto or 'tcp'}"] = {}
    config["ExposedPorts"] = ports


def _label(config, ins, variables):
    labels = dict(config.get("Labels") or {})
    for key, value in key_values(ins, variables):
        labels[key] = value
    config["Labels"] = labels


def _user(config, ins, variables):
    config["User"] = expand(ins.args, variables).strip()


def _workdir(config, ins, variables):
    path = expand(ins.args, variables).strip()
    if not path:
        raise ins.fail("WORKDIR needs a path")
    if not path.startswith("/"):
        path = (config.get("WorkingDir") or "/").rstrip("/") + "/" + path
    config["WorkingDir"] = _clean_path(path)


def _volume(config, ins, variables):
    argv = ins.exec_form() or expand(ins.args, variables).split()
    volumes = dict(config.get("Volumes") or {})
    for path in argv:
        volumes[path] = {}
    config["Volumes"] = volumes


def _stopsignal(config, ins, variables):
    config["StopSignal"] = expand(ins.args, variables).strip()


def _maintainer(config, ins, variables):
    labels = dict(config.get("Labels") or {})
    labels["maintainer"] = ins.args
    config["Labels"] = labels


def _shell(config, ins, variables):
    argv = ins.exec_form()
    if not argv:
        raise ins.fail('SHELL needs the JSON form, e.g. SHELL ["/bin/sh", "-c"]')
    config["Shell"] = argv


def _healthcheck(config, ins, variables):
    text = ins.args.strip()
    if text.upper() == "NONE":
        config["Healthcheck"] = {"Test": ["NONE"]}
        return
    keyword, _, command = text.partition(" ")
    if keyword.upper() != "CMD" or not command.strip():
        raise ins.fail("usage: HEALTHCHECK [--interval=D --timeout=D --start-period=D "
                       "--retries=N] CMD command | NONE")
    argv = Instruction("CMD", command.strip(), ins.line).exec_form()
    check = {"Test": ["CMD"] + argv if argv is not None else ["CMD-SHELL", command.strip()]}
    for flag, key in (("interval", "Interval"), ("timeout", "Timeout"),
                      ("start-period", "StartPeriod")):
        if flag in ins.flags:
            check[key] = _duration_ns(ins, ins.flags[flag])
    if "retries" in ins.flags:
        if not ins.flags["retries"].isdigit():
            raise ins.fail(f"--retries must be a number, got {ins.flags['retries']!r}")
        check["Retries"] = int(ins.flags["retries"])
    config["Healthcheck"] = check


def _duration_ns(ins: Instruction, text: str) -> int:
    """Go-style durations: 30s, 1m30s, 500ms."""
    parts = re.findall(r"(\d+(?:\.\d+)?)(ns|us|ms|s|m|h)", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ins.fail(f"invalid duration {text!r} (e.g. 30s, 1m30s)")
    return int(sum(float(n) * DURATION_UNITS[u] for n, u in parts))


def _onbuild(config, ins, variables):
    trigger = parse_line(ins.args, ins.line)
    if trigger.cmd in ("ONBUILD", "FROM", "MAINTAINER"):
        raise ins.fail(f"{trigger.cmd} is not allowed as an ONBUILD trigger")
    config["OnBuild"] = list(config.get("OnBuild") or []) + [ins.args]


_HANDLERS = {"ENV": _env, "CMD": _cmd, "ENTRYPOINT": _entrypoint, "EXPOSE": _expose,
             "LABEL": _label, "USER": _user, "WORKDIR": _workdir, "VOLUME": _volume,
             "STOPSIGNAL": _stopsignal, "MAINTAINER": _maintainer, "SHELL": _shell,
             "HEALTHCHECK": _healthcheck, "ONBUILD": _onbuild}


def _clean_path(path: str) -> str:
    parts = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if parts:
                parts.pop()
            continue
        parts.append(part)
    return "/" + "/".join(parts)
