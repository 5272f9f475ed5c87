"""What the test suites share: assembling a run over hypervisors a test holds (rig.py),
waiting on conditions, and (for the end-to-end suites) real guests and servers."""
