"""pdocker as a user drives it: Docker's verbs, flags, output and exit codes."""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import time

import pytest

pytestmark = pytest.mark.root


def test_run_rm_echo_prints_and_leaves_nothing(pdocker):
    result = pdocker("run", "--rm", "--network", "none", "busybox", "echo", "hi")
    assert result.stdout == "hi\n" and result.returncode == 0
    assert pdocker("ps", "-a", "-q").stdout == ""


def test_run_returns_the_containers_exit_code_and_separates_streams(pdocker):
    result = pdocker("run", "--network", "none", "--name", "fails", "busybox",
                     "sh", "-c", "echo out; echo err >&2; exit 7", check=False)
    assert (result.returncode, result.stdout, result.stderr) == (7, "out\n", "err\n")
    assert "Exited (7)" in pdocker("ps", "-a").stdout


def test_run_missing_command_exits_127_with_one_line(pdocker):
    result = pdocker("run", "--rm", "--network", "none", "busybox", "no-such-cmd", check=False)
    assert result.returncode == 127
    assert result.stderr.strip().count("\n") == 0 and "executable file not found" in result.stderr


def test_errors_are_one_line_exit_125_without_traceback(pdocker):
    for args in (("start", "nonexistent"), ("run", "--bogus-flag", "busybox"), ("frobnicate",),
                 ("run", "--network", "none", "-m", "lots", "busybox", "true"),
                 ("inspect", "nothing-here"), ("logs", "nothing-here")):
        result = pdocker(*args, check=False)
        assert result.returncode in (1, 125), (args, result.returncode)
        assert "Traceback" not in result.stderr
        assert result.stderr.startswith("pdocker: error: "), (args, result.stderr)
        assert result.stderr.count("\n") == 1, (args, result.stderr)
    missing = pdocker("run", "--network", "none", "localhost:1/no-such-image:1", "true", check=False)
    assert missing.returncode == 125 and "Traceback" not in missing.stderr
    assert missing.stderr.splitlines() == [
        "Unable to find image 'localhost:1/no-such-image:1' locally",
        missing.stderr.splitlines()[1]] and missing.stderr.splitlines()[1].startswith("pdocker: error: ")


def test_detached_lifecycle_ps_inspect_logs_exec_top_stats_stop_start_rm(pdocker):
    cid = pdocker("run", "-d", "--name", "web", "--network", "none", "-e", "COLOR=blue", "-l", "tier=front",
                  "-h", "webhost", "busybox", "sh", "-c",
                  "trap 'exit 0' TERM; echo started; while true; do sleep 0.1; done").stdout.strip()
    assert len(cid) == 64
    lines = pdocker("ps").stdout.splitlines()
    assert lines[0].split() == ["CONTAINER", "ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"]
    assert lines[1].startswith(cid[:12]) and " Up " in lines[1] and lines[1].endswith("web")
    assert pdocker("ps", "-q", "--filter", "label=tier=front").stdout.split() == [cid[:12]]
    doc = json.loads(pdocker("inspect", "web").stdout)[0]
    assert doc["Id"] == cid and doc["Name"] == "/web" and doc["State"]["Running"]
    assert doc["State"]["Status"] == "running" and doc["State"]["Pid"] > 0
    assert "COLOR=blue" in doc["Config"]["Env"] and doc["Config"]["Labels"] == {"tier": "front"}
    lower = doc["GraphDriver"]["Data"]["LowerDir"].split(":")
    assert lower[0].endswith("/init") and doc["GraphDriver"]["Name"] == "overlay2"
    assert doc["GraphDriver"]["Data"]["UpperDir"].endswith("/upper")
    for _ in range(300):
        if pdocker("logs", "web").stdout:
            break
        time.sleep(0.05)
    assert pdocker("logs", "web").stdout == "started\n"
    stamped = pdocker("logs", "-t", "--tail", "1", "web").stdout
    assert stamped.endswith(" started\n") and stamped[:4].isdigit() and "T" in stamped.split()[0]
    result = pdocker("exec", "-e", "X=1", "-w", "/etc", "-u", "nobody", "web", "sh", "-c",
                     "echo $COLOR $X $(pwd) $(id -u) $(hostname); exit 5", check=False)
    assert (result.returncode, result.stdout) == (5, "blue 1 /etc 65534 webhost\n")
    top = pdocker("top", "web").stdout.splitlines()
    assert top[0].split()[:3] == ["UID", "PID", "PPID"] and any("while true" in l for l in top[1:])
    stats = pdocker("stats", "--no-stream").stdout.splitlines()
    assert stats[0].startswith("CONTAINER ID") and "MEM USAGE / LIMIT" in stats[0]
    assert stats[1].startswith(cid[:12])
    assert pdocker("rm", "web", check=False).returncode != 0
    assert pdocker("stop", "-t", "5", "web").stdout == "web\n"
    state = json.loads(pdocker("inspect", cid[:10]).stdout)[0]["State"]
    assert (state["Status"], state["ExitCode"], state["Running"]) == ("exited", 0, False)
    assert state["FinishedAt"] > state["StartedAt"]
    pdocker("start", "web")
    pdocker("kill", "-s", "KILL", "web")
    assert pdocker("wait", "web").stdout == "137\n"
    assert pdocker("inspect", "-f", "{{.State.ExitCode}}", "web").stdout.strip() == "137"
    pdocker("restart", "-t", "1", "web")
    assert pdocker("inspect", "-f", "{{.State.Running}}", "web").stdout.strip() == "true"
    for _ in range(300):
        if pdocker("logs", "web").stdout.count("started") >= 2:
            break
        time.sleep(0.05)
    assert pdocker("logs", "web").stdout.count("started") >= 2   # one log across restarts
    assert pdocker("rm", "-f", "web").stdout == "web\n"
    assert pdocker("ps", "-a", "-q").stdout == ""


