"""`python -m gbsynth` runs the `gbsynth` command."""

import sys

from gbsynth.cli import main

sys.exit(main())
