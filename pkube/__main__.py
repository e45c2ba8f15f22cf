"""``python -m pkube`` is the ``pkube`` command (pkube.cluster.cli)."""

import sys

from pkube.cluster.cli import main

sys.exit(main())
