"""Reference for validation (not a target): read and YAML-parse every manifest, nothing more.

    python benchmarks/floors/parse.py DIR      prints the number of documents parsed

Uses PyYAML's C loader when it is built in, as any Python tool could. What `reconcile
validate` costs above this is the schema and the cross-document checks.
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def main(argv: list[str]) -> int:
    documents = 0
    for path in sorted(Path(argv[0]).rglob("*.yaml")):
        with path.open("rb") as stream:
            documents += sum(1 for doc in yaml.load_all(stream, Loader=Loader) if doc)
    print(documents)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
