"""`python -m shoal.cli`: the same as the `shoal` console script."""
import sys

from .main import main

sys.exit(main())
