"""``pkubectl``: the command line. Parses flags, runs one command, translates errors once.

Heavy modules (httpx, yaml, the API packages) are imported by the commands
that need them, so ``pkubectl version --client`` starts fast.
"""

from __future__ import annotations

import argparse
import sys
from typing import Callable, Optional

from pkube.kubectl import commands
from pkube.kubectl.batch import add_create_job_flags
from pkube.kubectl.commands import add_create_deployment_flags
from pkube.kubectl.errors import CliError

COMMANDS: dict[str, Callable] = {}
# Optional imports pkubectl never uses: httpx loads its own command-line tool (click, rich,
# pygments) whenever they are installed, a third of pkubectl's start-up CPU.
UNUSED_OPTIONAL_IMPORTS = ("httpx._main",)


def command(name: str):
    def register(func):
        COMMANDS[name] = func
        return func
    return register


# ---------------------------------------------------------------- parser

def _global_flags() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False, argument_default=argparse.SUPPRESS)
    common.add_argument("--kubeconfig")
    common.add_argument("--context")
    common.add_argument("-n", "--namespace")
    common.add_argument("--request-timeout", type=float)
    return common


def _file_flags(parser: argparse.ArgumentParser, required: bool = False) -> None:
    parser.add_argument("-f", "--filename", action="append", default=[], required=required)
    parser.add_argument("-R", "--recursive", action="store_true")


def _add_get(sub, common) -> None:
    p = sub.add_parser("get", parents=[common])
    p.add_argument("resources", nargs="*")
    p.add_argument("-o", "--output")
    p.add_argument("-A", "--all-namespaces", action="store_true")
    p.add_argument("-l", "--selector")
    p.add_argument("--field-selector")
    p.add_argument("-w", "--watch", action="store_true")
    p.add_argument("--watch-only", action="store_true")
    p.add_argument("--show-labels", action="store_true")
    p.add_argument("--sort-by")
    p.add_argument("--show-managed-fields", action="store_true",
                   help="keep metadata.managedFields in -o yaml|json (hidden otherwise, as kubectl does)")
    p.add_argument("--no-headers", action="store_true")
    p.add_argument("--raw", help="GET this URI path from the server and print the answer as it is (e.g. /metrics)")


def _add_writers(sub, common) -> None:
    p = sub.add_parser("apply", parents=[common])
    _file_flags(p, required=True)
    p.add_argument("--dry-run", default="none", const="client", nargs="?", choices=("none", "client", "server"))
    p.add_argument("--validate", default="strict", const="strict", nargs="?")
    p.add_argument("--server-side", action="store_true")
    p.add_argument("--field-manager", default="kubectl")
    p.add_argument("--prune", action="store_true")
    p.add_argument("--prune-allowlist", action="append", default=[])
    p.add_argument("-l", "--selector")
    p.add_argument("--force-conflicts", action="store_true")
    p.add_argument("-o", "--output")
    p = sub.add_parser("create", parents=[common])
    _file_flags(p)
    p.add_argument("--dry-run", default="none", const="client", nargs="?", choices=("none", "client", "server"))
    p.add_argument("--save-config", action="store_true")
    p.add_argument("--validate", default="strict", const="strict", nargs="?")
    p.add_argument("what", nargs="*")
    p.add_argument("--from-literal", action="append", default=[])
    p.add_argument("--from-file", action="append", default=[])
    p.add_argument("--type", default="Opaque")
    p.add_argument("-o", "--output")
    add_create_deployment_flags(p)
    add_create_job_flags(p)
    p = sub.add_parser("delete", parents=[common])
    _file_flags(p)
    p.add_argument("targets", nargs="*")
    p.add_argument("-l", "--selector")
    p.add_argument("--all", action="store_true")
    p.add_argument("-A", "--all-namespaces", action="store_true")
    p.add_argument("--grace-period", type=int, default=-1)
    p.add_argument("--now", action="store_true")
    p.add_argument("--force", action="store_true")
    p.add_argument("--wait", default="true", const="true", nargs="?", choices=("true", "false"))
    p.add_argument("--timeout", type=float, default=60.0)
    p.add_argument("--ignore-not-found", action="store_true")
    p.add_argument("--cascade", default="background", choices=("background", "foreground", "orphan"))
    for verb in ("label", "annotate"):
        p = sub.add_parser(verb, parents=[common])
        p.add_argument("words", nargs="+")
        p.add_argument("--overwrite", action="store_true")
    p = sub.add_parser("patch", parents=[common])
    p.add_argument("targets", nargs="+")
    p.add_argument("-p", "--patch", required=True)
    p.add_argument("--type", default="strategic", choices=("strategic", "merge", "json"))
    p = sub.add_parser("scale", parents=[common])
    p.add_argument("targets", nargs="+")
    p.add_argument("--replicas", type=int, required=True)
    p.add_argument("--current-replicas", type=int)
    p = sub.add_parser("edit", parents=[common])
    p.add_argument("targets", nargs="+")


