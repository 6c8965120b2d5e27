"""The persistent /var: find the install disk, partition and format it when blank,
check it when not, and mount it; tmpfs when the machine has no disk.

Runs as the one-shot service ``var`` (``python3.11 -I -m talos_init.disk``).
Here: the names and the error every part shares, so that the boot path
(``var``, ``installed``, ``ext4sb``) imports none of the install tools.
"""

LABEL = "EPHEMERAL"  # GPT partition name and ext4 label, as Talos names its /var partition
FSTYPE = "ext4"
# Never install disks, never searched for EPHEMERAL unless named.
NOT_DISKS = ("loop*", "ram*", "zram*", "dm-*", "md*", "sr*", "nbd*", "fd*")


class DiskError(Exception):
    """Anything that stops /var from being set up; the message names the device."""
