"""Test-support code shared across suites (for example `tests.support.guest`, the real
Debian guest harness)."""
