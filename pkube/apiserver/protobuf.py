"""Request bodies in Kubernetes protobuf (``application/vnd.kubernetes.protobuf``).

kubectl's typed commands (``create namespace|secret|configmap|serviceaccount|service|
deployment``, ``debug``; ``run`` and ``expose`` send JSON) send their object in this
encoding. We turn it into the very dict a JSON client would have sent, so defaulting and
validation see no difference: ``decode_protobuf(body)`` is the whole contract.

The envelope is the 4-byte magic ``k8s\\0`` followed by a ``runtime.Unknown`` message
(typeMeta{apiVersion=1, kind=2}=1, raw=2, contentEncoding=3, contentType=4); ``raw`` is the
message of (apiVersion, kind), decoded with the field table of ``apiserver.protobuf_schema``.

JSON form, as Go's ``encoding/json`` writes these types:
- a Go value field (not a pointer) that holds its zero value ("" / 0 / false / empty list or
  map / zero Time / zero IntOrString) is left out, like ``omitempty``; empty nested structs
  stay ``{}``. Go pointers that are on the wire are kept even when zero (``replicas: 0``,
  ``automountServiceAccountToken: false``);
- ``Time`` -> "2026-01-01T00:00:00Z", ``MicroTime`` -> "2026-01-01T00:00:00.000000Z",
  ``Quantity`` -> its string, ``IntOrString`` -> int or str, bytes -> base64,
  ``FieldsV1``/``RawExtension`` -> the parsed JSON, embedded structs flattened.
Unknown field numbers of a known message are skipped (as protobuf does), logged at debug.
"""

from __future__ import annotations

import base64
import datetime
import json
import logging
from typing import Any, Iterator, Optional

from pkube.apiserver.protobuf_schema import KINDS, MESSAGES

log = logging.getLogger(__name__)

MAGIC = b"k8s\x00"
MEDIA_TYPE = "application/vnd.kubernetes.protobuf"

VARINT, FIXED64, LENGTH, FIXED32 = 0, 1, 2, 5
SCALAR_WIRE_TYPES = {"string": LENGTH, "bytes": LENGTH, "bool": VARINT, "int32": VARINT,
                     "int64": VARINT}
SPECIAL_TYPES = ("Time", "MicroTime", "Quantity", "IntOrString", "FieldsV1", "RawExtension")
EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)


class ProtobufError(ValueError):
    """The body is not a protobuf object we can decode: a 400 BadRequest."""


class UnsupportedKindError(ProtobufError):
    """Well-formed envelope, but a kind (or encoding) we have no schema for: a 415."""


def decode_protobuf(body: bytes) -> dict:
    """The JSON object (a new dict) that ``body``, a Kubernetes protobuf envelope, encodes.

    Raises ``ProtobufError`` (``UnsupportedKindError`` for kinds outside
    ``protobuf_schema.KINDS``) and no other exception, whatever the bytes.
    """
    if not isinstance(body, (bytes, bytearray, memoryview)):
        raise ProtobufError(f"protobuf body must be bytes, not {type(body).__name__}")
    body = bytes(body)
    if not body.startswith(MAGIC):
        raise ProtobufError("protobuf body does not start with the Kubernetes magic 'k8s\\x00'")
    try:
        return _decode_envelope(body[len(MAGIC):])
    except RecursionError:
        raise ProtobufError("protobuf body is nested too deeply") from None


def _decode_envelope(data: bytes) -> dict:
    """The object inside a ``runtime.Unknown`` message."""
    parts: dict = {}
    for number, wire_type, value in _read_wire(data, "runtime.Unknown"):
        if number in (1, 2, 3):
            parts[number] = _need_bytes(wire_type, value, "runtime.Unknown")
    type_meta = _decode_fields(parts.get(1, b""), {1: ("apiVersion", "string"),
                                                   2: ("kind", "string")}, "runtime.TypeMeta")
    api_version, kind = type_meta.get("apiVersion", ""), type_meta.get("kind", "")
    if not api_version or not kind:
        raise ProtobufError("protobuf envelope has no apiVersion/kind")
    if parts.get(3):
        encoding = _text(parts[3], "runtime.Unknown")
        raise UnsupportedKindError(f"protobuf contentEncoding {encoding!r} is not supported")
    message = KINDS.get((api_version, kind))
    if message is None:
        raise UnsupportedKindError(f"protobuf encoding is not supported for {kind} in "
                                   f"{api_version}: send it as application/json")
    obj = {"apiVersion": api_version, "kind": kind}
    obj.update(decode_message(parts.get(2, b""), message))
    return obj


