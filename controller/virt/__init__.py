"""The libvirt edge: the only package that imports libvirt."""
