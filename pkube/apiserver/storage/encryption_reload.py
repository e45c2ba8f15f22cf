"""kube-apiserver's --encryption-provider-config-automatic-reload: the EncryptionConfiguration
file is read again when it changes, so that a key rotation (`pkube secrets rotate-key`)
needs no restart.

The file is looked at (one stat) at most every CHECK_SECONDS, from the store's own calls;
a changed file that does not load is logged and the previous configuration kept, as
upstream does. The file is replaced atomically by its writers (rename), so a half-written
file is never read.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

from pkube.apiserver.storage.encryption_config import (
    EncryptionConfigError,
    load_encryption_config,
)

log = logging.getLogger(__name__)

CHECK_SECONDS = 0.2


class ReloadingTransformer:
    """A Transformer that follows the EncryptionConfiguration at ``path``. The first load
    happens here and raises EncryptionConfigError (or OSError) like load_encryption_config."""

    def __init__(self, path: str | Path, clock: Callable[[], float] = time.monotonic):
        self.path = Path(path)
        self._clock = clock
        self._stamp = self._file_stamp()
        self._current = load_encryption_config(self.path)
        self._checked = clock()

    def _file_stamp(self) -> tuple:
        info = os.stat(self.path)
        return info.st_ino, info.st_mtime_ns, info.st_size

    def _fresh(self):
        now = self._clock()
        if now - self._checked >= CHECK_SECONDS:
            self._checked = now
            self._reload_if_changed()
        return self._current

    def _reload_if_changed(self) -> None:
        try:
            stamp = self._file_stamp()
            if stamp == self._stamp:
                return
            self._stamp = stamp          # a bad file is reported once, not at every check
            self._current = load_encryption_config(self.path)
            log.info("encryption configuration %s reloaded", self.path)
        except (OSError, EncryptionConfigError) as err:
            log.error("encryption configuration %s not reloaded, the previous one stays: %s", self.path, err)

    def encrypt(self, key: str, data: bytes) -> bytes:
        return self._fresh().encrypt(key, data)

    def decrypt(self, key: str, data: bytes) -> bytes:
        return self._fresh().decrypt(key, data)

    def is_stale(self, key: str, data: bytes) -> bool:
        return self._fresh().is_stale(key, data)
