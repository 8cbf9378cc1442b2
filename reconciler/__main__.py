"""`python -m reconciler` is the `hotswap` command."""

import sys

from reconciler.cli.main import main

sys.exit(main())
