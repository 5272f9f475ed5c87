"""`python -m controller` is `reconcile`."""

import sys

from .cli import main

sys.exit(main())
