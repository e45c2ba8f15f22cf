"""pkubectl: a kubectl for pkube (and any Kubernetes apiserver)."""

CLIENT_VERSION = "v1.32.0-pkube.0.1.0"
