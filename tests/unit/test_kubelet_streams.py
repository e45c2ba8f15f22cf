"""The channel protocol of exec, attach and portForward (kubelet.streams): framing in the
binary and base64 flavours, the error channel's Status, resize and port messages."""

from __future__ import annotations

import json

import pytest

from pkube.kubectl.streams import exit_code_of
from pkube.kubelet import streams
from pkube.kubelet.streams import Channels, FrameError


@pytest.mark.parametrize("offered, supported, chosen", [
    (["v5.channel.k8s.io", "v4.channel.k8s.io"], streams.EXEC_PROTOCOLS, "v5.channel.k8s.io"),
    (["v4.channel.k8s.io", "v5.channel.k8s.io"], streams.EXEC_PROTOCOLS, "v4.channel.k8s.io"),
    (["SPDY/3.1+portforward.k8s.io", "v4.channel.k8s.io"], streams.PORT_FORWARD_PROTOCOLS, "v4.channel.k8s.io"),
    (["v5.channel.k8s.io"], streams.PORT_FORWARD_PROTOCOLS, None),
    ([], streams.EXEC_PROTOCOLS, ""),
])
def test_negotiation_takes_the_clients_first_supported_protocol(offered, supported, chosen):
    assert streams.negotiate(offered, supported) == chosen


def test_binary_frames_carry_the_channel_in_the_first_byte():
    channels = Channels("v5.channel.k8s.io")
    assert channels.encode(streams.STDOUT, b"hi\n") == b"\x01hi\n"
    assert channels.decode(b"\x00typed") == (streams.STDIN, b"typed")
    assert channels.decode(b"\xff\x00") == (streams.CLOSE, b"\x00")
    assert channels.decode(b"\x04") == (streams.RESIZE, b"")


def test_base64_frames_are_text_with_a_digit_channel():
    channels = Channels("v4.base64.channel.k8s.io")
    message = channels.encode(streams.STDERR, b"\x00\xffbinary")
    assert isinstance(message, str) and message[0] == "2"
    assert channels.decode(message) == (streams.STDERR, b"\x00\xffbinary")
    with pytest.raises(FrameError):
        channels.decode("0not base64!")
    with pytest.raises(FrameError):
        channels.decode("xAAAA")


def test_an_empty_message_has_no_channel():
    for protocol in ("v5.channel.k8s.io", "base64.channel.k8s.io"):
        with pytest.raises(FrameError):
            Channels(protocol).decode(b"" if "base64" not in protocol else "")


@pytest.mark.parametrize("protocol, version, status_json, has_close", [
    ("v5.channel.k8s.io", 5, True, True),
    ("v4.base64.channel.k8s.io", 4, True, False),
    ("channel.k8s.io", 1, False, False),
    ("portforward.k8s.io", 1, False, False),
    ("", 1, False, False),
])
def test_protocol_versions(protocol, version, status_json, has_close):
    channels = Channels(protocol)
    assert (channels.version, channels.status_json, channels.has_close) == (version, status_json, has_close)


@pytest.mark.parametrize("code", [0, 1, 3, 127, 255])
def test_the_exit_status_gives_kubectl_the_exit_code(code):
    status = json.loads(streams.error_payload(Channels("v5.channel.k8s.io"), streams.exit_status(code)))
    assert exit_code_of(status) == code   # pkubectl's reading, as kubectl's
    if code:
        assert status["reason"] == "NonZeroExitCode"
        assert status["details"]["causes"] == [{"reason": "ExitCode", "message": str(code)}]


def test_before_v4_the_error_channel_carries_only_a_failures_text():
    old = Channels("channel.k8s.io")
    assert streams.error_payload(old, streams.exit_status(0)) is None
    assert streams.error_payload(old, streams.failure_status("container gone")) == b"container gone"


def test_resize_messages():
    assert streams.parse_resize(b'{"Width": 120, "Height": 40}') == (40, 120)
    for bad in (b"{}", b"not json", b'{"Width": "x", "Height": 1}', b'{"Width": -1, "Height": 1}'):
        with pytest.raises(FrameError):
            streams.parse_resize(bad)


def test_query_flags_read_as_kubernetes_reads_them():
    params = {"follow": "", "stdin": "true", "tty": "1", "stderr": "false", "stdout": "0"}
    assert [streams.query_flag(params, name) for name in ("follow", "stdin", "tty", "stderr", "stdout")] == \
        [True, True, True, False, False]
    assert streams.query_flag({}, "stdout", default=True) is True


def test_ports_of_a_port_forward():
    assert streams.parse_ports(["8080", "80,443"]) == [8080, 80, 443]
    for bad in ([], ["0"], ["65536"], ["http"], ["80,"]):
        with pytest.raises(ValueError):
            streams.parse_ports(bad)
    assert streams.port_prefix(8080) == bytes([0x90, 0x1F])
    assert [streams.port_channels(i) for i in range(3)] == [(0, 1), (2, 3), (4, 5)]


