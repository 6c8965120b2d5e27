"""The declared early-mount table: order, types and the flags each entry may carry."""

from talos_init import mounts
from talos_init.syscalls import MS_NODEV, MS_NOEXEC, MS_NOSUID

TABLE = {s.target: s for s in mounts.EARLY_MOUNTS}


def test_order_puts_every_mount_after_its_parent():
    """/proc comes first (others read it) and no mount precedes the one it sits on."""
    targets = [s.target for s in mounts.EARLY_MOUNTS]
    assert targets[0] == "/proc"
    for i, target in enumerate(targets):
        parents = [t for t in targets if target.startswith(t + "/")]
        assert all(targets.index(p) < i for p in parents), target


def test_types_are_the_ones_the_design_names():
    """Each mount point has the file system type the design names."""
    assert {t: s.fstype for t, s in TABLE.items()} == {
        "/proc": "proc", "/sys": "sysfs", "/dev": "devtmpfs", "/dev/pts": "devpts",
        "/dev/shm": "tmpfs", "/run": "tmpfs", "/tmp": "tmpfs", "/sys/fs/cgroup": "cgroup2",
        "/sys/kernel/security": "securityfs", "/sys/fs/bpf": "bpf",
        "/usr/lib/talos/payload": "squashfs",
    }


def test_every_mount_is_nosuid():
    """No early mount may carry a setuid binary."""
    assert all(s.flags & MS_NOSUID for s in mounts.EARLY_MOUNTS)


def test_nodev_and_noexec_everywhere_unless_a_reason_is_given():
    """A mount without nodev or noexec says why; only /dev, /dev/pts (nodev), /run and the payload (exec)."""
    both = MS_NODEV | MS_NOEXEC
    lacking = {s.target: ((not s.flags & MS_NODEV), (not s.flags & MS_NOEXEC))
               for s in mounts.EARLY_MOUNTS if s.flags & both != both}
    assert lacking == {"/dev": (True, False), "/dev/pts": (True, False), "/run": (False, True),
                       "/usr/lib/talos/payload": (False, True)}
    assert all(TABLE[t].why for t in lacking)


def test_cgroup2_delegates_at_namespaces_and_bpffs_is_private():
    """cgroup2 is mounted with nsdelegate, bpffs with mode 0700, tmpfs /tmp and /dev/shm sticky."""
    assert "nsdelegate" in TABLE["/sys/fs/cgroup"].data.split(",")
    assert "mode=0700" in TABLE["/sys/fs/bpf"].data
    assert "mode=1777" in TABLE["/tmp"].data and "mode=1777" in TABLE["/dev/shm"].data


def test_required_mounts_are_the_ones_boot_cannot_do_without():
    """proc, sys, dev and run are required; the rest only warn."""
    required = {s.target for s in mounts.EARLY_MOUNTS if s.required}
    assert required == {"/proc", "/sys", "/dev", "/run"}


def test_mountinfo_parsing_unescapes_paths():
    """mountinfo's octal escapes (a space in a path) are decoded; optional fields are skipped."""
    text = ("36 35 98:0 /mnt1 /mnt\\040two rw,noatime master:1 - ext3 /dev/root rw,errors=cont\n"
            "37 36 0:5 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw\n")
    one, two = mounts.parse_mountinfo(text)
    assert one.target == "/mnt two" and one.fstype == "ext3" and one.source == "/dev/root"
    assert two.options == "rw,nosuid,nodev,noexec,relatime" and two.parent_id == 36


def test_payload_is_read_only_from_the_image_the_builder_writes():
    """The payload mount is the recipe's squashfs image at the recipe's mount point, read-only."""
    from initramfs.build import load_recipe
    from talos_init.syscalls import MS_RDONLY

    sq = load_recipe()["squashfs"]
    [payload] = [s for s in mounts.EARLY_MOUNTS if s.image]
    assert (payload.source, payload.target, payload.fstype) == (sq["image"], sq["mountpoint"], "squashfs")
    assert payload.flags & MS_RDONLY and not payload.required
    assert [m.split()[0] for m in payload.modules] == ["loop", "squashfs"]
