"""Dockerfile builds: filesystem steps make layers, config steps don't, the cache reuses steps."""

from __future__ import annotations

import gzip
import io
import os
import tarfile

import pytest
from pathlib import Path

from pkube.runtime.build import BuildError, build
from pkube.runtime.dockerfile import DockerfileError
from pkube.runtime.imagestore import ImageStore
from pkube.runtime.layertree import lookup

pytestmark = pytest.mark.root

DOCKERFILE = """\
ARG VERSION=1
FROM busybox
ARG VERSION
ARG WHO=world
ENV APP_HOME=/srv/app \\
    GREETING="hello $WHO"
WORKDIR $APP_HOME
COPY hello.txt ./
COPY conf/ /etc/app/
COPY note.txt /tmp/
ADD bundle.tar.gz /opt/bundle/
LABEL version=$VERSION
EXPOSE 8080
USER nobody
CMD ["cat", "hello.txt"]
"""


@pytest.fixture
def store(tmp_path):
    return ImageStore(tmp_path / "images")


@pytest.fixture
def context(tmp_path):
    ctx = tmp_path / "ctx"
    (ctx / "conf/sub").mkdir(parents=True)
    (ctx / "Dockerfile").write_text(DOCKERFILE)
    (ctx / "hello.txt").write_text("hello from the build\n")
    (ctx / "note.txt").write_text("note\n")
    (ctx / "conf/app.ini").write_text("[app]\n")
    (ctx / "conf/sub/deep.ini").write_text("deep\n")
    os.chmod(ctx / "conf/app.ini", 0o600)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        data = b"from a tarball\n"
        info = tarfile.TarInfo("inner/readme")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    (ctx / "bundle.tar.gz").write_bytes(gzip.compress(buf.getvalue()))
    return ctx


def run_build(store, ctx, **kwargs):
    lines: list[str] = []
    image = build(store, ctx, None, kwargs.pop("tag", "app:1"), progress=lines.append, **kwargs)
    return image, lines


def read(image, path: str) -> str:
    found = lookup(image.layer_dirs, path)
    assert found is not None and isinstance(found, str), f"{path} not in the image"
    return Path(found).read_text()


def test_build_makes_one_layer_per_filesystem_step(store, context):
    image, lines = run_build(store, context, build_args={"VERSION": "7"})
    base = store.get("busybox")
    assert len(image.diff_ids) == len(base.diff_ids) + 5  # WORKDIR, 3 COPY, ADD
    assert image.repo_tags == ["app:1"] and lines[-1] == "Successfully tagged app:1"
    cfg = image.config
    assert cfg["WorkingDir"] == "/srv/app" and cfg["User"] == "nobody"
    assert "GREETING=hello world" in cfg["Env"] and cfg["Labels"] == {"version": "7"}
    assert cfg["ExposedPorts"] == {"8080/tcp": {}} and cfg["Cmd"] == ["cat", "hello.txt"]
    assert read(image, "/srv/app/hello.txt") == "hello from the build\n"
    assert read(image, "/etc/app/sub/deep.ini") == "deep\n"
    assert oct(os.stat(lookup(image.layer_dirs, "/etc/app/app.ini")).st_mode & 0o777) == "0o600"
    assert read(image, "/opt/bundle/inner/readme") == "from a tarball\n"
    tmp_in_copy_layer = os.path.join(image.layer_dirs[-2], "tmp")
    assert oct(os.stat(tmp_in_copy_layer).st_mode & 0o7777) == "0o1777"  # /tmp keeps its mode
    assert read(image, "/etc/passwd").startswith("root:")
    assert [i.repo_tags for i in store.list()] == [["app:1"], ["busybox:latest"]]


def test_unchanged_steps_come_from_the_cache(store, context):
    first, _ = run_build(store, context)
    second, lines = run_build(store, context, tag="app:2")
    assert second.id == first.id
    assert lines.count(" ---> Using cache") == 10  # every step after FROM but the ARGs
    (context / "note.txt").write_text("changed\n")
    third, lines = run_build(store, context, tag="app:3")
    assert third.id != first.id
    assert lines.count(" ---> Using cache") == 4  # up to the changed COPY
    assert read(third, "/tmp/note.txt") == "changed\n"


def test_from_scratch_and_unused_build_arg_warning(store, tmp_path):
    ctx = tmp_path / "s"
    ctx.mkdir()
    (ctx / "file").write_text("only file\n")
    (ctx / "Dockerfile").write_text("FROM scratch\nCOPY file /\n")
    image, lines = run_build(store, ctx, tag="tiny", build_args={"NOPE": "1"})
    assert len(image.diff_ids) == 1 and read(image, "/file") == "only file\n"
    assert any("[NOPE] were not consumed" in line or "'NOPE'" in line for line in lines)


