"""Real servers and helpers that several test suites share (no mocks of what can run)."""
