"""The persistent /var: find the install disk, partition and format it when blank,
check it when not, and mount it; tmpfs when the machine has no disk.

Runs as the one-shot service ``var`` (``python3.11 -I -m talos_init.disk``).
"""
