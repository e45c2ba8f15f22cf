"""`python -m pkube.pdocker` is pdocker."""

import sys

from pkube.pdocker.cli import main

sys.exit(main())
