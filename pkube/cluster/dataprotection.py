"""What `pkube up` gives the apiserver to protect the cluster's data, in DIR/apiserver (mode
0700; the static pod mounts it): the EncryptionConfiguration (Secrets encrypted at rest with
AES-GCM, reloaded when `pkube secrets rotate-key` changes it), the audit policy (a copy of
pkube/cluster/templates/audit-policy.yaml, made once: edit it there) and the audit log, audit.log.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from pkube.cluster.manifests import TEMPLATES_DIR
from pkube.cluster.secrets import apiserver_dir, encryption_config_path, ensure_encryption_config

AUDIT_POLICY_TEMPLATE = TEMPLATES_DIR / "audit-policy.yaml"


def audit_policy_path(data_dir: Path) -> Path:
    return apiserver_dir(data_dir) / "audit-policy.yaml"


def audit_log_path(data_dir: Path) -> Path:
    return apiserver_dir(data_dir) / "audit.log"


def prepare(data_dir: Path) -> list[str]:
    """Make what is missing (never replacing a file); the names of what was made. Raises OSError."""
    directory = apiserver_dir(data_dir)
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    made = []
    if ensure_encryption_config(encryption_config_path(data_dir)):
        made.append("encryption key")
    policy = audit_policy_path(data_dir)
    if not policy.exists():
        shutil.copyfile(AUDIT_POLICY_TEMPLATE, policy)
        os.chmod(policy, 0o600)
        made.append("audit policy")
    return made


def apiserver_flags(data_dir: Path) -> list[str]:
    """The apiserver's flags for these files (the static pod's template names the same)."""
    return ["--encryption-provider-config", str(encryption_config_path(data_dir)),
            "--encryption-provider-config-automatic-reload",
            "--audit-policy-file", str(audit_policy_path(data_dir)),
            "--audit-log-path", str(audit_log_path(data_dir))]
