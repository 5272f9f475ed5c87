"""reconcile: keep a libvirt host's VMs exactly as a directory of YAML manifests says."""

__version__ = "0.1.0"