def _add_readers(sub, common) -> None:
    p = sub.add_parser("describe", parents=[common])
    p.add_argument("targets", nargs="+")
    p.add_argument("-l", "--selector")
    p = sub.add_parser("logs", parents=[common])
    p.add_argument("pod")
    p.add_argument("-c", "--container")
    p.add_argument("-f", "--follow", action="store_true")
    p.add_argument("-p", "--previous", action="store_true")
    p.add_argument("--tail", type=int, default=-1)
    p.add_argument("--timestamps", action="store_true")
    p = sub.add_parser("exec", parents=[common])
    p.add_argument("pod")
    p.add_argument("-c", "--container")
    p.add_argument("-i", "--stdin", action="store_true")
    p.add_argument("-t", "--tty", action="store_true")
    p.add_argument("cmd", nargs="*")  # the command normally follows "--" (see main)
    p = sub.add_parser("rollout", parents=[common])
    p.add_argument("action", choices=("status", "history", "undo", "restart", "pause", "resume"))
    p.add_argument("targets", nargs="+")
    p.add_argument("--to-revision", type=int, default=0)
    p.add_argument("--timeout", type=float, default=300.0)
    p.add_argument("-w", "--watch", default="true", const="true", nargs="?", choices=("true", "false"))
    p = sub.add_parser("explain", parents=[common])
    p.add_argument("path")
    p.add_argument("--recursive", action="store_true")
    p.add_argument("--api-version")
    p = sub.add_parser("version", parents=[common])
    p.add_argument("--client", action="store_true")
    p.add_argument("-o", "--output")
    p = sub.add_parser("api-resources", parents=[common])
    p.add_argument("-o", "--output")
    p.add_argument("--namespaced", choices=("true", "false"))
    sub.add_parser("cluster-info", parents=[common])


class UsageError(CliError):
    """A command line argparse refused; main adds kubectl's "See ... --help" hint."""


class _Parser(argparse.ArgumentParser):
    """argparse with kubectl's words for what it refuses, and no abbreviated flags (pflag has none)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        raise usage_error(message, self.prog)


def usage_error(message: str, prog: str) -> CliError:
    """kubectl's wording of an argparse complaint: unknown commands and flags, missing flags."""
    import re

    choice = re.match(r"argument (command|SUBCOMMAND): invalid choice: '([^']*)'", message)
    if choice:
        return CliError(f"unknown command \"{choice.group(2)}\" for \"{prog}\"\nRun '{prog} --help' for usage.")
    if message.startswith("unrecognized arguments: "):
        words = message.removeprefix("unrecognized arguments: ").split()
        flag = next((w for w in words if w.startswith("-") and w != "-"), None)
        if flag is None:
            return UsageError(f"unexpected arguments: {' '.join(words)}")
        if flag.startswith("--"):
            return UsageError(f"unknown flag: {flag.split('=', 1)[0]}")
        return UsageError(f"unknown shorthand flag: '{flag[1:2]}' in {flag}")
    required = re.match(r"the following arguments are required: (.*)", message)
    if required and all(w.startswith("--") for w in required.group(1).split(", ")):
        names = " ".join(f'"{w[2:]}"' for w in required.group(1).split(", "))
        return UsageError(f"required flag(s) {names} not set")
    return UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    common = _global_flags()
    parser = _Parser(prog="pkubectl", parents=[common], description="pkubectl controls a pkube cluster.")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)
    sub.required = False
    _add_get(sub, common)
    _add_writers(sub, common)
    _add_readers(sub, common)
    commands.add_parsers(sub, common)
    return parser


