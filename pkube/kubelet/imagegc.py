"""Image garbage collection, Kubernetes' way: when the file system holding the images is
fuller than the high threshold (85 %), delete images no container uses, least recently used
first, until usage is under the low threshold (80 %). Images used less than `min_age` ago are
kept. (Dead containers need no collector of their own: a worker keeps the current and the
previous attempt of each container and removes older ones, and a pod's containers go with it.)
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from typing import Callable

log = logging.getLogger(__name__)

HIGH_THRESHOLD_PERCENT = 85
LOW_THRESHOLD_PERCENT = 80
MIN_AGE_SECONDS = 120.0
PERIOD_SECONDS = 300.0


def disk_usage(path: str) -> tuple[int, int]:
    """(bytes used, bytes total) of the file system holding `path`."""
    fs = os.statvfs(path)
    total = fs.f_blocks * fs.f_frsize
    return total - fs.f_bavail * fs.f_frsize, total


def images_to_delete(images: list, in_use: set[str], last_used: dict[str, float], now: float,
                     bytes_to_free: int, min_age: float) -> list:
    """The images to delete, oldest use first, until their sizes add up to `bytes_to_free`:
    none in use, none used (or first seen) less than `min_age` seconds ago."""
    candidates = [i for i in images if i.id not in in_use and now - last_used.get(i.id, 0.0) >= min_age]
    candidates.sort(key=lambda i: (last_used.get(i.id, 0.0), i.created))
    chosen, freed = [], 0
    for image in candidates:
        if freed >= bytes_to_free:
            break
        chosen.append(image)
        freed += image.size or 0
    return chosen


@dataclass
class ImageGC:
    """Collects one runtime's images; `notice(image_id)` records a use (a container started)."""

    runtime: object
    high_percent: int = HIGH_THRESHOLD_PERCENT
    low_percent: int = LOW_THRESHOLD_PERCENT
    min_age: float = MIN_AGE_SECONDS
    usage: Callable[[str], tuple[int, int]] = disk_usage
    clock: Callable[[], float] = time.time
    last_used: dict = field(default_factory=dict)

    def notice(self, image_id: str) -> None:
        self.last_used[image_id] = self.clock()

    def collect(self) -> list[str]:
        """Delete unused images while usage is over the high threshold; the ids deleted.
        Blocking (file system work): call it in a thread."""
        images_dir = os.path.join(self.runtime.root, "images")
        used, total = self.usage(images_dir)
        if total <= 0 or used * 100 < total * self.high_percent:
            return []
        now = self.clock()
        images = self.runtime.images.list()
        for image in images:
            self.last_used.setdefault(image.id, now)   # first seen now: old enough only later
        in_use = {record.image_id for record in self.runtime.list(all=True)}
        to_free = used - total * self.low_percent // 100
        deleted = []
        for image in images_to_delete(images, in_use, self.last_used, now, to_free, self.min_age):
            try:
                self.runtime.images.remove(image.id, force=True, in_use=in_use)
            except Exception as err:   # noqa: BLE001 - one image that cannot go does not stop the rest
                log.warning("image %s not deleted: %s", image.short_id, err)
                continue
            self.last_used.pop(image.id, None)
            deleted.append(image.id)
        log.info("image GC: file system %d%% full; deleted %d images", used * 100 // total, len(deleted))
        return deleted
