"""The /var decision table: data is never destroyed unless wipe is set, and wipe applies at
installation only (an installed EPHEMERAL is never wiped), as in Talos."""

from __future__ import annotations

import uuid

import pytest

from talos_init.disk.gpt import LINUX_FS_TYPE, Partition
from talos_init.disk.plan import Action, decide, fsck_verdict


def _part(name: str, n: int = 1) -> Partition:
    return Partition(n, LINUX_FS_TYPE, uuid.uuid4(), 2048, 100000, name)


def test_blank_disk_is_partitioned():
    """No signature at all: partition and format."""
    assert decide("/dev/vda", {}, None, None, False).action is Action.PARTITION


def test_wipe_never_touches_an_installed_var():
    """wipe: true leaves a disk whose EPHEMERAL holds our ext4 to be checked, saying why."""
    plan = decide("/dev/vda", {"PTTYPE": "gpt"}, [_part("EPHEMERAL")], {"TYPE": "ext4"}, True)
    assert plan.action is Action.CHECK and "installation only" in plan.reason
    zeroed = decide("/dev/vda", {"PTTYPE": "gpt"}, [_part("EPHEMERAL")], {}, True, part_zeroed=True)
    assert zeroed.action is Action.FORMAT


@pytest.mark.parametrize("sig, parts, part_sig", [
    ({"PTTYPE": "dos"}, None, None),                                # someone else's table
    ({"PTTYPE": "gpt"}, [_part("data")], None),                     # a GPT without EPHEMERAL
    ({"PTTYPE": "gpt"}, [_part("EPHEMERAL")], {}),                  # damaged superblock
    ({"PTTYPE": "gpt"}, [_part("EPHEMERAL")], {"TYPE": "xfs"}),     # not our filesystem
    ({"TYPE": "ext4"}, None, None),                                 # a whole-disk ext4
])
def test_wipe_applies_when_the_disk_holds_no_installed_var(sig, parts, part_sig):
    """Everything that is not an installed /var is erased when wipe: true, and only then."""
    assert decide("/dev/vda", sig, parts, part_sig, True).action is Action.WIPE
    assert decide("/dev/vda", sig, parts, part_sig, False).action is not Action.WIPE


def test_our_ext4_partition_is_checked():
    """Our partition with ext4 on it is checked, then mounted."""
    plan = decide("/dev/vda", {"PTTYPE": "gpt"}, [_part("EFI"), _part("EPHEMERAL", 2)],
                  {"TYPE": "ext4", "PART_ENTRY_NAME": "EPHEMERAL"}, False)
    assert plan.action is Action.CHECK and plan.partition is not None and plan.partition.number == 2


def test_our_empty_partition_is_formatted():
    """Our partition that is all zeros (an interrupted first boot) gets its filesystem."""
    plan = decide("/dev/vda", {"PTTYPE": "gpt"}, [_part("EPHEMERAL")],
                  {"PART_ENTRY_NAME": "EPHEMERAL"}, False, part_zeroed=True)
    assert plan.action is Action.FORMAT


def test_our_partition_with_unknown_data_is_refused():
    """Our partition holding data but no filesystem signature is refused, never formatted."""
    plan = decide("/dev/vda", {"PTTYPE": "gpt"}, [_part("EPHEMERAL")], {}, False, part_zeroed=False)
    assert plan.action is Action.REFUSE and "damaged ext4 superblock" in plan.reason


@pytest.mark.parametrize("sig, words", [
    ({"PTTYPE": "dos"}, "a dos partition table"),
    ({"TYPE": "xfs"}, "a xfs signature"),
    ({"TYPE": "swap"}, "a swap signature"),
])
def test_foreign_content_is_refused(sig, words):
    """Anything we did not make is refused with what it holds and how to erase it."""
    plan = decide("/dev/vda", sig, None, None, False)
    assert plan.action is Action.REFUSE and words in plan.reason and "wipe: true" in plan.reason


def test_other_fs_in_our_partition_is_refused():
    """Our partition holding a filesystem other than ext4 is refused."""
    plan = decide("/dev/vda", {"PTTYPE": "gpt"}, [_part("EPHEMERAL")], {"TYPE": "xfs"}, False)
    assert plan.action is Action.REFUSE and "holds xfs, expected ext4" in plan.reason


def test_whole_disk_ext4_is_checked():
    """A whole-disk ext4 filesystem (no table) is checked and used."""
    assert decide("/dev/vdb", {"TYPE": "ext4"}, None, None, False).action is Action.CHECK_WHOLE


@pytest.mark.parametrize("code, ok, words", [
    (0, True, "clean"), (1, True, "corrected"), (3, True, "corrected"),
    (4, False, "uncorrectable"), (8, False, "operational error"), (12, False, "uncorrectable"),
    (32, False, "status 32"),
])
def test_fsck_status(code, ok, words):
    """e2fsck -p's status decides whether /var may be mounted."""
    got_ok, what = fsck_verdict(code)
    assert got_ok is ok and words in what


def test_layout_is_efi_state_then_ephemeral_taking_the_rest():
    """sgdisk gets EFI (ef00, 512 MiB), STATE (100 MiB), EPHEMERAL (the rest), named, in order."""
    from talos_init.disk.plan import sgdisk_args

    args = sgdisk_args("/dev/vda", 1 << 30)
    assert args == ["--clear",
                    "--new=1:0:+512M", "--typecode=1:ef00", "--change-name=1:EFI",
                    "--new=2:0:+100M", "--typecode=2:8300", "--change-name=2:STATE",
                    "--new=3:0:0", "--typecode=3:8300", "--change-name=3:EPHEMERAL", "/dev/vda"]


def test_a_disk_too_small_for_the_layout_is_named_with_its_size():
    from talos_init.disk.plan import sgdisk_args

    with pytest.raises(ValueError, match=r"/dev/vda is 300 MiB; .* needs at least 678 MiB"):
        sgdisk_args("/dev/vda", 300 << 20)
