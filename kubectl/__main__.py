"""``python -m kubectl``: the pkubectl command."""

import sys

from kubectl.cli import main

sys.exit(main())
