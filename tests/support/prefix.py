"""Unique names for what one test creates: every libvirt object a test makes is named
with its own prefix, so that it touches and removes only its own.

Called by the `prefix` fixtures of tests/support/system.py, tests/service and
tests/multihost, and by tests/e2e/test_guest_image.py's module fixture.
"""

from __future__ import annotations

import secrets


def unique_prefix() -> str:
    """"t-<8 hex>-": a domain-name prefix no other test (or test session) shares."""
    return f"t-{secrets.token_hex(4)}-"
