"""`python -m runtime` is pdocker."""

import sys

from runtime.cli import main

sys.exit(main())
