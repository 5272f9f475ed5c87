"""What the test suites share, each helper written once:

- command.py: the installed `reconcile` (RECONCILE) as a child process or `main` in-process,
  and its `--once -o json` report (Pass);
- domains.py: the one `Domain` shape, reading it back, defining a tiny operator's domain,
  removing a test's domains;
- libvirtd.py, sandbox.py: the system libvirtd, a private libvirtd of our own (Sandbox) and
  the view of it a test holds (Host); system.py: the fixtures on the system libvirtd;
- manifests.py, disks.py, prefix.py: manifest folders, qcow2 images, unique name prefixes;
- waiting.py, processes.py: waiting on conditions with deadlines, following a child's
  output, ending what a test started; http.py: GET of the service's endpoints;
- rig.py (a run assembled over hypervisors a test holds), httpserver.py (a real HTTP server)
  and guest.py (real guests): no mocks of what can run.
"""
