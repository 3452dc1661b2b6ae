"""``oci://PATH`` / ``bundle://PATH``: OCI runtime bundles (config.json + rootfs/) for runc.

The sink is :mod:`.sink`; there is no source (a bundle holds no image metadata to read).
"""
