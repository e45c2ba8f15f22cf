"""The verbs used on running workloads: run, expose, set, wait, cordon, uncordon, taint,
drain, top, attach, cp, port-forward, autoscale; plus ``create deployment``.

``add_parsers`` adds their flags to pkubectl's parser; ``COMMANDS`` maps each verb to its
function ``(session, args, out, err) -> exit code``. The work is done by kubectl.workloads,
waiting, nodes, drain, top, streams, cp and portforward, imported when a verb runs.
"""

from __future__ import annotations

from typing import Callable, Optional

from pkube.kubectl.errors import CliError

COMMANDS: dict[str, Callable] = {}
DASH_COMMANDS = ("run", "create")   # where the words after "--" are the container's command
DRY_RUN = {"default": "none", "const": "client", "nargs": "?", "choices": ("none", "client", "server")}


def command(name: str):
    def register(func):
        COMMANDS[name] = func
        return func
    return register


# ---------------------------------------------------------------- flags

def add_parsers(sub, common) -> None:
    """Add the verbs of this module to ``sub`` (pkubectl's subparsers)."""
    _add_run_expose_set(sub, common)
    _add_wait_and_nodes(sub, common)
    _add_top(sub, common)
    _add_streams(sub, common)
    _add_autoscale(sub, common)


def add_create_deployment_flags(parser) -> None:
    """The flags ``create deployment`` adds to ``create``."""
    parser.add_argument("--image", action="append", default=[])
    parser.add_argument("-r", "--replicas", type=int, default=1)
    parser.add_argument("--port", type=int, default=-1)


def _add_run_expose_set(sub, common) -> None:
    p = sub.add_parser("run", parents=[common])
    p.add_argument("name")
    p.add_argument("words", nargs="*")
    p.add_argument("--image", required=True)
    p.add_argument("--port", type=int, default=-1)
    p.add_argument("--env", action="append", default=[])
    p.add_argument("-l", "--labels")
    p.add_argument("--annotations", action="append", default=[])
    p.add_argument("--restart", default="Always")
    p.add_argument("--command", dest="use_command", action="store_true")
    p.add_argument("--image-pull-policy")
    p.add_argument("-i", "--stdin", action="store_true")
    p.add_argument("-t", "--tty", action="store_true")
    p.add_argument("--attach", action="store_true")
    p.add_argument("--rm", action="store_true")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("--pod-running-timeout", default="1m")
    p.add_argument("--dry-run", **DRY_RUN)
    p.add_argument("-o", "--output")
    p = sub.add_parser("expose", parents=[common])
    p.add_argument("targets", nargs="+")
    p.add_argument("--port", type=int)
    p.add_argument("--target-port")
    p.add_argument("--type")
    p.add_argument("--name")
    p.add_argument("--protocol")
    p.add_argument("--selector")
    p.add_argument("-l", "--labels")
    p.add_argument("--dry-run", **DRY_RUN)
    p.add_argument("-o", "--output")
    p = sub.add_parser("set", parents=[common])
    what = p.add_subparsers(dest="what", metavar="SUBCOMMAND", parser_class=type(p))
    what.required = True
    for name in ("image", "env"):
        q = what.add_parser(name, parents=[common])
        q.add_argument("words", nargs="+")
        q.add_argument("-l", "--selector")
        q.add_argument("--all", action="store_true")
        q.add_argument("--dry-run", **DRY_RUN)
        if name == "env":
            q.add_argument("-c", "--containers")
            q.add_argument("--list", action="store_true")


def _add_wait_and_nodes(sub, common) -> None:
    p = sub.add_parser("wait", parents=[common])
    p.add_argument("targets", nargs="*")
    p.add_argument("--for", dest="for_", default="")
    p.add_argument("--timeout", default="30s")
    p.add_argument("-l", "--selector")
    p.add_argument("--all", action="store_true")
    p.add_argument("-A", "--all-namespaces", action="store_true")
    for verb in ("cordon", "uncordon"):
        p = sub.add_parser(verb, parents=[common])
        p.add_argument("nodes", nargs="*")
        p.add_argument("-l", "--selector")
        p.add_argument("--dry-run", **DRY_RUN)
    p = sub.add_parser("taint", parents=[common])
    p.add_argument("words", nargs="*")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("-l", "--selector")
    p.add_argument("--all", action="store_true")
    p = sub.add_parser("drain", parents=[common])
    p.add_argument("nodes", nargs="*")
    p.add_argument("--ignore-daemonsets", action="store_true")
    p.add_argument("--delete-emptydir-data", "--delete-local-data", action="store_true")
    p.add_argument("--force", action="store_true")
    p.add_argument("--grace-period", type=int, default=-1)
    p.add_argument("--timeout", default="0s")
    p.add_argument("--pod-selector")
    p.add_argument("-l", "--selector")
    p.add_argument("--disable-eviction", action="store_true")
    p.add_argument("--dry-run", **DRY_RUN)


