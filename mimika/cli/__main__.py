"""`python -m mimika.cli`: the `mimika` command."""

import sys

from . import main

sys.exit(main())