def test_exec_stream_options_default_to_output_and_refuse_nothing_at_all():
    from pkube.kubelet.remotecommand import StreamOptions
    assert StreamOptions.from_query({}) == StreamOptions(stdin=False, stdout=True, stderr=True, tty=False)
    assert StreamOptions.from_query({"tty": "true", "stdin": "true"}).stderr is False   # a tty has one output
    with pytest.raises(ValueError, match="at least 1 of stdin, stdout, stderr"):
        StreamOptions.from_query({"stdout": "false", "stderr": "false"})


# ----- SPDY/3.1, as kubectl port-forward tunnels it -----

def client_syn_stream(deflate, stream_id: int, headers: dict, fin: bool = False) -> bytes:
    """A SYN_STREAM as a client writes it (header block on the client's own zlib context)."""
    import struct
    import zlib
    raw = struct.pack(">I", len(headers)) + b"".join(
        struct.pack(">I", len(k)) + k.encode() + struct.pack(">I", len(v)) + v.encode() for k, v in headers.items())
    block = deflate.compress(raw) + deflate.flush(zlib.Z_SYNC_FLUSH)
    body = struct.pack(">IIBB", stream_id, 0, 0, 0) + block
    return struct.pack(">II", 0x80030001, (int(fin) << 24) | len(body)) + body


def client_deflate():
    import zlib
    from pkube.kubelet.spdy import DICTIONARY
    return zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS, 9, zlib.Z_DEFAULT_STRATEGY, DICTIONARY)


def test_spdy_dictionary_is_the_spdy3_one():
    import hashlib
    from pkube.kubelet.spdy import DICTIONARY
    assert len(DICTIONARY) == 1423
    assert hashlib.sha256(DICTIONARY).hexdigest() == "51d27341373f923f3cd88e1eb7162aeaa3723d7585ff2399201dc06498407f02"


def test_spdy_frames_cut_anywhere_are_reassembled_and_headers_share_one_context():
    from pkube.kubelet import spdy
    deflate = client_deflate()
    wire = (client_syn_stream(deflate, 1, {"streamtype": "error", "port": "8080", "requestid": "0"}, fin=True)
            + client_syn_stream(deflate, 3, {"streamtype": "data", "port": "8080", "requestid": "0"})
            + spdy.Codec().data(3, b"GET / HTTP/1.0\r\n\r\n", fin=True))
    codec, frames = spdy.Codec(), []
    for i in range(0, len(wire), 7):   # as WebSocket messages may cut it
        frames += codec.feed(wire[i:i + 7])
    assert [(f.kind, f.stream_id, f.fin) for f in frames] == [(spdy.SYN_STREAM, 1, True), (spdy.SYN_STREAM, 3, False),
                                                             ("data", 3, True)]
    assert frames[1].headers == {"streamtype": "data", "port": "8080", "requestid": "0"}
    assert frames[2].data == b"GET / HTTP/1.0\r\n\r\n"


def test_spdy_replies_pings_and_resets_read_back():
    import struct
    import zlib
    from pkube.kubelet import spdy
    server, reader = spdy.Codec(), spdy.Codec()
    frames = reader.feed(server.syn_reply(5) + server.ping(7) + server.rst_stream(5, spdy.CANCEL)
                         + server.goaway(5))
    assert [(f.kind, f.stream_id) for f in frames] == [(spdy.SYN_REPLY, 5), (spdy.PING, 0), (spdy.RST_STREAM, 5),
                                                       (spdy.GOAWAY, 5)]
    assert frames[0].headers == {} and frames[1].ping_id == 7 and frames[2].status == spdy.CANCEL
    # a client's own zlib context reads our header blocks: a second reply continues the first
    server, inflate = spdy.Codec(), zlib.decompressobj(zdict=spdy.DICTIONARY)
    for stream_id in (7, 9):
        reply = server.syn_reply(stream_id, {"x": "y"})
        assert inflate.decompress(reply[12:]) == struct.pack(">I", 1) + b"\0\0\0\x01x\0\0\0\x01y"


def test_spdy_ignores_flow_control_and_refuses_other_versions():
    import struct
    from pkube.kubelet import spdy
    settings = struct.pack(">II", 0x80030004, 4) + struct.pack(">I", 0)
    assert spdy.Codec().feed(settings) == []
    with pytest.raises(spdy.ProtocolError, match="version 2"):
        spdy.Codec().feed(struct.pack(">II", 0x80020006, 4) + b"\0\0\0\1")


def test_spdy_port_forward_streams_pair_by_request_id_or_stream_ids():
    from pkube.kubelet.spdyforward import pair_key, stream_port
    assert pair_key({"streamtype": "data", "requestid": "4"}, 9) == "4"
    assert pair_key({"streamtype": "error"}, 1) == pair_key({"streamtype": "data"}, 3) == "1"
    assert stream_port({"port": "8080"}) == 8080
    for bad in ({}, {"port": "0"}, {"port": "x"}, {"port": "70000"}):
        with pytest.raises(ValueError):
            stream_port(bad)