# ---------------------------------------------------------------- commands

def _session(args):
    from pkube.kubectl.session import Flags, Session

    return Session(Flags(getattr(args, "kubeconfig", None), getattr(args, "context", None),
                         getattr(args, "namespace", None), getattr(args, "request_timeout", 30.0)))


@command("get")
def cmd_get(session, args, out, err) -> int:
    from pkube.kubectl.get import run_get, run_raw

    if args.raw is not None:
        return run_raw(session, args, out)
    return run_get(session, args, out, err)


def _validated_manifests(args):
    from pkube.kubectl.manifests import read_manifests, validate_manifests

    manifests = read_manifests(args.filename, args.recursive)
    if args.validate not in ("false", "ignore"):
        validate_manifests(manifests, strict=args.validate in ("strict", "true"))
    return manifests


def _field_validation(args) -> str:
    return {"strict": "Strict", "true": "Strict", "warn": "Warn"}.get(args.validate, "Ignore")


@command("apply")
def cmd_apply(session, args, out, err) -> int:
    from pkube.kubectl.apply import apply_manifest, prune, server_side_apply

    if args.prune and not args.selector:
        raise CliError("all resources selected for prune without explicitly passing --all. To prune all "
                       "resources, pass the --all flag. If you did not mean to prune all resources, specify "
                       "a label selector (pkubectl prunes with -l only)")
    failures = 0
    manifests = _validated_manifests(args)
    if args.server_side:
        for manifest in manifests:
            failures += _report(lambda: server_side_apply(session, manifest, args.field_manager,
                                                          args.force_conflicts, args.dry_run), out, err)
        return 1 if failures else 0
    for manifest in manifests:
        failures += _report(lambda: apply_manifest(session, manifest, args.dry_run, _field_validation(args),
                                                   warn=lambda text: err.write(text + "\n")), out, err)
    if args.prune and not failures:
        applied = [dict(m.obj, metadata=dict(m.obj.get("metadata") or {},
                                             namespace=session.object_namespace(session.for_object(m.obj), m.obj)))
                   for m in manifests]
        for line in prune(session, applied, args.selector, args.dry_run, args.prune_allowlist):
            out.write(line + "\n")
    return 1 if failures else 0


def _report(action: Callable[[], str], out, err) -> int:
    """Run one per-object action; print its line, or the server's error (then carry on). 1 on error."""
    from pkube.client.errors import ApiError

    try:
        out.write(action() + "\n")
        out.flush()
        return 0
    except ApiError as error:
        err.write(api_error_line(error) + "\n")
        return 1


@command("create")
def cmd_create(session, args, out, err) -> int:
    from pkube.kubectl.apply import create_manifest

    if args.filename:
        failures = sum(_report(lambda m=m: create_manifest(session, m, args.dry_run, args.save_config), out, err)
                       for m in _validated_manifests(args))
        return 1 if failures else 0
    return _create_imperative(session, args, out, err)


def _create_imperative(session, args, out, err) -> int:
    from pkube.kubectl.apply import create_manifest
    from pkube.kubectl.manifests import Manifest
    from pkube.kubectl.mutate import secret_from_sources

    what = args.what
    if what[:1] in (["deployment"], ["deploy"]):
        return commands.create_deployment(session, args, out, err)
    if what[:1] in (["job"], ["cronjob"], ["cj"]):
        return commands.create_batch(session, args, out, err)
    if what[:1] == ["namespace"] or what[:1] == ["ns"]:
        if len(what) != 2:
            raise CliError("exactly one NAME is required, got %d" % (len(what) - 1))
        obj = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": what[1]}}
    elif what[:2] == ["secret", "generic"]:
        if len(what) != 3:
            raise CliError("exactly one NAME is required, got %d" % (len(what) - 2))
        obj = secret_from_sources(what[2], session.namespace, args.from_literal, args.from_file, args.type)
    else:
        raise CliError("must specify one of -f, 'namespace NAME', 'secret generic NAME', 'deployment NAME', "
                       "'job NAME' or 'cronjob NAME'")
    if args.output:
        from pkube.kubectl.printers import parse_output, print_objects

        out.write(print_objects([obj], parse_output(args.output), True))
        return 0
    return _report(lambda: create_manifest(session, Manifest("<command line>", 1, obj), args.dry_run), out, err)


