#!/usr/bin/env python3
"""Print the fidelity figures of docs/RELIABILITY.md: the corpus of real-world domain
definitions (tests/fidelity/corpus) run through export, validate, adoption, a memory
change and a dry run on the real libvirtd (qemu:///system), as tests/fidelity does.

    .venv/bin/python scripts/fidelity.py [--family NAME ...]

Exit 0 when every definition passed every stage, else 1. Defines domains named
t-<8 hex>-N, never starts them, and undefines them (keeping NVRAM) before exiting.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.fidelity import harness
from tests.fidelity.build_corpus import FAMILIES


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--family", action="append", choices=FAMILIES,
                        help="only these corpus families (default: all)")
    parser.add_argument("-c", "--connect", default=harness.URI, help="libvirt URI")
    args = parser.parse_args()
    report = harness.run(harness.corpus_files(args.family or FAMILIES), uri=args.connect)
    print(harness.figures(report))
    return 0 if not report.failures() else 1


if __name__ == "__main__":
    sys.exit(main())