def _add_autoscale(sub, common) -> None:
    p = sub.add_parser("autoscale", parents=[common])
    p.add_argument("targets", nargs="+")
    p.add_argument("--min", type=int, default=-1)
    p.add_argument("--max", type=int, default=-1)
    p.add_argument("--cpu-percent", type=int, default=-1)
    p.add_argument("--name", default="")


def _add_top(sub, common) -> None:
    p = sub.add_parser("top", parents=[common])
    kinds = p.add_subparsers(dest="what", metavar="SUBCOMMAND", parser_class=type(p))
    kinds.required = True
    for name, aliases in (("pod", ["pods", "po"]), ("node", ["nodes", "no"])):
        q = kinds.add_parser(name, aliases=aliases, parents=[common])
        q.add_argument("name", nargs="?")
        q.add_argument("-l", "--selector")
        q.add_argument("--no-headers", action="store_true")
        q.add_argument("--sort-by")
        if name == "pod":
            q.add_argument("-A", "--all-namespaces", action="store_true")
            q.add_argument("--containers", action="store_true")
        else:
            q.add_argument("--show-capacity", action="store_true")


def _add_streams(sub, common) -> None:
    p = sub.add_parser("attach", parents=[common])
    p.add_argument("pod")
    p.add_argument("-c", "--container")
    p.add_argument("-i", "--stdin", action="store_true")
    p.add_argument("-t", "--tty", action="store_true")
    p.add_argument("-q", "--quiet", action="store_true")
    p = sub.add_parser("cp", parents=[common])
    p.add_argument("source")
    p.add_argument("destination")
    p.add_argument("-c", "--container")
    p.add_argument("--no-preserve", action="store_true")
    p = sub.add_parser("port-forward", parents=[common])
    p.add_argument("target")
    p.add_argument("ports", nargs="*")
    p.add_argument("--address", default="localhost")


# ---------------------------------------------------------------- helpers

def _report(action: Callable[[], Optional[str]], out, err) -> int:
    """Run one per-object action; print its line (if any), or the server's error. 1 on error."""
    from pkube.client.errors import ApiError

    from pkube.kubectl.cli import api_error_line

    try:
        line = action()
    except ApiError as error:
        err.write(api_error_line(error) + "\n")
        return 1
    if line:
        out.write(line + "\n")
        out.flush()
    return 0


def _print_or_create(session, obj: dict, args, out, err, already: Optional[str] = None) -> int:
    """``-o FORMAT``: print the object (as created, or as built with --dry-run=client); else
    create it and print ``kind/name created``. ``already`` rewords AlreadyExists."""
    from pkube.client.errors import AlreadyExists

    from pkube.kubectl.apply import create_manifest
    from pkube.kubectl.manifests import Manifest

    if args.output:
        from pkube.kubectl.printers import parse_output, print_objects

        fmt = parse_output(args.output)
        if args.dry_run != "client":
            res = session.for_object(obj)
            obj = session.request("POST", _collection(session, res), body=_json(obj),
                                  content_type="application/json",
                                  params={"dryRun": "All"} if args.dry_run == "server" else None).json()
        out.write(print_objects([obj], fmt, True))
        return 0

    def create() -> str:
        try:
            return create_manifest(session, Manifest("<command line>", 1, obj), args.dry_run)
        except AlreadyExists as error:
            if already is None:
                raise
            raise CliError(f"{already}: {error.message}") from None
    return _report(create, out, err)


def _collection(session, res) -> str:
    from pkube.client.resources import resource_path

    return resource_path(res, session.object_namespace(res))


def _json(obj: dict) -> bytes:
    import json

    return json.dumps(obj).encode()


