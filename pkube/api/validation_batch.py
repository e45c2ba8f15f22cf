"""Semantic checks of Jobs and CronJobs (batch/v1) and ReplicationControllers (core/v1), as
Kubernetes' pkg/apis/batch/validation and the RC part of pkg/apis/core/validation do on create
and update.

Registered in ``api.validation_specs.BY_KIND``; import that module (or ``api.validation``), not
this one first: this module takes its shared helpers from it.
"""

from __future__ import annotations

from pkube.api import causes
from pkube.api.cronschedule import ScheduleError, parse_schedule, parse_time_zone
from pkube.api.validation_specs import (_selector_matches_template, as_dict, as_list, dict_items, label_map,
                                  non_negative, one_of, pod_spec)

COMPLETION_MODES = ("NonIndexed", "Indexed")
JOB_RESTART_POLICIES = ("OnFailure", "Never")
CONCURRENCY_POLICIES = ("Allow", "Forbid", "Replace")
FAILURE_ACTIONS = ("FailJob", "FailIndex", "Ignore", "Count")
EXIT_CODE_OPERATORS = ("In", "NotIn")
CRONJOB_NAME_MAX = 52
CONTROLLER_UID_LABEL = "batch.kubernetes.io/controller-uid"


# --- Job ----------------------------------------------------------------------------------------

def job(obj: dict) -> list:
    return job_spec(as_dict(obj.get("spec")), "spec", generated_selector=True)


def job_spec(spec: dict, path: str, generated_selector: bool = False) -> list:
    """A JobSpec at ``path``; ``generated_selector``: a real Job, whose selector the apiserver
    filled in (a CronJob's jobTemplate has none yet)."""
    found = []
    for name in ("parallelism", "completions", "activeDeadlineSeconds", "backoffLimit",
                 "ttlSecondsAfterFinished"):
        found += non_negative(f"{path}.{name}", spec.get(name))
    mode = spec.get("completionMode")
    found += one_of(f"{path}.completionMode", mode, COMPLETION_MODES)
    if mode == "Indexed" and spec.get("completions") is None:
        found.append(causes.required(f"{path}.completions", "when completion mode is Indexed"))
    template = as_dict(spec.get("template"))
    template_labels = as_dict(as_dict(template.get("metadata")).get("labels"))
    found += label_map(f"{path}.template.metadata.labels", template_labels)
    if generated_selector or spec.get("selector") is not None:
        found += _prefixed(_selector_matches_template(spec.get("selector"), template_labels, "job"), path)
    if not template:
        return found + [causes.required(f"{path}.template")]
    template_spec = as_dict(template.get("spec"))
    found += pod_spec(template_spec, f"{path}.template.spec")
    restart = template_spec.get("restartPolicy")
    if restart not in JOB_RESTART_POLICIES:
        found.append(causes.not_supported(f"{path}.template.spec.restartPolicy", restart, JOB_RESTART_POLICIES))
    found += _pod_failure_policy(spec.get("podFailurePolicy"), restart, f"{path}.podFailurePolicy")
    return found


def _prefixed(found: list, path: str) -> list:
    """Causes written for ``spec.*`` moved under ``path`` (a CronJob's jobTemplate)."""
    if path == "spec":
        return found
    return [{**c, "field": path + c["field"][len("spec"):]} if c.get("field", "").startswith("spec.") else c
            for c in found]


def _pod_failure_policy(policy, restart_policy, path: str) -> list:
    if policy is None:
        return []
    found = []
    if restart_policy != "Never":
        found.append(causes.invalid(f"{path}", restart_policy,
                                    'only "Never" is supported when podFailurePolicy is specified'))
    for _, rule, rule_path in dict_items(as_dict(policy).get("rules"), f"{path}.rules"):
        found += one_of(f"{rule_path}.action", rule.get("action"), FAILURE_ACTIONS, allow_missing=False)
        codes, conditions = rule.get("onExitCodes"), rule.get("onPodConditions")
        if (codes is None) == (conditions is None):
            found.append(causes.invalid(rule_path, "", "specifying one of OnExitCodes and OnPodConditions "
                                                       "is required"))
        if codes is not None:
            found += _exit_codes(as_dict(codes), f"{rule_path}.onExitCodes")
        for _, pattern, pattern_path in dict_items(conditions, f"{rule_path}.onPodConditions"):
            if not pattern.get("type"):
                found.append(causes.required(f"{pattern_path}.type"))
    return found


