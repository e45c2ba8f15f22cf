"""Container logs rotate past a size, keep a bounded number of files, and read as one."""

from __future__ import annotations

from pkube.runtime import logs


def line(n: int) -> bytes:
    return b'{"stream":"stdout","log":"line %d\\n","time":"2026-12-04T10:00:00.000000000Z"}\n' % n


def test_rotation_keeps_max_files_and_reading_spans_them(tmp_path):
    path = tmp_path / "container.log"
    for n in range(12):
        with open(path, "ab") as f:
            f.write(line(n))
        logs.rotate(path, max_bytes=len(line(0)) * 2, max_files=3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["container.log", "container.log.1", "container.log.2"]
    read = [e.data for e in logs.read(path)]
    assert read == [b"line %d\n" % n for n in range(6, 12)]   # the oldest went with the third rotation
    assert [e.data for e in logs.read(path, tail=2)] == [b"line 10\n", b"line 11\n"]


def test_a_small_log_is_left_alone(tmp_path):
    path = tmp_path / "container.log"
    path.write_bytes(line(1))
    assert logs.rotate(path, max_bytes=1024, max_files=5) is False
    assert not (tmp_path / "container.log.1").exists()