def _targets(session, words: list[str], selector: Optional[str], every: bool, all_namespaces: bool = False):
    """``TYPE NAME...``, ``TYPE/NAME...``, or ``TYPE -l SEL`` / ``TYPE --all``."""
    from pkube.kubectl.mutate import targets_by_selector, targets_from_words

    if selector or every:
        if len(words) != 1 or "/" in words[0]:
            raise CliError("resource(s) were provided, but no name was specified" if not words
                           else "name cannot be provided when a selector is specified")
        return targets_by_selector(session, words[0], selector, all_namespaces)
    return targets_from_words(session, words)


def _split_words(words: list[str], is_change: Callable[[str], bool]):
    """(targets, change words) of ``set image|env`` and ``taint``: the changes follow the targets."""
    index = next((i for i, w in enumerate(words) if i > 0 and is_change(w)), len(words))
    return words[:index], words[index:]


# ---------------------------------------------------------------- run / create deployment / expose

@command("run")
def cmd_run(session, args, out, err) -> int:
    from pkube.kubectl.runattach import check_flags, run_attached
    from pkube.kubectl.waiting import parse_duration
    from pkube.kubectl.workloads import pod_for_run

    check_flags(args.stdin, args.tty, args.attach, args.rm, args.dry_run)
    words = args.words + (args.after_dashes or [])
    pod = pod_for_run(args.name, args.image, port=args.port, env=args.env, labels=args.labels,
                      annotations=args.annotations, restart=args.restart, command=args.use_command, args=words,
                      image_pull_policy=args.image_pull_policy, stdin=args.stdin, tty=args.tty)
    if not (args.stdin or args.attach):
        return _print_or_create(session, pod, args, out, err)
    from pkube.kubectl.apply import create_manifest
    from pkube.kubectl.manifests import Manifest
    from pkube.kubectl.mutate import target_of_object

    create_manifest(session, Manifest("<command line>", 1, pod))
    return run_attached(session, target_of_object(session, pod), args.name, args, out, err,
                        parse_duration(args.pod_running_timeout))


def create_deployment(session, args, out, err) -> int:
    """``create deployment NAME --image=IMG... [--replicas N] [--port P] [-- COMMAND...]``."""
    from pkube.kubectl.workloads import deployment_for_create

    names = args.what[1:]
    if len(names) != 1:
        raise CliError("exactly one NAME is required, got %d" % len(names))
    deployment = deployment_for_create(names[0], args.image, replicas=args.replicas, port=args.port,
                                       command=args.after_dashes or ())
    return _print_or_create(session, deployment, args, out, err, already="failed to create deployment")


def create_batch(session, args, out, err) -> int:
    """``create job NAME (--image=IMG | --from=cronjob/X) [-- COMMAND...]`` and
    ``create cronjob NAME --image=IMG --schedule=S [--restart=R] [-- COMMAND...]``."""
    from pkube.kubectl import batch

    names = args.what[1:]
    if len(names) != 1:
        raise CliError("exactly one NAME is required, got %d" % len(names))
    image = args.image[0] if args.image else None
    command = args.after_dashes or ()
    if args.what[0] != "job":
        obj = batch.cron_job_for_create(names[0], image, args.schedule, args.restart, command)
    elif args.from_object:
        res = session.resolve("cronjobs")
        path = f"{_collection(session, res)}/{batch.parse_from(args.from_object)}"
        obj = batch.job_from_cron_job(names[0], session.get_json(path))
    else:
        obj = batch.job_for_create(names[0], image, command)
    return _print_or_create(session, obj, args, out, err)


@command("expose")
def cmd_expose(session, args, out, err) -> int:
    from pkube.kubectl.workloads import service_for_expose

    failures = 0
    for target in _targets(session, args.targets, None, False):
        obj = session.get_json(target.path)
        obj.setdefault("kind", target.resource.kind)
        service = service_for_expose(obj, name=args.name, port=args.port, target_port=args.target_port,
                                     service_type=args.type, protocol=args.protocol, selector=args.selector,
                                     labels=args.labels)
        if args.output:
            failures += _print_or_create(session, service, args, out, err)
            continue
        failures += _report(lambda: _create_exposed(session, service, args.dry_run), out, err)
    return 1 if failures else 0


def _create_exposed(session, service: dict, dry_run: str) -> str:
    from pkube.kubectl.apply import create_manifest
    from pkube.kubectl.manifests import Manifest

    return create_manifest(session, Manifest("<command line>", 1, service), dry_run).replace(" created", " exposed")


