"""`python -m runtime` is pdocker."""

import gc
import sys

from runtime.launcher import GC_THRESHOLD

gc.set_threshold(GC_THRESHOLD)   # see runtime/launcher.py: start-up allocates, and is no garbage

from runtime.cli import main  # noqa: E402

sys.exit(main())
