"""talos-init: a Kubernetes node OS whose PID 1 is written in Python."""

__version__ = "0.1.0"