# ---------------------------------------------------------------- set image / set env

@command("set")
def cmd_set(session, args, out, err) -> int:
    from pkube.kubectl import workloads

    if args.what == "image":
        words, changes = _split_words(args.words, lambda w: "=" in w)
        if not changes:
            raise CliError("at least one image update is required")
        images = workloads.parse_image_pairs(changes)
        change, verb = (lambda obj: workloads.set_images(obj, images)), "image updated"
    else:
        words, changes = _split_words(args.words, lambda w: "=" in w or (w.endswith("-") and "/" not in w))
        if args.list:
            return _list_env(session, words, args, out)
        if not changes:
            raise CliError("at least one environment variable must be provided")
        settings, removals = workloads.parse_env_changes(changes)
        warn = lambda line: (err.write(line + "\n"), err.flush())   # noqa: E731
        change = lambda obj: workloads.set_env(obj, settings, removals, args.containers, warn)   # noqa: E731
        verb = "env updated"
    failures = 0
    for target in _targets(session, words, args.selector, args.all):
        failures += _report(lambda t=target: _set_one(session, t, change, verb, args.dry_run), out, err)
    return 1 if failures else 0


def _set_one(session, target, change, verb: str, dry_run: str) -> Optional[str]:
    """kubectl's line for one object, or None when nothing changed (kubectl prints nothing)."""
    from pkube.kubectl.workloads import pod_spec_patch, update_pod_spec

    if dry_run == "client":
        current = session.get_json(target.path)
        current.setdefault("kind", target.resource.kind)
        changed = pod_spec_patch(current, change(current)) is not None
        return f"{target.label} {verb} (dry run)" if changed else None
    return f"{target.label} {verb}" if update_pod_spec(session, target, change) else None


def _list_env(session, words: list[str], args, out) -> int:
    from pkube.kubectl.workloads import env_listing

    for target in _targets(session, words, args.selector, args.all):
        obj = session.get_json(target.path)
        obj.setdefault("kind", target.resource.kind)
        out.write(env_listing(obj, args.containers))
    return 0


# ---------------------------------------------------------------- wait

@command("wait")
def cmd_wait(session, args, out, err) -> int:
    from pkube.kubectl.waiting import parse_duration, parse_for, wait_targets

    wanted = parse_for(args.for_)
    timeout = parse_duration(args.timeout)
    if not args.targets:
        raise CliError("you must specify the type of resource to wait for and a name, -l or --all")
    targets = _targets(session, args.targets, args.selector, args.all, args.all_namespaces)
    if not targets and wanted.kind != "delete":
        raise CliError("no matching resources found")
    failures = wait_targets(session, targets, wanted, timeout if timeout > 0 else 0.001, out,
                            listed=bool(args.selector or args.all))
    if len(failures) == 1 and not failures[0].startswith("Error from server"):
        raise CliError(failures[0])
    for line in failures:   # several: one per line, without "error: " (kubectl's aggregate)
        err.write(line + "\n")
    return 1 if failures else 0


# ---------------------------------------------------------------- nodes

def _node_targets(session, names: list[str], selector: Optional[str], verb: str):
    from pkube.kubectl.mutate import Target, targets_by_selector

    nodes = session.resolve("nodes")
    if selector:
        return targets_by_selector(session, "nodes", selector, False)
    if not names:
        raise CliError(f"USAGE: {verb} NODE [flags]\nSee 'pkubectl {verb} -h' for help and examples")
    return [Target(nodes, name, None) for name in names]


@command("cordon")
def cmd_cordon(session, args, out, err) -> int:
    return _set_cordon(session, args, out, err, True)


@command("uncordon")
def cmd_uncordon(session, args, out, err) -> int:
    return _set_cordon(session, args, out, err, False)


def _set_cordon(session, args, out, err, cordon: bool) -> int:
    from pkube.kubectl.nodes import set_unschedulable

    targets = _node_targets(session, args.nodes, args.selector, args.command)
    failures = sum(_report(lambda t=t: set_unschedulable(session, t, cordon, args.dry_run), out, err) for t in targets)
    return 1 if failures else 0


