"""Bad input, faults, concurrency and confinement: the safety suite (issue 4)."""
