import sys

from pkube.cluster.cli import main

sys.exit(main())