@command("taint")
def cmd_taint(session, args, out, err) -> int:
    from pkube.kubectl.nodes import parse_taint_specs, taint_node

    words, specs = _split_words(args.words, lambda w: ":" in w or "=" in w or w.endswith("-"))
    if args.selector or args.all:
        words, specs = args.words[:1], args.words[1:]
    if not words or not specs:
        raise CliError("at least one taint update is required")
    adds, removals = parse_taint_specs(specs)
    targets = _targets(session, words, args.selector, args.all)
    if any(t.resource.kind != "Node" for t in targets):
        raise CliError("taints can only be set on nodes")
    failures = sum(_report(lambda t=t: taint_node(session, t, adds, removals, args.overwrite), out, err)
                   for t in targets)
    return 1 if failures else 0


@command("drain")
def cmd_drain(session, args, out, err) -> int:
    from pkube.kubectl.drain import Drainer, DrainOptions
    from pkube.kubectl.waiting import parse_duration

    options = DrainOptions(ignore_daemonsets=args.ignore_daemonsets, delete_emptydir_data=args.delete_emptydir_data,
                           force=args.force, grace_period=args.grace_period, timeout=parse_duration(args.timeout),
                           pod_selector=args.pod_selector, dry_run=args.dry_run)
    for target in _node_targets(session, args.nodes, args.selector, "drain"):
        Drainer(session, target.name, options, out, err, use_delete=args.disable_eviction).run()
    return 0


@command("autoscale")
def cmd_autoscale(session, args, out, err) -> int:
    from pkube.kubectl.autoscale import autoscale, check_bounds
    from pkube.kubectl.mutate import targets_from_words

    check_bounds(args.min, args.max)
    failures = sum(_report(lambda t=t: autoscale(session, t, args.min, args.max, args.cpu_percent, args.name), out, err)
                   for t in targets_from_words(session, args.targets))
    return 1 if failures else 0


# ---------------------------------------------------------------- top

@command("top")
def cmd_top(session, args, out, err) -> int:
    from pkube.kubectl.top import top_nodes, top_pods

    if args.what in ("pod", "pods", "po"):
        return top_pods(session, args, out, err)
    return top_nodes(session, args, out, err)


# ---------------------------------------------------------------- attach / cp / port-forward

@command("attach")
def cmd_attach(session, args, out, err) -> int:
    from pkube.kubectl.cli import _default_container, _pod_target
    from pkube.kubectl.streams import exec_query, run_exec

    target = _pod_target(session, args.pod)
    container = args.container or _default_container(session, target, err)
    query = exec_query([], container, args.stdin, args.tty)
    if not args.quiet:   # kubectl 1.32 says it whatever the flags
        err.write("If you don't see a command prompt, try pressing enter.\n")
        err.flush()
    return run_exec(session, target.path + "/attach", query, args.stdin, out, err, tty=args.tty)


@command("cp")
def cmd_cp(session, args, out, err) -> int:
    from pathlib import Path

    from pkube.kubectl.cli import _default_container
    from pkube.kubectl.cp import copy_from_pod, copy_to_pod, parse_copy_spec
    from pkube.kubectl.mutate import Target

    source, destination = parse_copy_spec(args.source), parse_copy_spec(args.destination)
    if (source.pod is None) == (destination.pod is None):
        raise CliError("one of src or dest must be a local file specification" if source.pod
                       else "one of src or dest must be a remote file specification")
    remote = source if source.pod else destination
    pods = session.resolve("pods")
    target = Target(pods, remote.pod, remote.namespace or session.namespace)
    container = args.container or _default_container(session, target, err)
    if source.pod:
        return copy_from_pod(session, target.path, container, source.path, Path(destination.path), err)
    return copy_to_pod(session, target.path, container, Path(source.path), destination.path, err,
                       preserve=not args.no_preserve)


@command("port-forward")
def cmd_port_forward(session, args, out, err) -> int:
    from pkube.kubectl.mutate import targets_from_words
    from pkube.kubectl.portforward import (parse_port_specs, pod_for_forward, port_forward, resolve_address,
                                     service_target_ports)

    mappings = parse_port_specs(args.ports)
    word = args.target if "/" in args.target else f"pods/{args.target}"
    target = targets_from_words(session, [word])[0]
    pod_target, service = pod_for_forward(session, target)
    if service is not None:
        mappings = service_target_ports(service, session.get_json(pod_target.path), mappings)
    return port_forward(session, pod_target, mappings, resolve_address(args.address), out, err)
