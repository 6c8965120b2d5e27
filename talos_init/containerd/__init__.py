"""containerd for Kubernetes: its static config (``config``, shipped in the image so the
``containerd`` service execs /usr/bin/containerd directly), the registry hosts written from
the machine config by machine-setup, and image import for apid (``images``)."""
