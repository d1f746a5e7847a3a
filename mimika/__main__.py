"""`python -m mimika ...` is the `mimika` command."""

import sys

from .cli import main

sys.exit(main())
