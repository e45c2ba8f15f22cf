"""The AtomicWriter's layout, its change detection, its path checks and its recovery from
a writer that died half-way."""

from __future__ import annotations

import os
import stat
import threading
import time

import pytest

from pkube.kubelet.atomicwriter import AtomicWriter, FileProjection, PayloadError, validate_path


def files(**contents: bytes) -> dict[str, FileProjection]:
    return {k.replace("__", "/"): FileProjection(v, 0o644) for k, v in contents.items()}


def entries(target) -> list[str]:
    return sorted(os.listdir(target))


def test_first_write_makes_the_layout(tmp_path):
    writer = AtomicWriter(str(tmp_path))
    assert writer.current() is None
    assert writer.write(files(a=b"1", conf__app__x_ini=b"2")) is True
    data = writer.current()
    assert data.startswith("..") and len(data.split(".")) == 4     # ..YYYY_mm_dd_HH_MM_SS.random
    assert entries(tmp_path) == sorted(["..data", data, "a", "conf"])
    assert os.readlink(tmp_path / "conf") == "..data/conf"
    assert (tmp_path / "conf" / "app" / "x_ini").read_bytes() == b"2"
    assert stat.S_IMODE(os.stat(tmp_path / data).st_mode) == 0o755


def test_modes_are_exact_whatever_the_umask(tmp_path):
    old = os.umask(0o077)
    try:
        AtomicWriter(str(tmp_path)).write({"a": FileProjection(b"x", 0o664), "d/b": FileProjection(b"y", 0o444)})
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "a").st_mode) == 0o664
    assert stat.S_IMODE(os.stat(tmp_path / "d" / "b").st_mode) == 0o444
    assert stat.S_IMODE(os.stat(tmp_path / "d").st_mode) == 0o755


def test_an_identical_payload_writes_nothing_and_any_difference_swaps(tmp_path):
    writer = AtomicWriter(str(tmp_path))
    writer.write(files(a=b"1", b=b"2"))
    first = writer.current()
    assert writer.write(files(a=b"1", b=b"2")) is False and writer.current() == first
    for payload in (files(a=b"1"), files(a=b"1", b=b"3"), {"a": FileProjection(b"1", 0o600)}):
        assert writer.write(payload) is True
        assert writer.current() != first and not os.path.exists(tmp_path / first)
        first = writer.current()


def test_names_that_leave_the_payload_lose_their_link_other_entries_stay(tmp_path):
    writer = AtomicWriter(str(tmp_path))
    writer.write(files(a=b"1", d__x=b"2"))
    (tmp_path / "made-by-a-subpath").mkdir()
    writer.write(files(b=b"3"))
    assert entries(tmp_path) == sorted(["..data", writer.current(), "b", "made-by-a-subpath"])


def test_a_writer_that_died_half_way_is_cleaned_up_by_the_next_write(tmp_path):
    writer = AtomicWriter(str(tmp_path))
    writer.write(files(a=b"1"))
    (tmp_path / "..2026_01_01_00_00_00.dead").mkdir()
    os.symlink("..2026_01_01_00_00_00.dead", tmp_path / "..data_tmp")
    assert writer.write(files(a=b"2")) is True
    assert entries(tmp_path) == sorted(["..data", writer.current(), "a"])
    assert (tmp_path / "a").read_bytes() == b"2"


@pytest.mark.parametrize("path, message", [
    ("", "must not be empty"),
    ("/etc/passwd", "must be relative path: /etc/passwd"),
    ("a/../../b", "must not contain '..': a/../../b"),
    ("..data", "must not start with '..': ..data"),
    ("x" * 256, "filenames must be less than or equal to 255 characters"),
    ("a/" * 2049, "must be less than or equal to 4096 characters"),
])
def test_paths_that_could_escape_or_clash_are_refused(tmp_path, path, message):
    with pytest.raises(PayloadError, match="invalid path: " + message.replace("(", r"\(")):
        validate_path(path)
    with pytest.raises(PayloadError):
        AtomicWriter(str(tmp_path)).write({path: FileProjection(b"x", 0o644)})
    assert entries(tmp_path) == []


def test_a_concurrent_reader_only_ever_sees_whole_sets(tmp_path):
    """A reader resolving `..data` once reads a whole set, never a mix or a partial file,
    while sets are swapped under it (the writer waits for the reader to catch up with each
    generation, so the reads overlap the next write)."""
    writer = AtomicWriter(str(tmp_path))
    size = 256 * 1024

    def generation(n: int) -> dict[str, FileProjection]:
        return {"a": FileProjection(bytes([n]) * size, 0o644), "b": FileProjection(bytes([n]) * size, 0o644)}
    writer.write(generation(0))
    latest, problems, done = [0], [], threading.Event()

    def read_sets():
        while not done.is_set():
            try:
                data = os.open(tmp_path / "..data", os.O_RDONLY | os.O_DIRECTORY)   # resolve the set once
                try:
                    a, b = (_read_at(data, name) for name in ("a", "b"))
                finally:
                    os.close(data)
            except FileNotFoundError:   # that set was removed while we read it: try the next
                continue
            if a == b and len(a) == size and a == a[:1] * size:
                latest[0] = max(latest[0], a[0])
            else:
                problems.append((len(a), len(b), a[:1], b[:1]))
    reader = threading.Thread(target=read_sets)
    reader.start()
    try:
        for n in range(1, 40):
            writer.write(generation(n))
            deadline = time.monotonic() + 30
            while latest[0] < n and not problems:
                assert time.monotonic() < deadline, f"the reader never saw generation {n}"
                time.sleep(0.001)
    finally:
        done.set()
        reader.join()
    assert problems == []


def _read_at(dir_fd: int, name: str) -> bytes:
    fd = os.open(name, os.O_RDONLY, dir_fd=dir_fd)
    with os.fdopen(fd, "rb") as f:
        return f.read()