def test_dockerignore_excludes_files_and_keeps_exceptions(store, context):
    (context / ".dockerignore").write_text("# comment\nconf/sub\n*.txt\n!hello.txt\n")
    (context / "Dockerfile").write_text("FROM busybox\nCOPY . /ctx/\n")
    image, _ = run_build(store, context)
    assert read(image, "/ctx/hello.txt") == "hello from the build\n"
    assert lookup(image.layer_dirs, "/ctx/note.txt") is None
    assert lookup(image.layer_dirs, "/ctx/conf/sub") is None
    assert read(image, "/ctx/conf/app.ini") == "[app]\n"
    (context / "conf/sub/deep.ini").write_text("ignored change\n")
    _, lines = run_build(store, context)
    assert lines.count(" ---> Using cache") == 1  # excluded files do not bust the cache


def test_multi_stage_copy_from_reads_the_merged_view(store, context):
    (context / "Dockerfile").write_text(
        "FROM busybox AS builder\n"
        "COPY conf/ /out/\n"
        "COPY hello.txt /out/sub/deep.ini\n"
        "FROM scratch\n"
        "COPY --from=builder /out /app\n"
        "COPY --from=0 /bin/busybox /etc/passwd /base/\n"
        "ENV GROUP=/etc/group\n"
        'COPY --from=busybox ["$GROUP", "/base/group"]\n')
    image, _ = run_build(store, context)
    assert len(image.diff_ids) == 3
    assert read(image, "/app/app.ini") == "[app]\n"
    assert read(image, "/app/sub/deep.ini") == "hello from the build\n"  # the later layer wins
    assert os.stat(lookup(image.layer_dirs, "/base/busybox")).st_size > 100_000
    assert read(image, "/base/passwd").startswith("root:") and "root" in read(image, "/base/group")
    builder_only, _ = run_build(store, context, tag="stage:builder", target="builder")
    assert read(builder_only, "/out/app.ini") == "[app]\n" and len(builder_only.diff_ids) == 3
    with pytest.raises(BuildError, match="target stage 'nope' could not be found"):
        run_build(store, context, target="nope")
    with pytest.raises(DockerfileError, match="no such stage"):
        (context / "Dockerfile").write_text("FROM busybox\nCOPY --from=ghost /x /x\n")
        run_build(store, context)


def test_onbuild_triggers_run_in_the_child_build(store, context):
    (context / "Dockerfile").write_text("FROM busybox\nONBUILD COPY hello.txt /onbuild/\n")
    run_build(store, context, tag="parent:1")
    child = context / "child"
    child.mkdir()
    (child / "hello.txt").write_text("from the child context\n")
    (child / "Dockerfile").write_text("FROM parent:1\nCMD [\"true\"]\n")
    image, lines = run_build(store, child, tag="child:1")
    assert "# Executing ONBUILD trigger: COPY hello.txt /onbuild/" in lines
    assert read(image, "/onbuild/hello.txt") == "from the child context\n"
    assert "OnBuild" not in image.config  # triggers are not inherited by grandchildren


def test_copy_into_a_symlinked_directory_follows_it(store, tmp_path):
    from tests.unit.test_layers import make_tar
    base = store.import_tar(io.BytesIO(make_tar([
        ("usr", "dir", None), ("usr/bin", "dir", None), ("bin", "symlink", "usr/bin")])), "merged-usr")
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "tool").write_text("#!/bin/sh\n")
    (ctx / "Dockerfile").write_text("FROM merged-usr\nCOPY tool /bin/\nWORKDIR /bin/sub\n")
    image, _ = run_build(store, ctx)
    assert os.path.islink(lookup(image.layer_dirs, "/bin"))  # not shadowed by a real /bin
    assert read(image, "/usr/bin/tool") == "#!/bin/sh\n"
    assert os.path.isdir(lookup(image.layer_dirs, "/usr/bin/sub"))
    assert base.id in [store.get("merged-usr").id]


@pytest.mark.parametrize("dest", [".", "./", "/srv/app", "/srv/app/", "/srv/app/.", "sub/.."])
def test_copy_to_a_directory_destination_writes_into_it(store, tmp_path, dest):
    """Docker: a destination ending in / or . or naming an existing directory is "into"."""
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "hello.sh").write_text("#!/bin/sh\necho hi\n")
    os.chmod(ctx / "hello.sh", 0o755)
    (ctx / "Dockerfile").write_text(f"FROM busybox\nWORKDIR /srv/app\nCOPY hello.sh {dest}\n")
    image, _ = run_build(store, ctx)
    assert os.path.isdir(lookup(image.layer_dirs, "/srv/app"))
    assert read(image, "/srv/app/hello.sh") == "#!/bin/sh\necho hi\n"
    assert os.stat(lookup(image.layer_dirs, "/srv/app/hello.sh")).st_mode & 0o777 == 0o755


