"""Floor of a no-op pass: the libvirt calls any tool must make to know a host is converged.

Open the connection, list every domain once, and read each one's saved definition and
state once. Nothing else: no parsing, no planning. Run as its own process with the same
interpreter as `reconcile`, so both pay the same start-up.

    python benchmarks/floors/noop.py URI      prints the number of domains read
"""

from __future__ import annotations

import sys

import libvirt


def main(argv: list[str]) -> int:
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    conn = libvirt.open(argv[0])
    read = 0
    for dom in conn.listAllDomains(0):
        try:
            dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
            dom.state()
        except libvirt.libvirtError:
            continue  # vanished since the listing (other users of the host)
        read += 1
    conn.close()
    print(read)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
