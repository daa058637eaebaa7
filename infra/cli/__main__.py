"""`python -m infra.cli`: the `mlstack` command."""

import sys

from infra.cli import main

sys.exit(main())
