"""`python -m mimika.serve ...`: the same as `mimika serve ...`."""

import argparse
import sys

from ..common.errors import MimikaError
from . import add_arguments, main

parser = argparse.ArgumentParser(prog="python -m mimika.serve", description="HTTP API and web page of mimika")
add_arguments(parser)
try:
    sys.exit(main(parser.parse_args()))
except MimikaError as e:
    print(f"mimika: error: {e}", file=sys.stderr)
    sys.exit(2)
