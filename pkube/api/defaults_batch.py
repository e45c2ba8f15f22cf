"""Defaults of Jobs and CronJobs (batch/v1) and ReplicationControllers (core/v1), as Kubernetes'
SetDefaults_* and the Job registry strategy fill them in.

A Job without ``manualSelector: true`` gets the selector the apiserver generates from its uid
(``batch.kubernetes.io/controller-uid``) and its pod template the labels ``controller-uid``,
``batch.kubernetes.io/controller-uid``, ``job-name`` and ``batch.kubernetes.io/job-name``; a Job
without labels takes its template's. The uid is stamped before defaults run on create.

Registered in ``api.defaults`` (whose ``default_pod_spec`` these use, looked up when called so
that either module may be imported first).
"""

from __future__ import annotations

CONTROLLER_UID_LABELS = ("batch.kubernetes.io/controller-uid", "controller-uid")
JOB_NAME_LABELS = ("batch.kubernetes.io/job-name", "job-name")
SELECTOR_LABEL = "batch.kubernetes.io/controller-uid"


def _default_pod_template(template) -> None:
    from pkube.api.defaults import default_pod_spec  # api.defaults imports this module
    if isinstance(template, dict):
        default_pod_spec(template.setdefault("spec", {}))


def default_job_spec(spec: dict) -> None:
    """SetDefaults_Job on a JobSpec (a Job's, or a CronJob's jobTemplate's)."""
    if spec.get("completions") is None and spec.get("parallelism") is None:
        spec["completions"] = 1
    spec.setdefault("parallelism", 1)
    spec.setdefault("backoffLimit", 6)
    spec.setdefault("completionMode", "NonIndexed")
    spec.setdefault("suspend", False)
    spec.setdefault("podReplacementPolicy", "Failed" if spec.get("podFailurePolicy") else "TerminatingOrFailed")
    _default_pod_template(spec.setdefault("template", {}))


def default_job(job: dict) -> None:
    spec = job.setdefault("spec", {})
    default_job_spec(spec)
    meta = job.setdefault("metadata", {})
    if not spec.get("manualSelector") and meta.get("uid"):
        generate_selector(spec, meta["name"], meta["uid"])
    template_labels = (spec.get("template") or {}).get("metadata", {}).get("labels")
    if template_labels and not meta.get("labels"):
        meta["labels"] = dict(template_labels)


def generate_selector(spec: dict, name: str, uid: str) -> None:
    """The generated selector and template labels (values the client already set are kept:
    a mismatch is then refused by validation)."""
    labels = spec["template"].setdefault("metadata", {}).setdefault("labels", {})
    for key in JOB_NAME_LABELS:
        labels.setdefault(key, name)
    for key in CONTROLLER_UID_LABELS:
        labels.setdefault(key, uid)
    selector = spec.get("selector")
    if not isinstance(selector, dict):
        selector = spec["selector"] = {}
    selector.setdefault("matchLabels", {}).setdefault(SELECTOR_LABEL, uid)


def default_cron_job(cron_job: dict) -> None:
    spec = cron_job.setdefault("spec", {})
    spec.setdefault("concurrencyPolicy", "Allow")
    spec.setdefault("suspend", False)
    spec.setdefault("successfulJobsHistoryLimit", 3)
    spec.setdefault("failedJobsHistoryLimit", 1)
    job_spec = spec.setdefault("jobTemplate", {}).setdefault("spec", {})
    _default_pod_template(job_spec.setdefault("template", {}))


def default_replication_controller(rc: dict) -> None:
    """replicas 1; selector and labels from the template's labels when missing."""
    spec = rc.setdefault("spec", {})
    spec.setdefault("replicas", 1)
    template = spec.setdefault("template", {})
    labels = (template.get("metadata") or {}).get("labels") if isinstance(template, dict) else None
    if labels:
        if not spec.get("selector"):
            spec["selector"] = dict(labels)
        meta = rc.setdefault("metadata", {})
        if not meta.get("labels"):
            meta["labels"] = dict(labels)
    _default_pod_template(template)
