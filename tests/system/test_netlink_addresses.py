"""runtime.netlink's ensure_address/remove_address on lo, in a throwaway network namespace:
the address becomes local (a socket binds to it), a second ensure is harmless, removal
makes it foreign again and reports whether it was there."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")

SCRIPT = """
import ipaddress, socket
from pkube.runtime.netlink import ensure_address, remove_address, loopback_up
address = ipaddress.IPv4Interface("10.96.0.10/32")
loopback_up("/proc/self/ns/net")
def binds():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind(("10.96.0.10", 0))
            return True
        except OSError:
            return False
before = binds()
ensure_address("lo", address)
ensure_address("lo", address)
during = binds()
removed, again = remove_address("lo", address), remove_address("lo", address)
print(before, during, removed, again, binds())
"""


def test_an_address_on_lo_is_local_until_removed():
    done = subprocess.run(["unshare", "--net", sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                          timeout=30, cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "True", "True", "False", "False"]
