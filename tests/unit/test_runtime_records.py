"""The runtime's records (runtime.records.Record) and pdocker's launcher script: pure, no root."""

from __future__ import annotations

import os

import pytest

from pkube.runtime.cgroups import Resources
from pkube.pdocker.launcher import is_launcher, script_text
from pkube.runtime.spec import ContainerSpec, Mount, SpecError, spec_from_dict
from pkube.runtime.state import ContainerState, StateStore, Status


def test_defaults_are_fresh_per_record_and_arguments_are_checked():
    a, b = ContainerSpec(image="busybox"), ContainerSpec("busybox")
    a.env["X"] = "1"
    a.mounts.append(Mount("/h", "/c"))
    assert b.env == {} and b.mounts == [] and b.network == "bridge"
    with pytest.raises(TypeError, match="image"):
        ContainerSpec()
    with pytest.raises(TypeError, match="imagee"):
        ContainerSpec(image="busybox", imagee="x")
    with pytest.raises(TypeError, match="multiple values"):
        Mount("/a", "/b", source="/c")


def test_equality_repr_and_frozen_records():
    assert Mount("/h", "/c") == Mount("/h", "/c", False) != Mount("/h", "/c", True)
    assert Mount("/h", "/c") != ("/h", "/c", False)
    assert repr(Mount("/h", "/c")) == "Mount(source='/h', target='/c', readonly=False)"
    with pytest.raises(AttributeError):
        Mount("/h", "/c").readonly = True
    assert len({Resources(pids_limit=3), Resources(pids_limit=3)}) == 1
    with pytest.raises(TypeError):
        hash(ContainerSpec(image="busybox"))
    state = ContainerState(id="a" * 64, name="n", image="busybox", image_id="")
    state.status = Status.RUNNING   # mutable records stay mutable
    assert state.running and state.created.endswith("Z")


def test_state_json_keeps_its_keys_and_status_is_a_plain_string(tmp_path):
    import json
    store = StateStore(tmp_path / "containers")
    state = ContainerState(id="b" * 64, name="n", image="busybox", image_id="sha256:x",
                           labels={"é": "ü"})
    os.makedirs(store.dir(state.id))
    store.save(state)
    path = os.path.join(store.root, state.id, "state.json")
    assert isinstance(store.root, str) and store.dir(state.id) == os.path.dirname(path)
    with open(path, encoding="utf-8") as f:
        on_disk = json.load(f)
    assert list(on_disk) == list(ContainerState.field_names())
    assert on_disk["status"] == "created" and on_disk["labels"] == {"é": "ü"}
    with store.locked(state.id):
        loaded = store.load(state.id)
    assert loaded == state and loaded.status == Status.CREATED == "created"
    assert store.ids() == [state.id] and store.load("c" * 64) is None
    with pytest.raises(FileNotFoundError):
        with store.locked("c" * 64):
            pass


def test_validation_runs_at_construction():
    with pytest.raises(SpecError, match="absolute"):
        Mount("relative", "/c")
    with pytest.raises(ValueError, match="pids_limit"):
        Resources(pids_limit=0)


def test_spec_round_trips_through_plain_dicts():
    spec = ContainerSpec(image="busybox", command=["true"], mounts=[Mount("/h", "/c", True)],
                         resources=Resources(memory_bytes=1 << 20), labels={"a": "b"})
    data = spec.to_dict()
    assert data["mounts"] == [{"source": "/h", "target": "/c", "readonly": True}]
    assert data["resources"]["memory_bytes"] == 1 << 20 and data["labels"] == {"a": "b"}
    assert spec_from_dict(data) == spec


def test_launcher_script_runs_a_bare_interpreter_on_the_project(tmp_path):
    text = script_text("/my venv/bin/python", "/src/pkube", ["/venv/lib/python3.11/site-packages"])
    lines = text.splitlines()
    assert lines[0] == "#!/bin/sh"
    assert lines[-1].startswith("exec '/my venv/bin/python' -I -S -c 'import gc; gc.disable(); import sys; ") and lines[-1].endswith("' \"$@\"")
    code = lines[-1].split("-c '", 1)[1].rsplit("' ", 1)[0]
    assert 'sys.path[:0] = ["/src/pkube"]' in code and 'sys.path += ["/venv/lib/python3.11/site-packages"]' in code
    compile(code, "pdocker", "exec")
    script = tmp_path / "pdocker"
    script.write_text(text)
    assert is_launcher(str(script)) and not is_launcher(__file__)
    for bad in ("/it's/python", '/a"b', "/back\\slash"):
        with pytest.raises(ValueError, match="quote"):
            script_text(bad, "/src", [])
