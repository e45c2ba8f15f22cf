"""A kubeconfig file for tests that hand a client (kubectl, a component) an apiserver URL."""

import yaml


def write_kubeconfig(path, url: str):
    """A kubeconfig at ``path`` for an insecure apiserver at ``url``, no credentials; returns ``path``."""
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "t",
        "clusters": [{"name": "t", "cluster": {"server": url}}],
        "users": [{"name": "t", "user": {}}],
        "contexts": [{"name": "t", "context": {"cluster": "t", "user": "t"}}]}))
    return path
