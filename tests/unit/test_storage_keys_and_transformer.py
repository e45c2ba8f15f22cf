"""Pure parts of the store: key ranges, continue tokens, AES-GCM transformer."""

from __future__ import annotations

import base64
import os

import pytest

from pkube.apiserver.storage.keys import (
    BadStorageRequest, decode_continue, encode_continue, key_range, matches, range_end,
    resource_prefix,
)
from pkube.apiserver.storage.transformer import AesGcmTransformer


def test_range_end_covers_the_prefix():
    assert range_end(b"/registry/pods/") == b"/registry/pods0"
    assert range_end(b"a\xff") == b"b"
    assert range_end(b"\xff\xff") == b"\0"
    assert key_range("/registry/pods/ns/web") == (b"/registry/pods/ns/web", b"")


def test_prefix_and_single_key_matching():
    assert matches("/registry/pods/ns1/", "/registry/pods/ns1/a")
    assert not matches("/registry/pods/ns1/", "/registry/pods/ns10/a")
    assert matches("/registry/pods/ns1/a", "/registry/pods/ns1/a")
    assert not matches("/registry/pods/ns1/a", "/registry/pods/ns1/ab")


def test_resource_prefix():
    assert resource_prefix("/registry/pods/ns1/") == "/registry/pods/"
    assert resource_prefix("/registry/nodes/n1") == "/registry/nodes/"
    assert resource_prefix("/registry/") is None
    assert resource_prefix("/other/pods/x") is None


def test_continue_token_round_trip_and_rejects_garbage():
    token = encode_continue(42, "/registry/pods/", "/registry/pods/ns1/b\0")
    assert decode_continue(token, "/registry/pods/") == (42, "/registry/pods/ns1/b\0")
    bad = [b"nope", b'{"v":"meta.k8s.io/v1","rv":"x","start":"a"}',
           b'{"v":"meta.k8s.io/v1","rv":3,"start":"../secrets/"}', b"[1]",
           b'{"v":"other","rv":3,"start":"a"}']
    for body in bad:
        with pytest.raises(BadStorageRequest):
            decode_continue(base64.urlsafe_b64encode(body).decode(), "/registry/pods/")
    with pytest.raises(BadStorageRequest):
        decode_continue("%%%", "/registry/pods/")


def test_transformer_encrypts_only_its_prefixes_and_reads_plaintext():
    t = AesGcmTransformer(os.urandom(32))
    sealed = t.encrypt("/registry/secrets/ns/s", b"hunter2")
    assert sealed.startswith(b"k8s:enc:aesgcm:v1:key1:") and b"hunter2" not in sealed
    assert sealed != t.encrypt("/registry/secrets/ns/s", b"hunter2")  # random nonce
    assert t.decrypt("/registry/secrets/ns/s", sealed) == b"hunter2"
    assert t.encrypt("/registry/configmaps/ns/c", b"x") == b"x"
    assert t.decrypt("/registry/secrets/ns/s", b'{"old":"plain"}') == b'{"old":"plain"}'


def test_transformer_refuses_wrong_key_moved_value_and_bad_config():
    t = AesGcmTransformer(os.urandom(16))
    sealed = t.encrypt("/registry/secrets/ns/s", b"x")
    with pytest.raises(ValueError):
        AesGcmTransformer(os.urandom(16)).decrypt("/registry/secrets/ns/s", sealed)
    with pytest.raises(ValueError):
        t.decrypt("/registry/secrets/ns/other", sealed)
    with pytest.raises(ValueError):
        AesGcmTransformer(os.urandom(32), name="key2").decrypt("/registry/secrets/ns/s", sealed)
    with pytest.raises(ValueError):
        AesGcmTransformer(b"short")


def test_stored_form_puts_apiversion_kind_metadata_first():
    from pkube.apiserver.storage.etcd import stored_form
    obj = {"spec": {"template": {"metadata": {}}}, "metadata": {"name": "a"}, "kind": "Pod"}
    assert list(stored_form(obj)) == ["kind", "metadata", "spec"]
    ordered = {"apiVersion": "v1", "kind": "Pod", "metadata": {}, "spec": {}}
    assert stored_form(ordered) is ordered


def test_stamp_raw_splices_the_version_or_falls_back_to_decoding():
    import json as _json
    from pkube.apiserver.storage.etcd import stamp_raw
    cases = [
        b'{"apiVersion":"v1","kind":"Pod","metadata":{"name":"a"},"spec":{}}',
        b'{"kind":"Pod","metadata":{},"spec":{}}',
        b'{"spec":{"template":{"metadata":{"name":"inner"}}},"metadata":{"name":"outer"}}',
        b'{"kind":"x\\"metadata\\":{","metadata":{"name":"a"}}',
        b'{"kind":"Pod"}',
    ]
    for plain in cases:
        stamped = _json.loads(stamp_raw(plain, 42))
        expected = _json.loads(plain)
        expected.setdefault("metadata", {})["resourceVersion"] = "42"
        assert stamped == expected
