"""The apiserver's flags for data protection and overload protection, and what they build:
encryption at rest with automatic reload, the audit log, the in-flight limits, and the
admission plugins on by default (LimitRanger, PodSecurity, ...), named as kube-apiserver names them.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import yaml

from pkube.apiserver.admission_limitranger import LimitRanger
from pkube.apiserver.admission_networking import DefaultIngressClass
from pkube.apiserver.admission_storage import DefaultStorageClass, StorageObjectInUseProtection
from pkube.apiserver.audit import AuditLog, Auditor, AuditPolicyError, load_policy
from pkube.apiserver.inflight import (
    DEFAULT_MAX_MUTATING,
    DEFAULT_MAX_READ_ONLY,
    DEFAULT_MAX_WATCHES_PER_USER,
    InflightLimiter,
)
from pkube.apiserver.podsecurity import LEVELS, PodSecurity, PodSecurityDefaults, Policy
from pkube.apiserver.requestfilters import RequestFilters
from pkube.apiserver.storage.encryption_config import (
    EncryptionConfigError,
    load_encryption_config,
)
from pkube.apiserver.storage.encryption_reload import ReloadingTransformer

DEFAULT_ADMISSION_PLUGINS = ("LimitRanger", "PodSecurity", "DefaultStorageClass", "StorageObjectInUseProtection",
                             "DefaultIngressClass")


def add_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--encryption-provider-config-automatic-reload", action="store_true",
                        help="read the --encryption-provider-config file again when it changes (key rotation)")
    parser.add_argument("--audit-policy-file", help="an audit.k8s.io/v1 Policy; with --audit-log-path, "
                                                    "requests are audited")
    parser.add_argument("--audit-log-path", help="where audit events go, one JSON line each")
    parser.add_argument("--audit-log-maxsize", type=int, default=100, help="MiB before the log is rotated (0: never)")
    parser.add_argument("--audit-log-maxbackup", type=int, default=10, help="rotated logs kept (0: all)")
    parser.add_argument("--max-requests-inflight", type=int, default=DEFAULT_MAX_READ_ONLY,
                        help="read-only requests served at once; more get 429 (0: no limit)")
    parser.add_argument("--max-mutating-requests-inflight", type=int, default=DEFAULT_MAX_MUTATING,
                        help="mutating requests served at once; more get 429 (0: no limit)")
    parser.add_argument("--max-watches-per-user", type=int, default=DEFAULT_MAX_WATCHES_PER_USER,
                        help="watches one user may hold open at once; more get 429 (0: no limit)")
    parser.add_argument("--disable-admission-plugins", default="",
                        help=f"comma-separated plugins to turn off (on by default: {', '.join(DEFAULT_ADMISSION_PLUGINS)})")
    parser.add_argument("--admission-control-config-file",
                        help="an AdmissionConfiguration with the PodSecurity plugin's PodSecurityConfiguration "
                             "(defaults and exempt namespaces)")


def transformer(args: argparse.Namespace):
    """The at-rest transformer of --encryption-provider-config (None: plaintext); exits with
    one line on a bad file."""
    path = args.encryption_provider_config
    if not path:
        return None
    try:
        if args.encryption_provider_config_automatic_reload:
            return ReloadingTransformer(path)
        return load_encryption_config(path)
    except (OSError, EncryptionConfigError) as exc:
        raise SystemExit(f"apiserver: {path}: {exc}") from None


def request_filters(args: argparse.Namespace) -> RequestFilters:
    """The audit log (when both --audit-policy-file and --audit-log-path are given, as
    upstream) and the in-flight limits."""
    auditor = None
    if args.audit_policy_file and args.audit_log_path:
        try:
            policy = load_policy(args.audit_policy_file)
        except AuditPolicyError as exc:
            raise SystemExit(f"apiserver: --audit-policy-file: {exc}") from None
        auditor = Auditor(policy, AuditLog(args.audit_log_path, args.audit_log_maxsize, args.audit_log_maxbackup))
    limiter = InflightLimiter(args.max_requests_inflight, args.max_mutating_requests_inflight,
                              args.max_watches_per_user)
    return RequestFilters(auditor, limiter)


def admission_plugins(args: argparse.Namespace, storage) -> list:
    """The plugins on by default less --disable-admission-plugins."""
    disabled = {p.strip() for p in args.disable_admission_plugins.split(",") if p.strip()}
    unknown = disabled - set(DEFAULT_ADMISSION_PLUGINS)
    if unknown:
        raise SystemExit(f"apiserver: --disable-admission-plugins: unknown {', '.join(sorted(unknown))}")
    plugins: list = []
    if "LimitRanger" not in disabled:           # first, as in kube-apiserver's order
        plugins.append(LimitRanger(storage))
    if "PodSecurity" not in disabled:
        plugins.append(PodSecurity(storage, pod_security_defaults(args.admission_control_config_file)))
    if "DefaultStorageClass" not in disabled:
        plugins.append(DefaultStorageClass(storage))
    if "StorageObjectInUseProtection" not in disabled:
        plugins.append(StorageObjectInUseProtection())
    if "DefaultIngressClass" not in disabled:
        plugins.append(DefaultIngressClass(storage))
    return plugins


def pod_security_defaults(path: str | None) -> PodSecurityDefaults:
    """The PodSecurityConfiguration of an AdmissionConfiguration file (kube-apiserver's
    --admission-control-config-file), or pkube's defaults without one; exits on a bad file."""
    if not path:
        return PodSecurityDefaults()
    try:
        doc = yaml.safe_load(Path(path).read_text())
        config = next(p.get("configuration") for p in doc["plugins"] if p.get("name") == "PodSecurity")
        defaults = config.get("defaults") or {}
        policies = {}
        for mode in ("enforce", "audit", "warn"):
            level = defaults.get(mode, "privileged")
            if level not in LEVELS:
                raise ValueError(f"defaults.{mode}: {level!r} is not one of {', '.join(LEVELS)}")
            policies[mode] = Policy(level, defaults.get(f"{mode}-version", "latest"))
        exempt = tuple((config.get("exemptions") or {}).get("namespaces") or ())
        return PodSecurityDefaults(**policies, exempt_namespaces=exempt)
    except (OSError, yaml.YAMLError, KeyError, TypeError, StopIteration, ValueError, AttributeError) as exc:
        raise SystemExit(f"apiserver: --admission-control-config-file {path}: {exc}") from None