def test_create_then_start_attach_and_wait(pdocker):
    cid = pdocker("create", "--network", "none", "busybox", "echo", "created").stdout.strip()
    assert "Created" in pdocker("ps", "-a").stdout
    result = pdocker("start", "-a", cid)
    assert result.stdout == "created\n"
    pdocker("run", "-d", "--name", "later", "--network", "none", "busybox", "sh", "-c", "sleep 0.5; exit 4")
    assert pdocker("wait", "later").stdout == "4\n"


def test_run_interactive_stdin_without_tty(pdocker):
    result = pdocker("run", "-i", "--rm", "--network", "none", "busybox", "sh", "-c", "tr a-z A-Z",
                     input="shout\n")
    assert result.stdout == "SHOUT\n"


def test_cp_both_directions(pdocker, tmp_path):
    pdocker("run", "-d", "--name", "box", "--network", "none", "busybox", "sleep", "1000")
    (tmp_path / "in.txt").write_text("payload")
    pdocker("cp", str(tmp_path / "in.txt"), "box:/tmp/")
    assert pdocker("exec", "box", "cat", "/tmp/in.txt").stdout == "payload"
    pdocker("cp", "box:/etc/passwd", str(tmp_path / "out"))
    assert (tmp_path / "out").read_text().startswith("root:")
    pdocker("rm", "-f", "box")


def test_commit_diff_export_and_run_the_new_image(pdocker, tmp_path):
    pdocker("run", "--name", "base", "--network", "none", "busybox", "sh", "-c", "rm /etc/group; echo hi > /greeting")
    assert set(pdocker("diff", "base").stdout.splitlines()) >= {"D /etc/group", "A /greeting"}
    image_id = pdocker("commit", "base", "greeted:v1").stdout.strip()
    assert image_id.startswith("sha256:")
    pdocker("export", "-o", str(tmp_path / "fs.tar"), "base")
    import tarfile
    names = tarfile.open(tmp_path / "fs.tar").getnames()
    assert any(n.endswith("greeting") for n in names)
    result = pdocker("run", "--rm", "--network", "none", "greeted:v1", "sh", "-c", "cat /greeting; ls /etc/group",
                     check=False)
    assert result.stdout == "hi\n" and result.returncode == 1
    pdocker("rm", "base")
    pdocker("rmi", "greeted:v1")