def decode_message(data: bytes, message: str) -> dict:
    """The JSON dict of ``data`` encoded as ``message`` (a key of ``MESSAGES``)."""
    return _decode_fields(data, MESSAGES[message], message)


def _decode_fields(data: bytes, fields: dict, message: str) -> dict:
    """Decode every field of one message; later values of a non-repeated field win."""
    out: dict = {}
    for number, wire_type, raw in _read_wire(data, message):
        spec = fields.get(number)
        if spec is None:
            log.debug("protobuf %s: skipping unknown field %d", message, number)
            continue
        json_name, type_ = spec
        where = f"{message}.{json_name}"
        _set_field(out, json_name, type_, wire_type, raw, where)
    return out


def _set_field(out: dict, json_name: str, type_: str, wire_type: int, raw, where: str) -> None:
    """Store one wire occurrence of a field into ``out`` in its JSON form."""
    if type_.startswith("[]"):
        out.setdefault(json_name, []).extend(_repeated_values(type_[2:], wire_type, raw, where))
    elif type_.startswith("map["):
        key, value = _map_entry(type_, wire_type, raw, where)
        out.setdefault(json_name, {})[key] = value
    elif type_.startswith("inline "):
        out.update(_value(type_[len("inline "):], wire_type, raw, where))
    elif type_.startswith("*"):
        value = _value(type_[1:], wire_type, raw, where)
        _store(out, json_name, value, keep_zero=True)
    else:
        _store(out, json_name, _value(type_, wire_type, raw, where), keep_zero=False)


def _store(out: dict, json_name: str, value: Any, keep_zero: bool) -> None:
    """Set ``json_name``, or drop it when Go's JSON would not show it (null, or zero value
    of a non-pointer field)."""
    if value is None or (not keep_zero and _is_zero(value)):
        out.pop(json_name, None)
    else:
        out[json_name] = value


def _is_zero(value: Any) -> bool:
    """True for the zero values that ``omitempty`` leaves out (not ``{}``: Go keeps structs)."""
    return value in ("", 0, [], b"") and not isinstance(value, dict)


def _repeated_values(type_: str, wire_type: int, raw, where: str) -> list:
    """The element(s) of one occurrence of a repeated field: one, or several if packed."""
    if wire_type == LENGTH and type_ in ("int32", "int64", "bool"):
        return [_value(type_, VARINT, value, where) for value in _packed_varints(raw, where)]
    value = _value(type_, wire_type, raw, where)
    return [] if value is None else [value]


def _map_entry(type_: str, wire_type: int, raw, where: str) -> tuple[str, Any]:
    """(key, value) of one map entry message (key=1, value=2; missing means zero)."""
    key_type, _, value_type = type_[len("map["):].partition("]")
    if key_type != "string":
        raise ProtobufError(f"{where}: unsupported map key type {key_type}")
    entry = {}
    for number, entry_wire_type, entry_raw in _read_wire(_need_bytes(wire_type, raw, where),
                                                          where):
        if number in (1, 2):
            type_of_number = key_type if number == 1 else value_type
            entry[number] = _value(type_of_number, entry_wire_type, entry_raw, where)
    value = entry.get(2)
    if value is None:
        value = {"bytes": "", "string": "", "Quantity": "0"}.get(value_type, {})
    return entry.get(1, ""), value


def _value(type_: str, wire_type: int, raw, where: str) -> Any:
    """The JSON value of a single (non-repeated) occurrence; None means JSON null."""
    if type_ in SCALAR_WIRE_TYPES:
        return _scalar(type_, wire_type, raw, where)
    data = _need_bytes(wire_type, raw, where)
    if type_ in SPECIAL_TYPES:
        return special_value(type_, data, where)
    if type_ not in MESSAGES:
        raise ProtobufError(f"{where}: unsupported field type {type_}")
    return decode_message(data, type_)


def _scalar(type_: str, wire_type: int, raw, where: str) -> Any:
    """A string, base64 string, bool or int from its wire value."""
    if wire_type != SCALAR_WIRE_TYPES[type_]:
        raise ProtobufError(f"{where}: wire type {wire_type} does not fit a {type_}")
    if type_ == "string":
        return _text(raw, where)
    if type_ == "bytes":
        return base64.b64encode(raw).decode("ascii")
    if type_ == "bool":
        return raw != 0
    signed = raw - (1 << 64) if raw >= 1 << 63 else raw
    if type_ == "int32" and not -(1 << 31) <= signed < 1 << 31:
        raise ProtobufError(f"{where}: {signed} does not fit an int32")
    return signed


