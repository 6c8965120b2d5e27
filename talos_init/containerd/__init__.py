"""containerd for Kubernetes: its config generated at boot from the machine config, then
exec'd by the ``containerd`` service (same pid, so its sd_notify READY=1 reaches PID 1)."""