@command("delete")
def cmd_delete(session, args, out, err) -> int:
    from pkube.kubectl.mutate import delete_targets, target_of_object, targets_by_selector, targets_from_words

    if args.filename:
        from pkube.kubectl.manifests import read_manifests

        targets = [target_of_object(session, m.obj) for m in read_manifests(args.filename, args.recursive)]
    elif args.selector or args.all:
        if len(args.targets) != 1:
            raise CliError("resource(s) were provided, but no name was specified" if not args.targets
                           else "name cannot be provided when a selector is specified")
        targets = targets_by_selector(session, args.targets[0], args.selector, args.all_namespaces)
        if not targets:
            err.write("No resources found\n")
            return 0
    else:
        targets = targets_from_words(session, args.targets)
    grace = 1 if args.now else args.grace_period
    if args.force:
        if grace not in (-1, 0):
            raise CliError("--force and --grace-period greater than 0 cannot be specified together")
        err.write("Warning: Immediate deletion does not wait for confirmation that the running resource has been "
                  "terminated. The resource may continue to run on the cluster indefinitely.\n")
        grace = 0
    elif grace == 0:
        raise CliError("--grace-period=0 must have --force specified")
    return delete_targets(session, targets, grace_period=grace, wait=args.wait == "true",
                          ignore_not_found=args.ignore_not_found, timeout=args.timeout, cascade=args.cascade, out=out,
                          force=args.force)


def _split_targets_and_pairs(session, words: list[str]):
    from pkube.kubectl.mutate import targets_from_words

    pairs = [w for w in words if "=" in w or (w.endswith("-") and "/" not in w and w != words[0])]
    rest = [w for w in words if w not in pairs]
    return targets_from_words(session, rest), pairs


@command("label")
def cmd_label(session, args, out, err) -> int:
    return _set_map(session, args, out, err, "labels", "label")


@command("annotate")
def cmd_annotate(session, args, out, err) -> int:
    return _set_map(session, args, out, err, "annotations", "annotation")


def _set_map(session, args, out, err, field: str, what: str) -> int:
    from pkube.kubectl.mutate import parse_key_values, set_metadata_map

    targets, pairs = _split_targets_and_pairs(session, args.words)
    if not pairs:
        raise CliError(f"at least one {what} update is required")
    settings, removals = parse_key_values(pairs, what)
    failures = sum(_report(lambda t=t: set_metadata_map(session, t, field, settings, removals, args.overwrite), out, err)
                   for t in targets)
    return 1 if failures else 0


@command("patch")
def cmd_patch(session, args, out, err) -> int:
    from pkube.kubectl.mutate import patch_target, targets_from_words

    failures = sum(_report(lambda t=t: patch_target(session, t, args.patch, args.type), out, err)
                   for t in targets_from_words(session, args.targets))
    return 1 if failures else 0


@command("scale")
def cmd_scale(session, args, out, err) -> int:
    from pkube.kubectl.mutate import scale_target, targets_from_words

    failures = sum(_report(lambda t=t: scale_target(session, t, args.replicas, args.current_replicas), out, err)
                   for t in targets_from_words(session, args.targets))
    return 1 if failures else 0


@command("edit")
def cmd_edit(session, args, out, err) -> int:
    from pkube.kubectl.mutate import edit_target, targets_from_words

    failures = sum(_report(lambda t=t: edit_target(session, t), out, err)
                   for t in targets_from_words(session, args.targets))
    return 1 if failures else 0


