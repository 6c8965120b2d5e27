"""The machine config ("userdata"): fetch it, validate it, write it for the services that need it.

Runs as the one-shot ``userdata`` service (``python3.11 -I -m talos_init.userdata``),
never inside PID 1. ``validate.parse`` is also what ``osctl validate`` runs.
"""
