"""`python -m reconciler.cli` is the `hotswap` command, as `python -m reconciler` is."""

import sys

from reconciler.cli.main import main

sys.exit(main())
