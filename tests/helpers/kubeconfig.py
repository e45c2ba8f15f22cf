"""A kubeconfig file for tests that hand a client (kubectl, a component) an apiserver URL."""

from pkube.cluster.kubeconfig import admin_kubeconfig, write_private


def write_kubeconfig(path, url: str):
    """A kubeconfig at ``path`` for an insecure apiserver at ``url``, no credentials; returns ``path``."""
    write_private(path, admin_kubeconfig(url))
    return path


def lightkube_client(url: str):
    """A lightkube Client for an insecure apiserver at ``url``, namespace default."""
    import lightkube
    from lightkube.config.kubeconfig import KubeConfig

    return lightkube.Client(config=KubeConfig.from_dict(admin_kubeconfig(url)), namespace="default")