def _exit_codes(codes: dict, path: str) -> list:
    operator = codes.get("operator")
    found = one_of(f"{path}.operator", operator, EXIT_CODE_OPERATORS, allow_missing=False)
    values = as_list(codes.get("values"))
    if not values:
        found.append(causes.required(f"{path}.values", "at least one value is required"))
    if operator == "In" and 0 in values:
        found.append(causes.invalid(f"{path}.values", 0, "must not be 0 for the In operator"))
    if len(set(map(str, values))) != len(values):
        found.append(causes.invalid(f"{path}.values", values, "must not contain duplicates"))
    return found


# --- CronJob ------------------------------------------------------------------------------------

def cron_job(obj: dict) -> list:
    spec = as_dict(obj.get("spec"))
    found = []
    name = as_dict(obj.get("metadata")).get("name")
    if isinstance(name, str) and len(name) > CRONJOB_NAME_MAX:
        found.append(causes.invalid("metadata.name", name, f"must be no more than {CRONJOB_NAME_MAX} characters"))
    found += _schedule(spec)
    found += one_of("spec.concurrencyPolicy", spec.get("concurrencyPolicy"), CONCURRENCY_POLICIES)
    for field in ("startingDeadlineSeconds", "successfulJobsHistoryLimit", "failedJobsHistoryLimit"):
        found += non_negative(f"spec.{field}", spec.get(field))
    template = spec.get("jobTemplate")
    if not isinstance(template, dict):
        return found + [causes.required("spec.jobTemplate")]
    found += label_map("spec.jobTemplate.metadata.labels", as_dict(template.get("metadata")).get("labels"))
    return found + job_spec(as_dict(template.get("spec")), "spec.jobTemplate.spec")


def _schedule(spec: dict) -> list:
    schedule, zone = spec.get("schedule"), spec.get("timeZone")
    if zone is not None:
        try:
            parse_time_zone(zone)
        except ScheduleError as err:
            return [causes.invalid("spec.timeZone", zone, str(err))]
    if not isinstance(schedule, str) or not schedule:
        return [causes.required("spec.schedule")]
    try:
        parse_schedule(schedule, zone)
    except ScheduleError as err:
        return [causes.invalid("spec.schedule", schedule, str(err))]
    return []


# --- ReplicationController ----------------------------------------------------------------------

def replication_controller(obj: dict) -> list:
    """replicas, a non-empty equality selector matching the template's labels, a pod template."""
    spec = as_dict(obj.get("spec"))
    found = non_negative("spec.replicas", spec.get("replicas"))
    found += non_negative("spec.minReadySeconds", spec.get("minReadySeconds"))
    selector = as_dict(spec.get("selector"))
    found += label_map("spec.selector", selector)
    if not selector:
        found.append(causes.required("spec.selector"))
    template = spec.get("template")
    if not isinstance(template, dict):
        return found + [causes.required("spec.template")]
    labels = as_dict(as_dict(template.get("metadata")).get("labels"))
    found += label_map("spec.template.metadata.labels", labels)
    if selector and any(labels.get(k) != v for k, v in selector.items()):
        found.append(causes.invalid("spec.template.metadata.labels", labels,
                                    "`selector` does not match template `labels`"))
    return found + pod_spec(template.get("spec"), "spec.template.spec", in_template=True)


# --- updates ------------------------------------------------------------------------------------

JOB_IMMUTABLE = ("selector", "manualSelector", "completionMode", "podFailurePolicy")


def job_update(new: dict, old: dict) -> list:
    """What a Job update may not change: the selector, completionMode, podFailurePolicy, the
    pod template (unless the Job is suspended and never started, as Kubernetes allows), and
    completions (unless an Indexed Job changes completions and parallelism together)."""
    new_spec, old_spec = as_dict(new.get("spec")), as_dict(old.get("spec"))
    found = [causes.invalid(f"spec.{field}", new_spec.get(field), "field is immutable")
             for field in JOB_IMMUTABLE if field in old_spec and new_spec.get(field) != old_spec.get(field)]
    never_started = new_spec.get("suspend") and not as_dict(old.get("status")).get("startTime")
    if new_spec.get("template") != old_spec.get("template") and not never_started:
        found.append(causes.invalid("spec.template", "", "field is immutable"))
    if new_spec.get("completions") != old_spec.get("completions") and not _elastic(new_spec, old_spec):
        found.append(causes.invalid("spec.completions", new_spec.get("completions"), "field is immutable"))
    return found


def _elastic(new_spec: dict, old_spec: dict) -> bool:
    return (new_spec.get("completionMode") == "Indexed"
            and new_spec.get("completions") == new_spec.get("parallelism")
            and old_spec.get("completions") == old_spec.get("parallelism"))
