"""``create job`` and ``create cronjob``: the objects kubectl's create subcommands build.

- ``create job NAME --image=I [-- COMMAND...]``: one container named NAME, restartPolicy Never;
- ``create job NAME --from=cronjob/X``: the CronJob's jobTemplate, annotated
  ``cronjob.kubernetes.io/instantiate: manual`` and owned by the CronJob;
- ``create cronjob NAME --image=I --schedule=S [--restart=OnFailure] [-- COMMAND...]``.
"""

from __future__ import annotations

import copy
from typing import Iterable, Optional

from pkube.kubectl.errors import CliError

INSTANTIATE = "cronjob.kubernetes.io/instantiate"
CRONJOB_RESTART_POLICIES = ("OnFailure", "Never")


def add_create_job_flags(parser) -> None:
    """The flags ``create job`` / ``create cronjob`` add to ``create`` (``--image`` is shared)."""
    parser.add_argument("--from", dest="from_object")
    parser.add_argument("--schedule")
    parser.add_argument("--restart")


def _container(name: str, image: Optional[str], command: Iterable[str]) -> dict:
    container: dict = {"name": name, "image": image, "resources": {}}
    if command:
        container["command"] = list(command)
    return container


def job_for_create(name: str, image: Optional[str], command: Iterable[str] = ()) -> dict:
    """The Job of ``create job NAME --image=IMAGE [-- COMMAND...]``."""
    if not image:
        raise CliError("either --image or --from must be specified")
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
            "spec": {"template": {"metadata": {}, "spec": {
                "containers": [_container(name, image, command)], "restartPolicy": "Never"}}},
            "status": {}}


def job_from_cron_job(name: str, cron_job: dict) -> dict:
    """The Job of ``create job NAME --from=cronjob/X``: X's jobTemplate, owned by X."""
    template = copy.deepcopy((cron_job.get("spec") or {}).get("jobTemplate") or {})
    tmeta = template.get("metadata") or {}
    annotations = {INSTANTIATE: "manual", **(tmeta.get("annotations") or {})}
    meta = cron_job["metadata"]
    owner = {"apiVersion": "batch/v1", "kind": "CronJob", "name": meta["name"], "uid": meta["uid"],
             "controller": True}
    job_meta = {"name": name, "annotations": annotations, "ownerReferences": [owner]}
    if tmeta.get("labels"):
        job_meta["labels"] = dict(tmeta["labels"])
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": job_meta, "spec": template.get("spec") or {},
            "status": {}}


def parse_from(text: str) -> str:
    """The CronJob name of ``--from=cronjob/NAME`` (cronjobs/, cj/ and the group form too)."""
    kind, _, name = text.partition("/")
    if kind.lower() not in ("cronjob", "cronjobs", "cj", "cronjob.batch", "cronjobs.batch") or not name:
        raise CliError(f"from must be an existing cronjob: {text}")
    return name


def cron_job_for_create(name: str, image: Optional[str], schedule: Optional[str], restart: Optional[str],
                        command: Iterable[str] = ()) -> dict:
    """The CronJob of ``create cronjob NAME --image=I --schedule=S [--restart=R] [-- COMMAND...]``."""
    if not image:
        raise CliError('required flag(s) "image" not set')
    if not schedule:
        raise CliError('required flag(s) "schedule" not set')
    restart = restart or "OnFailure"
    if restart not in CRONJOB_RESTART_POLICIES:
        raise CliError(f"restart policy {restart!r} is not supported (OnFailure, Never)")
    pod_spec = {"containers": [_container(name, image, command)], "restartPolicy": restart}
    return {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": name},
            "spec": {"schedule": schedule, "jobTemplate": {"metadata": {"name": name}, "spec": {
                "template": {"metadata": {}, "spec": pod_spec}}}},
            "status": {}}