def test_copy_to_a_new_name_or_an_existing_image_directory(store, tmp_path):
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "a.txt").write_text("a\n")
    (ctx / "b.txt").write_text("b\n")
    (ctx / "Dockerfile").write_text("FROM busybox\nCOPY a.txt /tmp\nCOPY a.txt /opt/renamed\n"
                                    "COPY a.txt b.txt /multi/\nCOPY *.txt /globbed/\n")
    image, _ = run_build(store, ctx)
    assert read(image, "/tmp/a.txt") == "a\n"          # /tmp is a directory of busybox
    assert os.path.isdir(lookup(image.layer_dirs, "/tmp"))
    assert read(image, "/opt/renamed") == "a\n"        # no such directory: the file's name
    assert read(image, "/multi/b.txt") == "b\n" and read(image, "/globbed/a.txt") == "a\n"


@pytest.mark.parametrize("line", ["COPY a.txt b.txt /dir", "ADD a.txt b.txt /tmp",
                                  "COPY *.txt /dir", 'COPY ["a.txt", "b.txt", "/dir"]'])
def test_several_sources_need_a_directory_destination(store, tmp_path, line):
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "a.txt").write_text("a\n")
    (ctx / "b.txt").write_text("b\n")
    (ctx / "Dockerfile").write_text(f"FROM busybox\n{line}\n")
    with pytest.raises(DockerfileError, match="more than one source file, the destination must "
                                              "be a directory and end with a /"):
        run_build(store, ctx)
    assert not list(Path(store.root).glob(".build-*"))


@pytest.mark.parametrize("dockerfile, error, message", [
    ("FROM busybox\nCOPY ../secret /x\n", DockerfileError, "outside the build context"),
    ("FROM busybox\nCOPY missing.txt /x\n", DockerfileError, "file not found in build context"),
    ("FROM nosuchimage:1\n", DockerfileError, "not found locally"),
    ("FROM busybox\nRUN true\n", DockerfileError, "RUN needs a container runner"),
])
def test_build_errors_are_clear(store, tmp_path, dockerfile, error, message):
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (tmp_path / "secret").write_text("s")
    (ctx / "Dockerfile").write_text(dockerfile)
    with pytest.raises(error, match=message):
        run_build(store, ctx)
    assert not list(Path(store.root).glob(".build-*"))


def test_missing_context_is_a_clear_error(store, tmp_path):
    with pytest.raises(BuildError, match="not a directory"):
        build(store, tmp_path / "nope", None, "x", progress=lambda line: None)


RUN_DOCKERFILE = """\
FROM busybox
ARG FLAVOR=plain
ENV FOO=bar
WORKDIR /work
RUN echo "$FOO-$FLAVOR" > out.txt && rm /etc/group
RUN ["/bin/sh", "-c", "id -u > uid.txt"]
USER nobody
RUN id -u > /tmp/nobody.txt
"""


def test_run_steps_execute_in_a_container_and_become_layers(store, rt, tmp_path):
    ctx = tmp_path / "runctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(RUN_DOCKERFILE)
    runner = rt.build_runner()
    image, _ = run_build(store, ctx, runner=runner, build_args={"FLAVOR": "custom"})
    assert read(image, "/work/out.txt") == "bar-custom\n"
    assert lookup(image.layer_dirs, "/etc/group") is None  # the deletion is a whiteout
    assert read(image, "/work/uid.txt") == "0\n"
    assert read(image, "/tmp/nobody.txt") == "65534\n"
    assert image.config["User"] == "nobody"

    calls = []

    def counting(*args):
        calls.append(args)
        return runner(*args)

    again, lines = run_build(store, ctx, runner=counting, build_args={"FLAVOR": "custom"})
    assert again.id == image.id and calls == [] and lines.count(" ---> Using cache") == 6
    other, _ = run_build(store, ctx, runner=counting, build_args={"FLAVOR": "other"})
    assert len(calls) == 3 and read(other, "/work/out.txt") == "bar-other\n"


def test_failing_run_step_stops_the_build(store, rt, tmp_path):
    ctx = tmp_path / "failctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM busybox\nRUN echo partial > /x && exit 3\nCMD [\"true\"]\n")
    with pytest.raises(BuildError, match="returned a non-zero code: 3"):
        run_build(store, ctx, runner=rt.build_runner(), tag="failed:1")
    assert not store.exists("failed:1")
    assert not list(Path(store.root).glob(".build-*"))
    assert rt.list(all=True) == []