def test_build_and_run(pdocker, tmp_path):
    (tmp_path / "Dockerfile").write_text(
        "FROM busybox\nRUN echo built > /built\nENV WHO=pkube\nCMD [\"sh\", \"-c\", \"cat /built; echo $WHO\"]\n")
    pdocker("build", "-t", "built:1", str(tmp_path))
    assert pdocker("run", "--rm", "--network", "none", "built:1").stdout == "built\npkube\n"
    pdocker("rmi", "built:1")


def test_info_and_version(pdocker):
    info = pdocker("info").stdout
    assert "Storage Driver: overlay2" in info and f"Docker Root Dir: {pdocker.root}" in info
    assert "Version:" in pdocker("version").stdout


def _read_until(fd: int, needle: bytes, timeout: float = 20) -> bytes:
    data = b""
    deadline = time.monotonic() + timeout
    while needle not in data:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"did not see {needle!r} in {data!r}")
        ready, _, _ = select.select([fd], [], [], remaining)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            data += chunk
    return data


def test_run_it_through_a_real_pty(pdocker):
    master, slave = pty.openpty()
    import fcntl
    import struct
    import termios
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 101, 0, 0))
    proc = subprocess.Popen(pdocker.cmd + ["run", "-it", "--rm", "--network", "none", "busybox", "sh"],
                            stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
    os.close(slave)
    try:
        _read_until(master, b"# ")
        os.write(master, b"stty size; tty; echo $((6*7))\r")
        # The line editor asks for the cursor position once it reads the terminal raw:
        # an EOF typed before that would be swallowed by the switch out of canonical mode.
        seen = _read_until(master, b"42\r\n/ # \x1b[6n")
        assert b"/dev/pts/0" in seen and b"33 101" in seen
        os.write(master, b"\x04")
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    assert pdocker("ps", "-a", "-q").stdout == ""


def test_exec_it_through_a_real_pty(pdocker):
    pdocker("run", "-d", "--name", "shell", "--network", "none", "busybox", "sleep", "1000")
    master, slave = pty.openpty()
    proc = subprocess.Popen(pdocker.cmd + ["exec", "-it", "shell", "sh"],
                            stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
    os.close(slave)
    try:
        _read_until(master, b"# ")
        os.write(master, b"exit 3\r")
        assert proc.wait(timeout=20) == 3
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    pdocker("rm", "-f", "shell")


def test_foreground_run_survives_sigkill_of_pdocker(pdocker):
    proc = subprocess.Popen(pdocker.cmd + ["run", "--name", "orphan", "--network", "none", "busybox", "sh", "-c",
                                           "echo up; sleep 1000"], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline() == "up\n"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert "Up" in pdocker("ps").stdout
    pdocker("kill", "orphan")
    assert pdocker("wait", "orphan").stdout == "137\n"
    assert pdocker("inspect", "-f", "{{.State.ExitCode}}", "orphan").stdout.strip() == "137"
    assert pdocker("logs", "orphan").stdout == "up\n"
    pdocker("rm", "orphan")


def test_run_rm_busybox_echo_on_a_fresh_root(tmp_path):
    """Nothing set up on the root: the shim is the installed one (or compiled into the root when
    the checkout has none built) and busybox is imported from the host on first use."""
    import secrets
    import sys
    from pathlib import Path
    from pkube.runtime import helpers
    from tests.system.conftest import CLI_ENV, REPO, teardown_root
    root, parent = tmp_path / "fresh", f"pkube-test-{secrets.token_hex(4)}"
    try:
        result = subprocess.run([sys.executable, "-m", "pkube.pdocker", "--root", str(root), "--cgroup-parent", parent,
                                 "run", "--rm", "--network", "none", "busybox", "echo", "hi"],
                                capture_output=True, text=True, cwd=REPO, env=CLI_ENV, timeout=120)
        assert (result.returncode, result.stdout) == (0, "hi\n"), result.stderr
        assert (root / "images").is_dir()
        assert any((root / "bin").iterdir()) if (root / "bin").exists() else any(Path(helpers.installed_dir()).iterdir())
    finally:
        assert not teardown_root(root, parent)