def special_value(type_: str, data: bytes, where: str = "value") -> Any:
    """The JSON form of an apimachinery type with its own encoding; None means null."""
    if type_ in ("Time", "MicroTime"):
        return _timestamp(data, micro=type_ == "MicroTime", where=where)
    if type_ == "Quantity":
        return _decode_fields(data, {1: ("string", "string")}, where).get("string", "")
    if type_ == "IntOrString":
        return _int_or_string(data, where)
    return _embedded_json(data, where)


def _timestamp(data: bytes, micro: bool, where: str) -> Optional[str]:
    """RFC 3339 in UTC (seconds for Time, microseconds for MicroTime); empty means zero time.

    Like apimachinery, Time drops the nanoseconds a protobuf client sent."""
    if not data:
        return None
    fields = _decode_fields(data, {1: ("seconds", "int64"), 2: ("nanos", "int32")}, where)
    seconds, nanos = fields.get("seconds", 0), fields.get("nanos", 0) if micro else 0
    if not 0 <= nanos < 1_000_000_000:
        raise ProtobufError(f"{where}: nanos {nanos} out of range")
    try:
        moment = EPOCH + datetime.timedelta(seconds=seconds, microseconds=nanos // 1000)
    except OverflowError:
        raise ProtobufError(f"{where}: time {seconds}s is out of range") from None
    fraction = f".{moment.microsecond:06d}" if micro else ""
    return f"{moment.year:04d}-{moment:%m-%dT%H:%M:%S}{fraction}Z"


def _int_or_string(data: bytes, where: str) -> Any:
    """intstr.IntOrString {type=1 (0 int, 1 string), intVal=2, strVal=3}."""
    fields = _decode_fields(data, {1: ("type", "int64"), 2: ("intVal", "int32"),
                                   3: ("strVal", "string")}, where)
    kind = fields.get("type", 0)
    if kind not in (0, 1):
        raise ProtobufError(f"{where}: IntOrString type {kind} is neither 0 (int) nor 1 (string)")
    return fields.get("intVal", 0) if kind == 0 else fields.get("strVal", "")


def _embedded_json(data: bytes, where: str) -> Any:
    """FieldsV1 / RawExtension {raw=1}: JSON bytes parsed; empty means null."""
    raw = b""
    for number, wire_type, value in _read_wire(data, where):
        if number == 1:
            raw = _need_bytes(wire_type, value, where)
    if not raw:
        return None
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as err:
        raise ProtobufError(f"{where}: embedded JSON is invalid: {err}") from None


def _text(raw: bytes, where: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ProtobufError(f"{where}: string is not valid UTF-8") from None


def _need_bytes(wire_type: int, raw, where: str) -> bytes:
    if wire_type != LENGTH:
        raise ProtobufError(f"{where}: wire type {wire_type} where a message or bytes was "
                            f"expected")
    return raw


def _read_wire(data: bytes, where: str) -> Iterator[tuple[int, int, Any]]:
    """(field number, wire type, value) of each field: an int for varint/fixed, bytes for
    length-delimited. Groups and truncated input are errors."""
    pos, end = 0, len(data)
    while pos < end:
        key, pos = _read_varint(data, pos, where)
        number, wire_type = key >> 3, key & 7
        if number == 0:
            raise ProtobufError(f"{where}: field number 0 is invalid")
        if wire_type == VARINT:
            value, pos = _read_varint(data, pos, where)
        elif wire_type == LENGTH:
            size, pos = _read_varint(data, pos, where)
            if size > end - pos:
                raise ProtobufError(f"{where}: field {number} runs past the end of the data")
            value, pos = data[pos:pos + size], pos + size
        elif wire_type in (FIXED64, FIXED32):
            width = 8 if wire_type == FIXED64 else 4
            if width > end - pos:
                raise ProtobufError(f"{where}: field {number} runs past the end of the data")
            value, pos = int.from_bytes(data[pos:pos + width], "little"), pos + width
        else:
            raise ProtobufError(f"{where}: unsupported wire type {wire_type} (field {number})")
        yield number, wire_type, value


def _read_varint(data: bytes, pos: int, where: str) -> tuple[int, int]:
    """A base-128 varint of at most 10 bytes (64 bits) at ``pos``, and the position after."""
    result = 0
    for shift in range(0, 70, 7):
        if pos >= len(data):
            raise ProtobufError(f"{where}: truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result & ((1 << 64) - 1), pos
    raise ProtobufError(f"{where}: varint longer than 10 bytes")


def _packed_varints(raw: bytes, where: str) -> Iterator[int]:
    pos = 0
    while pos < len(raw):
        value, pos = _read_varint(raw, pos, where)
        yield value
