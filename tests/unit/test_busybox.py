"""The offline busybox image: made from whichever static busybox the store is given, and a
missing or unusable one is a one-line ImageError telling the user what to install."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pkube.runtime.busybox import BusyboxMissing
from pkube.runtime.errors import ImageError
from pkube.runtime.imagestore import ImageStore
from pkube.runtime.layertree import lookup

FAKE_BUSYBOX = """#!/bin/sh
# answers --list-full like busybox does
echo /bin/sh
echo /bin/ls
echo /usr/bin/env
"""


def stored_files(root) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in Path(root).rglob("*") if p.is_file())


def test_the_image_is_made_from_the_given_busybox(tmp_path):
    fake = tmp_path / "busybox"
    fake.write_text(FAKE_BUSYBOX)
    fake.chmod(0o755)
    store = ImageStore(tmp_path / "images", busybox=fake)
    image = store.ensure_busybox()
    assert image.repo_tags == ["busybox:latest"]
    assert Path(lookup(image.layer_dirs, "/bin/busybox")).read_text() == FAKE_BUSYBOX
    assert os.readlink(lookup(image.layer_dirs, "/usr/bin/env")) == "/bin/busybox"
    assert store.ensure_busybox().id == image.id


@pytest.mark.parametrize("kind", ["missing", "not a program", "failing"])
def test_no_usable_busybox_is_a_clear_image_error(tmp_path, kind):
    path = tmp_path / "busybox"
    if kind == "not a program":
        path.write_bytes(b"\0\0\0\0")
        path.chmod(0o755)
    elif kind == "failing":
        path.write_text("#!/bin/sh\nexit 1\n")
        path.chmod(0o755)
    store = ImageStore(tmp_path / "images", busybox=path)
    before = stored_files(store.root)
    with pytest.raises(BusyboxMissing) as caught:
        store.ensure_busybox()
    assert isinstance(caught.value, ImageError)
    message = str(caught.value)
    assert str(path) in message and message.endswith("install busybox-static")
    assert "\n" not in message
    assert stored_files(store.root) == before and not store.exists("busybox")
