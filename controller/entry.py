"""What `reconcile` runs first (the console script, `python -m controller`): the no-op
proof's fast path for `--once` (`proof.replay`), else the command line as usual.

Kept apart from `controller.cli`, whose imports (the loader, the planner, the model)
are what the fast path exists to skip.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from . import proof


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        code = proof.replay(args)
    except KeyboardInterrupt:
        sys.stderr.write("reconcile: interrupted\n")
        return 130
    except BrokenPipeError:
        return 1
    if code is not None:
        return code
    from .cli import main as cli_main

    try:
        return cli_main(args)
    finally:
        proof.forget_key()  # a later in-process call (a test) starts without one


if __name__ == "__main__":
    sys.exit(main())
