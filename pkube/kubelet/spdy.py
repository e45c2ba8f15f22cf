"""SPDY/3.1 framing, sans I/O: what kubectl's port-forward speaks.

kubectl (1.31+) tunnels SPDY through a WebSocket (subprotocol
`SPDY/3.1+portforward.k8s.io`): the binary messages carry the SPDY byte stream, cut
anywhere. `Codec.feed(bytes)` returns the complete frames received so far; the
`Codec` methods named after frames return their bytes. Header blocks are zlib-compressed
with the SPDY/3 dictionary, one compression context per direction for the whole
connection, so the frames that carry one (SYN_REPLY) must be sent in the order they were
made. Flow control (SETTINGS, WINDOW_UPDATE) is parsed and ignored, as Kubernetes' own
SPDY library (spdystream) does.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field

VERSION = 3
SYN_STREAM, SYN_REPLY, RST_STREAM, SETTINGS, PING, GOAWAY, HEADERS, WINDOW_UPDATE = 1, 2, 3, 4, 6, 7, 8, 9
FLAG_FIN, FLAG_UNIDIRECTIONAL = 0x01, 0x02
PROTOCOL_ERROR, INVALID_STREAM, REFUSED_STREAM, CANCEL, INTERNAL_ERROR = 1, 2, 3, 5, 6
MAX_FRAME = (1 << 24) - 1
HEADER = struct.Struct(">II")

# The SPDY/3 header dictionary (draft 3, 2.6.10.1): length-prefixed words, then text.
_DICTIONARY_WORDS = (
    "options head post put delete trace accept accept-charset accept-encoding accept-language "
    "accept-ranges age allow authorization cache-control connection content-base content-encoding "
    "content-language content-length content-location content-md5 content-range content-type date "
    "etag expect expires from host if-match if-modified-since if-none-match if-range "
    "if-unmodified-since last-modified location max-forwards pragma proxy-authenticate "
    "proxy-authorization range referer retry-after server te trailer transfer-encoding upgrade "
    "user-agent vary via warning www-authenticate method get status".split()
    + ["200 OK"] + "version HTTP/1.1 url public set-cookie keep-alive origin".split())
_DICTIONARY_TAIL = (
    "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505"
    "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request"
    "401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented"
    "503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 "
    "Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,image/jpg,image/gif,"
    "application/xml,application/xhtml+xml,text/plain,text/javascript,publicprivatemax-age="
    "gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.")


def _pack_string(value: bytes) -> bytes:
    return struct.pack(">I", len(value)) + value


def _dictionary() -> bytes:
    return b"".join(_pack_string(w.encode()) for w in _DICTIONARY_WORDS) + _DICTIONARY_TAIL.encode()


DICTIONARY = _dictionary()


class ProtocolError(ValueError):
    """The peer sent something that is not SPDY/3.1; the connection cannot go on."""


@dataclass
class Frame:
    """One received frame. `kind` is a control type (SYN_STREAM, ...) or "data";
    `headers` maps lowercase names to values (several joined by NUL, as sent)."""

    kind: object
    stream_id: int = 0
    flags: int = 0
    data: bytes = b""
    headers: dict = field(default_factory=dict)
    status: int = 0          # RST_STREAM, GOAWAY
    ping_id: int = 0         # PING

    @property
    def fin(self) -> bool:
        return bool(self.flags & FLAG_FIN)


class Codec:
    """One side (the server's) of one SPDY connection."""

    def __init__(self):
        self._buffer = bytearray()
        self._inflate = zlib.decompressobj(zdict=DICTIONARY)
        self._deflate = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS, 9, zlib.Z_DEFAULT_STRATEGY, DICTIONARY)

    # ----- reading -----

    def feed(self, data: bytes) -> list[Frame]:
        """The frames completed by `data`; raises ProtocolError on a malformed stream."""
        self._buffer += data
        frames = []
        while len(self._buffer) >= HEADER.size:
            first, second = HEADER.unpack_from(self._buffer)
            length = second & MAX_FRAME
            if len(self._buffer) < HEADER.size + length:
                break
            body = bytes(self._buffer[HEADER.size:HEADER.size + length])
            del self._buffer[:HEADER.size + length]
            flags = second >> 24
            if first & 0x80000000:
                frame = self._control((first >> 16) & 0x7FFF, first & 0xFFFF, flags, body)
                if frame is not None:
                    frames.append(frame)
            else:
                frames.append(Frame("data", stream_id=first & 0x7FFFFFFF, flags=flags, data=body))
        return frames

    def _control(self, version: int, kind: int, flags: int, body: bytes) -> Frame | None:
        if version != VERSION:
            raise ProtocolError(f"SPDY version {version}: only {VERSION} is spoken here")
        try:
            if kind == SYN_STREAM:
                stream_id = struct.unpack_from(">I", body)[0] & 0x7FFFFFFF
                return Frame(kind, stream_id, flags, headers=self._headers(body[10:]))
            if kind in (SYN_REPLY, HEADERS):
                stream_id = struct.unpack_from(">I", body)[0] & 0x7FFFFFFF
                return Frame(kind, stream_id, flags, headers=self._headers(body[4:]))
            if kind == RST_STREAM:
                stream_id, status = struct.unpack_from(">II", body)
                return Frame(kind, stream_id & 0x7FFFFFFF, flags, status=status)
            if kind == PING:
                return Frame(kind, flags=flags, ping_id=struct.unpack_from(">I", body)[0])
            if kind == GOAWAY:
                last, status = struct.unpack_from(">II", body)
                return Frame(kind, last & 0x7FFFFFFF, flags, status=status)
        except struct.error:
            raise ProtocolError(f"control frame of type {kind} too short ({len(body)} bytes)") from None
        return None   # SETTINGS, WINDOW_UPDATE, unknown types: ignored

    def _headers(self, block: bytes) -> dict:
        """Decompress and parse a header block (the shared context advances)."""
        try:
            raw = self._inflate.decompress(block)
            count = struct.unpack_from(">I", raw)[0]
            offset, headers = 4, {}
            for _ in range(count):
                name, offset = _string(raw, offset)
                value, offset = _string(raw, offset)
                headers[name.decode("latin-1").lower()] = value.decode("latin-1")
        except (zlib.error, struct.error, IndexError) as exc:
            raise ProtocolError(f"bad header block: {exc}") from None
        return headers

    # ----- writing -----

    def syn_reply(self, stream_id: int, headers: dict | None = None, fin: bool = False) -> bytes:
        return self._control_bytes(SYN_REPLY, FLAG_FIN if fin else 0,
                                   struct.pack(">I", stream_id) + self._header_block(headers or {}))

    def rst_stream(self, stream_id: int, status: int) -> bytes:
        return self._control_bytes(RST_STREAM, 0, struct.pack(">II", stream_id, status))

    def ping(self, ping_id: int) -> bytes:
        return self._control_bytes(PING, 0, struct.pack(">I", ping_id))

    def goaway(self, last_stream_id: int, status: int = 0) -> bytes:
        return self._control_bytes(GOAWAY, 0, struct.pack(">II", last_stream_id, status))

    def data(self, stream_id: int, payload: bytes = b"", fin: bool = False) -> bytes:
        """One DATA frame (callers keep payloads under MAX_FRAME)."""
        return HEADER.pack(stream_id & 0x7FFFFFFF, ((FLAG_FIN if fin else 0) << 24) | len(payload)) + payload

    def _control_bytes(self, kind: int, flags: int, body: bytes) -> bytes:
        return HEADER.pack(0x80000000 | (VERSION << 16) | kind, (flags << 24) | len(body)) + body

    def _header_block(self, headers: dict) -> bytes:
        raw = struct.pack(">I", len(headers)) + b"".join(
            _pack_string(name.lower().encode("latin-1")) + _pack_string(str(value).encode("latin-1"))
            for name, value in headers.items())
        return self._deflate.compress(raw) + self._deflate.flush(zlib.Z_SYNC_FLUSH)


def _string(raw: bytes, offset: int) -> tuple[bytes, int]:
    length = struct.unpack_from(">I", raw, offset)[0]
    end = offset + 4 + length
    if end > len(raw):
        raise IndexError("header string past the end of the block")
    return raw[offset + 4:end], end
