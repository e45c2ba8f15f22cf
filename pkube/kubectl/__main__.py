"""``python -m pkube.kubectl``: the pkubectl command."""

import sys

from pkube.kubectl.cli import main

sys.exit(main())