@command("describe")
def cmd_describe(session, args, out, err) -> int:
    from pkube.client.resources import EVENTS

    from pkube.kubectl.describe import describe, event_selector
    from pkube.kubectl.mutate import targets_by_selector, targets_from_words

    if len(args.targets) == 1 and "/" not in args.targets[0]:
        targets = targets_by_selector(session, args.targets[0], args.selector, False)
    else:
        targets = targets_from_words(session, args.targets)
    pages = []
    for target in targets:
        obj = session.get_json(target.path)
        obj.setdefault("kind", target.resource.kind)
        events = session.client.list(EVENTS, target.namespace, field_selector=event_selector(obj)).get("items") or []
        pages.append(describe(obj, events, endpoints=_service_endpoints(session, target, obj)))
    out.write("\n\n".join(pages))
    return 0


def _service_endpoints(session, target, obj: dict) -> Optional[dict]:
    """A Service's Endpoints object (None for other kinds, or when it has none yet)."""
    from pkube.client.errors import NotFound
    from pkube.client.resources import ENDPOINTS

    if obj.get("kind") != "Service":
        return None
    try:
        return session.client.get(ENDPOINTS, target.name, target.namespace)
    except NotFound:
        return None


@command("logs")
def cmd_logs(session, args, out, err) -> int:
    from pkube.kubectl.mutate import Target
    from pkube.kubectl.streams import log_params, stream_logs

    target = _pod_target(session, args.pod)
    container = args.container or _default_container(session, target, err)
    stream_logs(session, target.path + "/log",
                log_params(container, args.follow, args.previous, args.tail, args.timestamps), out)
    return 0


DEFAULT_CONTAINER_ANNOTATION = "kubectl.kubernetes.io/default-container"


def _default_container(session, target, err) -> Optional[str]:
    """kubectl's choice when -c is not given: the annotated default, else the first container
    (saying so on stderr when there are several). Raises NotFound for a missing pod."""
    pod = session.get_json(target.path)
    names = [c.get("name") for c in (pod.get("spec") or {}).get("containers") or []]
    chosen = ((pod.get("metadata") or {}).get("annotations") or {}).get(DEFAULT_CONTAINER_ANNOTATION)
    if chosen not in names:
        chosen = names[0] if names else None
    if len(names) > 1 and chosen:
        err.write(f'Defaulted container "{chosen}" out of: {", ".join(names)}\n')
    return chosen


def _pod_target(session, word: str):
    from pkube.kubectl.mutate import Target

    kind, _, name = word.rpartition("/")
    res = session.resolve(kind or "pods")
    if res.kind != "Pod":
        raise CliError(f"cannot attach to {res.qualified}: only pods are supported")
    return Target(res, name, session.object_namespace(res))


@command("exec")
def cmd_exec(session, args, out, err) -> int:
    from pkube.kubectl.streams import exec_query, run_exec

    cmd = args.after_dashes if args.after_dashes is not None else args.cmd
    if not cmd:
        raise CliError("you must specify at least one command for the container")
    target = _pod_target(session, args.pod)
    container = args.container or _default_container(session, target, err)
    return run_exec(session, target.path + "/exec", exec_query(cmd, container, args.stdin, args.tty),
                    args.stdin, out, err, tty=args.tty)


@command("rollout")
def cmd_rollout(session, args, out, err) -> int:
    from pkube.kubectl import rollout
    from pkube.kubectl.mutate import send_patch, targets_from_words

    for target in targets_from_words(session, args.targets):
        kind = target.resource.kind
        if kind not in rollout.STATUS_VIEWERS or (kind != "Deployment" and args.action in ("pause", "resume")):
            raise CliError(f"no {args.action} support for {target.resource.qualified}")
        if args.action == "status":
            rollout.wait_rollout(lambda: session.get_json(target.path), out, args.timeout, args.watch == "true",
                                 viewer=rollout.STATUS_VIEWERS[kind])
        elif args.action in ("pause", "resume"):
            pausing = args.action == "pause"
            current = session.get_json(target.path)
            if bool((current.get("spec") or {}).get("paused")) == pausing:
                raise CliError(f"{target.label} is already {'paused' if pausing else 'resumed'}")
            send_patch(session, target, {"spec": {"paused": pausing}}, "merge")
            out.write(f"{target.label} {'paused' if pausing else 'resumed'}\n")
        elif args.action == "restart":
            send_patch(session, target, rollout.restart_patch(), "strategic")
            out.write(f"{target.label} restarted\n")
        elif kind != "Deployment":
            _revision_history(session, target, args, out)
        else:
            _rollout_history(session, target, args, out)
    return 0


