"""`python -m shoal.cli`: the same as the `shoal` console script."""
import sys

from .commands import main

sys.exit(main())
