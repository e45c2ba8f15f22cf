"""Static pods: Pod manifests in a directory, run by the kubelet without any apiserver.

Each `*.yaml`, `*.yml` or `*.json` file (hidden and editor-backup files skipped) holds one or
more Pod documents. A static pod is named `<name>-<node>`, lives in its manifest's namespace
(default "default"), and its uid is a hash of the node, the file and the document, so a
changed manifest is a new pod (the old one is stopped) and an unchanged one keeps its uid
across kubelet restarts. A broken file is reported and skipped; the others keep running.

`StaticPodSource` watches the directory with inotify, with a periodic rescan as a fallback,
and calls `on_change(pods_by_uid)` whenever the set of static pods changed.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
from typing import Callable

import yaml

from pkube.runtime.inotify import (IN_CLOSE_WRITE, IN_CREATE, IN_DELETE, IN_DELETE_SELF, IN_MOVE_SELF,
                             IN_MOVED_FROM, IN_MOVED_TO, Inotify)

log = logging.getLogger(__name__)

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")
CONFIG_SOURCE = "kubernetes.io/config.source"
CONFIG_HASH = "kubernetes.io/config.hash"
CONFIG_MIRROR = "kubernetes.io/config.mirror"
RESCAN_SECONDS = 20.0
SETTLE_SECONDS = 0.1
DIR_EVENTS = IN_CREATE | IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE | IN_DELETE_SELF | IN_MOVE_SELF


class ManifestError(ValueError):
    """A manifest file that cannot be run: the message names the file and the reason."""


def is_manifest(filename: str) -> bool:
    return (not filename.startswith(".") and not filename.endswith("~")
            and filename.endswith(MANIFEST_SUFFIXES))


def parse_manifest(path: str, text: str) -> list[dict]:
    """The Pod documents of one file; raises ManifestError."""
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as err:
        raise ManifestError(f"{path}: not valid YAML or JSON: {str(err).splitlines()[0]}") from None
    for doc in docs:
        if not isinstance(doc, dict):
            raise ManifestError(f"{path}: a document is not an object")
        if doc.get("kind") != "Pod":
            raise ManifestError(f"{path}: kind {doc.get('kind')!r} is not Pod: only pods can be static")
        if not (doc.get("metadata") or {}).get("name"):
            raise ManifestError(f"{path}: the pod has no metadata.name")
        if not (doc.get("spec") or {}).get("containers"):
            raise ManifestError(f"{path}: the pod has no containers")
    return docs


def static_uid(node_name: str, path: str, doc: dict) -> str:
    """A stable uid: the same manifest on the same node always gets the same one."""
    digest = hashlib.md5(f"{node_name}\0{path}\0{json.dumps(doc, sort_keys=True)}".encode()).hexdigest()
    return f"{digest[:8]}-{digest[8:12]}-{digest[12:16]}-{digest[16:20]}-{digest[20:32]}"


def static_pod(node_name: str, path: str, doc: dict) -> dict:
    """The pod the kubelet runs for one manifest document."""
    meta = dict(doc.get("metadata") or {})
    uid = static_uid(node_name, path, doc)
    annotations = {**(meta.get("annotations") or {}), CONFIG_SOURCE: "file", CONFIG_HASH: uid}
    spec = {"restartPolicy": "Always", "terminationGracePeriodSeconds": 30, "dnsPolicy": "ClusterFirst",
            **(doc.get("spec") or {}), "nodeName": node_name}
    spec.setdefault("tolerations", [{"operator": "Exists", "effect": "NoExecute"}])
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {**meta, "name": f"{meta['name']}-{node_name}",
                         "namespace": meta.get("namespace") or "default", "uid": uid, "annotations": annotations},
            "spec": spec, "status": {"phase": "Pending"}}


def read_manifests(directory: str, node_name: str, on_error: Callable[[str], None]) -> dict[str, dict]:
    """Every static pod of `directory`, by uid; broken files reported through `on_error`."""
    pods: dict[str, dict] = {}
    try:
        names = sorted(os.listdir(directory))
    except FileNotFoundError:
        return pods
    for name in names:
        path = os.path.join(directory, name)
        if not is_manifest(name) or not os.path.isfile(path):
            continue
        try:
            with open(path) as f:
                docs = parse_manifest(path, f.read())
        except (OSError, UnicodeDecodeError) as err:
            on_error(f"{path}: cannot read: {err}")
            continue
        except ManifestError as err:
            on_error(str(err))
            continue
        for doc in docs:
            pod = static_pod(node_name, path, doc)
            pods[pod["metadata"]["uid"]] = pod
    return pods


class StaticPodSource:
    """Keeps the static pods of a directory and says when they change."""

    def __init__(self, directory: str, node_name: str, on_change: Callable[[dict], None],
                 on_error: Callable[[str], None], rescan_seconds: float = RESCAN_SECONDS):
        self.directory = directory
        self.node_name = node_name
        self.on_change = on_change
        self.on_error = on_error
        self.rescan_seconds = rescan_seconds
        self.pods: dict[str, dict] = {}
        self._reported: set[str] = set()
        self._inotify: Inotify | None = None
        self._dirty = asyncio.Event()

    def scan(self) -> None:
        """Read the directory again; call on_change when the pods differ."""
        errors: list[str] = []
        pods = read_manifests(self.directory, self.node_name, errors.append)
        for message in errors:
            if message not in self._reported:
                self.on_error(message)
        self._reported = set(errors)
        if pods.keys() != self.pods.keys():
            self.pods = pods
            self.on_change(dict(pods))

    async def run(self) -> None:
        """Scan now, then on every change of the directory (and every rescan period)."""
        os.makedirs(self.directory, exist_ok=True)
        loop = asyncio.get_running_loop()
        self._watch(loop)
        try:
            while True:
                self.scan()
                try:
                    await asyncio.wait_for(self._dirty.wait(), self.rescan_seconds)
                    await asyncio.sleep(SETTLE_SECONDS)   # let an editor finish its rename dance
                except TimeoutError:
                    pass
                self._dirty.clear()
        finally:
            if self._inotify is not None:
                loop.remove_reader(self._inotify.fileno())
                self._inotify.close()

    def _watch(self, loop) -> None:
        try:
            self._inotify = Inotify()
            self._inotify.add_watch(self.directory, DIR_EVENTS)
        except OSError as err:
            log.warning("static pods: no inotify on %s (%s); rescanning every %ss",
                        self.directory, err, self.rescan_seconds)
            self._inotify = None
            return
        loop.add_reader(self._inotify.fileno(), self._on_readable, loop)

    def _on_readable(self, loop) -> None:
        """Read the queued events (the reader is level-triggered) and mark the directory dirty."""
        self._dirty.set()
        for _wd, mask, _name in self._inotify.read():
            if mask & (IN_DELETE_SELF | IN_MOVE_SELF):   # the directory itself was replaced
                loop.remove_reader(self._inotify.fileno())
                self._inotify.close()
                os.makedirs(self.directory, exist_ok=True)
                self._watch(loop)
                return