def _revision_history(session, target, args, out) -> None:
    """history / undo of a DaemonSet or StatefulSet, from the ControllerRevisions it owns."""
    from pkube.client.resources import CONTROLLERREVISIONS

    from pkube.kubectl import rollout
    from pkube.kubectl.mutate import send_patch

    owner = session.get_json(target.path)
    listed = session.client.list_all(CONTROLLERREVISIONS, target.namespace).get("items") or []
    revisions = rollout.owned_revisions(owner, listed)
    if args.action == "history":
        out.write(rollout.revisions_history_text(target.label, revisions))
        return
    patch, number = rollout.revision_undo_patch(revisions, args.to_revision or None)
    if rollout.template_matches(owner, patch):
        out.write(f"{target.label} skipped rollback (current template already matches revision {number})\n")
        return
    send_patch(session, target, patch, "strategic")
    out.write(f"{target.label} rolled back\n")


def _rollout_history(session, target, args, out) -> None:
    from pkube.client.resources import REPLICASETS

    from pkube.kubectl import rollout
    from pkube.kubectl.mutate import send_patch

    deployment = session.get_json(target.path)
    listed = session.client.list_all(REPLICASETS, target.namespace).get("items") or []
    owned = rollout.owned_replicasets(deployment, listed)
    if args.action == "history":
        out.write(rollout.history_text(target.label, owned))
        return
    send_patch(session, target, rollout.undo_patch(deployment, owned, args.to_revision or None), "strategic")
    out.write(f"{target.label} rolled back\n")


@command("explain")
def cmd_explain(session, args, out, err) -> int:
    from pkube.kubectl.info import explain_text, fetch_openapi_v3

    kind, *path = args.path.split(".")
    res = session.resolve(kind)
    if args.api_version and args.api_version != res.api_version:
        raise CliError(f"couldn't find resource for \"{args.api_version}, Kind={res.kind}\"")
    out.write(explain_text(res, fetch_openapi_v3(session, res), path, args.recursive))
    return 0


@command("version")
def cmd_version(session, args, out, err) -> int:
    from pkube.kubectl import CLIENT_VERSION

    server = None if args.client else session.get_json("/version")
    if args.output in ("json", "yaml"):
        from pkube.kubectl.printers import dump_json, dump_yaml

        doc = {"clientVersion": {"gitVersion": CLIENT_VERSION}}
        if server is not None:
            doc["serverVersion"] = server
        out.write(dump_json(doc) if args.output == "json" else dump_yaml(doc))
        return 0
    lines = [f"Client Version: {CLIENT_VERSION}"]
    if server is not None:
        lines.append(f"Server Version: {server.get('gitVersion', 'unknown')}")
    out.write("\n".join(lines) + "\n")
    return 0


@command("api-resources")
def cmd_api_resources(session, args, out, err) -> int:
    from pkube.kubectl.info import api_resources_text

    namespaced = None if args.namespaced is None else args.namespaced == "true"
    if args.output == "name":
        out.write("".join(f"{r.plural}{'.' + r.group if r.group else ''}\n" for r in session.resources))
        return 0
    out.write(api_resources_text(session.resources, args.output == "wide", namespaced))
    return 0


@command("cluster-info")
def cmd_cluster_info(session, args, out, err) -> int:
    from pkube.kubectl.info import cluster_info_text

    session.get_json("/version")
    out.write(cluster_info_text(session.config.server))
    return 0


