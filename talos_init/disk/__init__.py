"""The persistent /var: find the install disk, partition and format it when blank,
check it when not, and mount it; tmpfs when the machine has no disk.

Runs as the one-shot service ``var`` (``python3.11 -I -m talos_init.disk``).
Here: the names and the error every part shares, so that the boot path
(``var``, ``installed``, ``ext4sb``) imports none of the install tools.
"""

LABEL = "EPHEMERAL"  # GPT partition name and ext4 label, as Talos names its /var partition
FSTYPE = "ext4"
# The install layout (docs/for-devs/disk.md), each partition found by its GPT name, in this
# order: the ESP (FAT32, labelled EFI), STATE (ext4: the stored machine config), EPHEMERAL
# (/var, the rest of the disk). A disk installed before STATE existed has EPHEMERAL only
# and keeps booting (the config store then keeps nothing on it).
EFI_LABEL = "EFI"
STATE_LABEL = "STATE"
EFI_MIB = 512
STATE_MIB = 100
# Never install disks, never searched for EPHEMERAL unless named.
NOT_DISKS = ("loop*", "ram*", "zram*", "dm-*", "md*", "sr*", "nbd*", "fd*")


class DiskError(Exception):
    """Anything that stops /var from being set up; the message names the device."""
