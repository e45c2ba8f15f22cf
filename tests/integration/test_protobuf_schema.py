"""Our protobuf field table covers every field the installed kubectl can send.

kubectl (a Go binary) carries the gzipped FileDescriptorProto of each ``generated.proto`` it
was built with; we read them out of the binary and compare field numbers, names, types and
pointer-ness (gogoproto ``nullable``) with ``apiserver.protobuf_schema.MESSAGES``.
"""

from __future__ import annotations

import re
import shutil
import zlib
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2

from apiserver.protobuf_schema import MESSAGES

KUBECTL = shutil.which("kubectl")
pytestmark = pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")

GOGO_NULLABLE = 65001
F = descriptor_pb2.FieldDescriptorProto
SCALARS = {F.TYPE_STRING: "string", F.TYPE_INT32: "int32", F.TYPE_INT64: "int64",
           F.TYPE_BOOL: "bool", F.TYPE_BYTES: "bytes"}
SPECIALS = {"meta.v1.Time": "Time", "meta.v1.MicroTime": "MicroTime",
            "meta.v1.FieldsV1": "FieldsV1", "resource.Quantity": "Quantity",
            "intstr.IntOrString": "IntOrString", "runtime.RawExtension": "RawExtension"}


def embedded_descriptors(binary: Path) -> dict[str, descriptor_pb2.DescriptorProto]:
    """Every message descriptor gzipped into ``binary``, by full name ('.pkg.Name')."""
    data, messages, start = binary.read_bytes(), {}, 0
    while (start := data.find(b"\x1f\x8b\x08", start) + 1) > 0:
        try:
            raw = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(data[start - 1:start + 2**21])
            file = descriptor_pb2.FileDescriptorProto.FromString(raw)
        except Exception:  # not a gzipped descriptor: most gzip magics are not
            continue
        if file.name.endswith("generated.proto"):
            for message in file.message_type:
                _add(messages, "." + file.package, message)
    return messages


def _add(messages: dict, prefix: str, message) -> None:
    messages[f"{prefix}.{message.name}"] = message
    for nested in message.nested_type:
        _add(messages, f"{prefix}.{message.name}", nested)


def our_name(full: str) -> str:
    """'.k8s.io.api.core.v1.Pod' -> 'core/v1.Pod'; apimachinery specials by their short name."""
    short = re.sub(r"^\.k8s\.io\.(api|apimachinery\.pkg\.(apis|api|util)|apimachinery\.pkg)\.",
                   "", full)
    if short in SPECIALS:
        return SPECIALS[short]
    return re.sub(r"^([a-z0-9]+)\.(v\w+)\.", r"\1/\2.", short)


def kubectl_type(field, messages) -> str:
    """The type of ``field`` in our table's notation."""
    if field.type != F.TYPE_MESSAGE:
        base = SCALARS[field.type]
    elif messages[field.type_name].options.map_entry:
        entry = messages[field.type_name]
        return f"map[{kubectl_type(entry.field[0], messages).lstrip('*')}]" \
               f"{kubectl_type(entry.field[1], messages).lstrip('*')}"
    else:
        base = our_name(field.type_name)
    if field.label == F.LABEL_REPEATED:
        return "[]" + base
    options = field.options.SerializeToString()
    non_nullable = b"\xc8\xde\x1f\x00" in options  # (gogoproto.nullable) = false
    return base if non_nullable else "*" + base


def test_schema_matches_the_descriptors_compiled_into_kubectl():
    messages = embedded_descriptors(Path(KUBECTL).resolve())
    by_our_name = {our_name(full): message for full, message in messages.items()}
    problems = []
    for name, fields in MESSAGES.items():
        message = by_our_name.get(name)
        if message is None:
            problems.append(f"{name}: not in kubectl")
            continue
        for field in message.field:
            ours = fields.get(field.number)
            theirs = (field.name, kubectl_type(field, messages))
            if ours is None or (ours[0], ours[1].replace("inline ", "")) != theirs:
                problems.append(f"{name} {field.number}: ours {ours}, kubectl's {theirs}")
        extra = set(fields) - {field.number for field in message.field}
        problems += [f"{name} {number}: not in kubectl" for number in sorted(extra)]
    assert not problems, "\n".join(problems)