# ---------------------------------------------------------------- the edge

def api_error_line(error) -> str:
    """kubectl's wording of a server error: ``Error from server (NotFound): pods "x" not found``."""
    from pkube.client.errors import Unavailable

    if isinstance(error, Unavailable):
        return f"The connection to the server was refused or failed - did you specify the right host or port? ({error.message})"
    return f"Error from server ({error.reason or 'Unknown'}): {error.message}"


def main(argv: Optional[list[str]] = None, out=None, err=None) -> int:
    """Run pkubectl; returns the exit code. Every failure becomes one readable line on stderr."""
    out, err = out or sys.stdout, err or sys.stderr
    _skip_unused_imports()
    session = None
    try:
        argv = sys.argv[1:] if argv is None else list(argv)
        args = parse_command_line(argv)
        if not args.command:
            out.write(build_parser().format_help())
            return 0
        session = None if _client_only(args) else _session(args)
        return COMMANDS[args.command](session, args, out, err)
    except UsageError as error:
        err.write(f"error: {error}\n{_help_hint(argv)}\n")
        return error.exit_code
    except CliError as error:
        err.write(f"error: {error}\n")
        return error.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    except Exception as error:  # noqa: BLE001 - the one edge where anything becomes a line
        return _unexpected(error, err)
    finally:
        if session is not None:
            session.close()


def parse_command_line(argv: list[str]) -> argparse.Namespace:
    """The parsed flags; ``args.after_dashes`` holds the words after ``--`` for the commands
    that give it a meaning (exec, run, create deployment), else None. Raises CliError."""
    flags, after_dashes = split_at_dashes(argv)
    args = _parse_interspersed(flags)
    if args.command not in ("exec", *commands.DASH_COMMANDS) and after_dashes is not None:
        args = _parse_interspersed(argv)
        after_dashes = None
    args.after_dashes = after_dashes
    return args


LIST_POSITIONALS = ("words", "targets", "resources", "what", "nodes", "ports", "cmd")


def _parse_interspersed(argv: list[str]) -> argparse.Namespace:
    """Like parse_args, but words after a flag still join the command's list of positionals
    (``set env deploy/web -c app K=V``), as pflag allows; unknown flags are refused."""
    parser = build_parser()
    args, extras = parser.parse_known_args(argv)
    if not extras:
        return args
    rest = next((getattr(args, name) for name in LIST_POSITIONALS if isinstance(getattr(args, name, None), list)),
                None)
    if rest is None or any(w.startswith("-") and w != "-" for w in extras):
        parser.error("unrecognized arguments: " + " ".join(extras))
    rest.extend(extras)
    return args


def _help_hint(argv: list[str]) -> str:
    """``See 'pkubectl get --help' for usage.`` for the command named in ``argv``."""
    known = [w for w in argv if w in COMMANDS]
    return f"See 'pkubectl {known[0]} --help' for usage." if known else "See 'pkubectl --help' for usage."


def split_at_dashes(argv: list[str]) -> tuple[list[str], Optional[list[str]]]:
    """(flags and arguments, the words after the first ``--``, or None): ``exec POD -c C -- CMD...``."""
    if "--" in argv:
        index = argv.index("--")
        return argv[:index], argv[index + 1:]
    return argv, None


def _skip_unused_imports() -> None:
    """Make the optional imports above fail fast (a None entry in sys.modules), which httpx
    handles by going without its CLI. Only the pkubectl process is affected."""
    for name in UNUSED_OPTIONAL_IMPORTS:
        sys.modules.setdefault(name, None)


def _client_only(args) -> bool:
    """Commands that never reach the server skip building a session (and its imports)."""
    return args.command == "version" and args.client


def _unexpected(error: Exception, err) -> int:
    from pkube.client.errors import ApiError

    if isinstance(error, ApiError):
        err.write(api_error_line(error) + "\n")
        return 1
    err.write(f"error: {type(error).__name__}: {error}\n")
    return 1


COMMANDS.update(commands.COMMANDS)


if __name__ == "__main__":
    sys.exit(main())
