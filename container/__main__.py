"""``python -m container`` runs the command line."""

import sys

from container.cli import main

sys.exit(main())
