"""What the test suites share: a run assembled over hypervisors a test holds (rig.py), real
servers (httpserver.py) and real guests (guest.py); no mocks of what can run."""
