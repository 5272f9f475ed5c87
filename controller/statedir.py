"""Where reconcile keeps state between runs (each host's last listing, the image cache, the
no-op proofs) when `--state-dir` is not given. Standard library only: the no-op proof's
fast path (proof.py) uses it before anything else is imported.

Called by `controller.inventory` (re-exported), `controller.proof` and their callers.
"""

from __future__ import annotations

import os


def default_state_dir() -> str:
    """$RECONCILE_STATE_DIR; else /var/lib/reconcile for root; the user's state directory
    otherwise."""
    explicit = os.environ.get("RECONCILE_STATE_DIR")
    if explicit:
        return explicit
    if os.geteuid() == 0:
        return "/var/lib/reconcile"
    state = os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
    return os.path.join(state, "reconcile")
