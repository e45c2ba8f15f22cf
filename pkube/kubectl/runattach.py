"""``pkubectl run -i [-t] [--rm] NAME --image=...``: after creating the pod, wait (through a
watch) until it runs, attach to its container, and with ``--rm`` delete it afterwards, as
kubectl run does. A pod that already finished gets its logs printed instead of an attach."""

from __future__ import annotations

import time

from pkube.kubectl.errors import CliError

RUNNING, FINISHED = ("Running",), ("Succeeded", "Failed")


HELP = "\nSee 'pkubectl run -h' for help and examples"


def check_flags(stdin: bool, tty: bool, attach: bool, remove: bool, dry_run: str) -> None:
    """kubectl's refusals for these flags together."""
    if dry_run != "none" and (stdin or tty or attach):
        raise CliError("--dry-run=[server|client] can't be used with attached containers options "
                       "(--attach, --stdin, or --tty)" + HELP)
    if tty and not stdin:
        raise CliError("-i/--stdin is required for containers with -t/--tty=true" + HELP)
    if remove and not (stdin or attach):
        raise CliError("--rm should only be used for attached containers" + HELP)


def wait_started(session, target, timeout: float) -> dict:
    """The pod once it is Running (or already finished); CliError ``timed out waiting for the
    condition`` after ``timeout`` seconds."""
    from pkube.kubectl.waiting import object_states

    for pod in object_states(session, target.resource, target.namespace, target.name, time.monotonic() + timeout):
        if pod is not None and (pod.get("status") or {}).get("phase") in RUNNING + FINISHED:
            return pod
    raise CliError("timed out waiting for the condition")


def wait_finished(session, target, timeout: float) -> dict:
    """The pod once Succeeded or Failed (a ``--restart=Never`` pod after its session)."""
    from pkube.kubectl.waiting import object_states

    for pod in object_states(session, target.resource, target.namespace, target.name, time.monotonic() + timeout):
        if pod is None:
            raise CliError(f"pod \"{target.name}\" was deleted")
        if (pod.get("status") or {}).get("phase") in FINISHED:
            return pod
    raise CliError("timed out waiting for the condition")


def container_exit_code(pod: dict, container: str) -> int:
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        if status.get("name") == container:
            return int(((status.get("state") or {}).get("terminated") or {}).get("exitCode", 0))
    return 0


def run_attached(session, target, container: str, args, out, err, timeout: float) -> int:
    """Attach to the new pod's container (its logs if it already finished) once it runs, within
    ``timeout`` seconds; the exit code of the session, or of the container for a pod that does
    not restart. Deletes the pod with ``--rm`` whatever happened."""
    try:
        return _session(session, target, container, args, out, err, timeout)
    finally:
        if args.rm:
            _remove(session, target, out)


def _session(session, target, container: str, args, out, err, timeout: float) -> int:
    from pkube.kubectl.streams import exec_query, log_params, run_exec, stream_logs

    pod = wait_started(session, target, timeout)
    if (pod.get("status") or {}).get("phase") in FINISHED:
        stream_logs(session, target.path + "/log", log_params(container, False, False, -1, False), out)
        return container_exit_code(pod, container)
    if not args.quiet:
        err.write("If you don't see a command prompt, try pressing enter.\n")
        err.flush()
    code = run_exec(session, target.path + "/attach", exec_query([], container, args.stdin, args.tty),
                    args.stdin, out, err, tty=args.tty)
    if args.restart == "Never":
        return container_exit_code(wait_finished(session, target, timeout), container)
    if args.stdin and args.tty and not args.rm and not args.quiet:
        out.write(f"Session ended, resume using 'pkubectl attach {target.name} -c {container} -i -t' command "
                  "when the pod is running\n")
    return code


def _remove(session, target, out) -> None:
    """``--rm``: delete the pod (``pod "debug" deleted``) without waiting, as kubectl run does."""
    from pkube.kubectl.mutate import delete_targets

    delete_targets(session, [target], grace_period=None, wait=False, ignore_not_found=True, out=out)
