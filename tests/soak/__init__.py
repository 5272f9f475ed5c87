"""The soak under chaos (`make soak`, `python -m tests.soak`): the service over many
tiny guests on a private libvirtd for minutes on end, while a seeded schedule injects
faults, and the invariants are checked all along. run.py has the plan; the pure parts
(schedule.py, timeline.py, checks.py) have fast tests in test_soak_logic.py."""
