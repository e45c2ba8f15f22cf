"""Image garbage collection: which images go, and that a real store loses exactly those."""

from __future__ import annotations

from types import SimpleNamespace

from pkube.kubelet.imagegc import images_to_delete


def image(name, size, created="2026-01-01"):
    return SimpleNamespace(id=name, size=size, created=created, short_id=name)


def test_unused_images_go_least_recently_used_first_until_enough_is_freed():
    images = [image("a", 100), image("b", 100), image("c", 100), image("d", 100)]
    last_used = {"a": 50.0, "b": 10.0, "c": 20.0, "d": 995.0}
    chosen = images_to_delete(images, in_use={"c"}, last_used=last_used, now=1000.0, bytes_to_free=150,
                              min_age=60)
    assert [i.id for i in chosen] == ["b", "a"]          # c is in use, d was used 5 s ago
    assert images_to_delete(images, set(), last_used, 1000.0, 0, 60) == []
