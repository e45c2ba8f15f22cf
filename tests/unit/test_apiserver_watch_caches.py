"""Which watch caches an apiserver starts with (pkube/apiserver/__main__.py)."""

from __future__ import annotations

from pkube.api.kinds import BUILTIN_RESOURCES
from pkube.apiserver.__main__ import cached_prefixes


def test_the_resources_clusters_watch_are_cached_from_the_start_but_not_events():
    prefixes = cached_prefixes(BUILTIN_RESOURCES)
    for watched in ("pods", "nodes", "configmaps", "services", "endpointslices", "leases", "deployments"):
        assert f"/registry/{watched}/" in prefixes
    assert "/registry/events/" not in prefixes
    assert len(prefixes) == len(set(prefixes))


def test_resources_that_cannot_be_watched_get_no_cache():
    unwatchable = [info for info in BUILTIN_RESOURCES if "watch" not in info.verbs]
    assert unwatchable, "the registry has create-only resources (bindings, reviews)"
    prefixes = cached_prefixes(unwatchable)
    assert prefixes == []
