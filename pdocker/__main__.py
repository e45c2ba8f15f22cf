"""`python -m pdocker` is pdocker."""

import sys

from pdocker.cli import main

sys.exit(main())
