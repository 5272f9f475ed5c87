"""`python -m controller` is `reconcile`."""

import sys

from .entry import main

sys.exit(main())
