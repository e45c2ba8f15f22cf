"""The store's name index (runtime.state.StateStore: reserve_name, id_of_name, release_name):
what `create` and name lookups rely on instead of reading every record."""

import os

from pkube.runtime.state import ContainerState, StateStore


def record(store: StateStore, cid: str, name: str) -> None:
    os.makedirs(store.dir(cid))
    store.save(ContainerState(id=cid, name=name, image="busybox", image_id="sha256:x"))


def test_a_name_belongs_to_one_live_container(tmp_path):
    store = StateStore(tmp_path)
    with store.locked():
        assert store.reserve_name("web", "a" * 64)
        record(store, "a" * 64, "web")
        assert not store.reserve_name("web", "b" * 64)
        assert store.reserve_name("web", "a" * 64)   # its own name again
    assert store.id_of_name("web") == "a" * 64 and store.id_of_name("db") is None


def test_a_released_or_orphaned_name_is_free_again(tmp_path):
    store = StateStore(tmp_path)
    with store.locked():
        store.reserve_name("web", "a" * 64)
        record(store, "a" * 64, "web")
    store.release_name("web", "b" * 64)               # not its holder: nothing happens
    assert store.id_of_name("web") == "a" * 64
    store.release_name("web", "a" * 64)
    assert store.id_of_name("web") is None
    with store.locked():
        store.reserve_name("db", "c" * 64)            # reserved, but no record ever written
        assert store.id_of_name("db") is None
        assert store.reserve_name("db", "d" * 64)


def test_a_store_written_before_the_index_gets_one(tmp_path):
    store = StateStore(tmp_path)
    record(store, "a" * 64, "web")
    record(store, "b" * 64, "db")
    assert not os.path.exists(tmp_path / ".names")
    assert store.id_of_name("db") == "b" * 64
    assert sorted(os.listdir(tmp_path / ".names")) == ["db", "web"]
    assert store.ids() == ["a" * 64, "b" * 64]       # the index is not a container


def test_names_that_are_not_file_names_are_kept_apart(tmp_path):
    store = StateStore(tmp_path)
    with store.locked():
        for i, name in enumerate(["k8s/pod", "..", ".hidden", "%2e", "a b"]):
            cid = str(i) * 64
            assert store.reserve_name(name, cid)
            record(store, cid, name)
    for i, name in enumerate(["k8s/pod", "..", ".hidden", "%2e", "a b"]):
        assert store.id_of_name(name) == str(i) * 64
    assert all("/" not in f and not f.startswith(".") for f in os.listdir(tmp_path / ".names"))


def test_claiming_a_taken_name_is_a_conflict_and_no_name_gets_a_generated_one(tmp_path):
    import pytest

    from pkube.runtime.errors import Conflict
    from pkube.runtime.names import claim_name, valid_name
    store = StateStore(tmp_path)
    with store.locked():
        assert claim_name(store, "web", "a" * 64) == "web"
        record(store, "a" * 64, "web")
        with pytest.raises(Conflict, match='The container name "/web" is already in use'):
            claim_name(store, "web", "b" * 64)
        generated = claim_name(store, None, "b" * 64)
        record(store, "b" * 64, generated)
    adjective, _, noun = generated.partition("_")
    assert valid_name(generated) and adjective and noun and store.id_of_name(generated) == "b" * 64
