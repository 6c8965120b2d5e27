"""PID 1's module loader: dependency order from modules.dep, what counts as already there, errors.

finit_module(2) itself is replaced by a recorder: this host's kernel is not the image's, and a
test must not load modules into it. The real loads run in QEMU (tests/e2e/test_image_probe.py).
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from talos_init import kmodules, syscalls

RELEASE = "6.1.0-test"
# modprobe's modules.dep: the deepest dependency comes last (bridge needs stp, stp needs llc).
DEP = """kernel/net/bridge/bridge.ko: kernel/net/802/stp.ko kernel/net/llc/llc.ko
kernel/net/802/stp.ko: kernel/net/llc/llc.ko
kernel/net/llc/llc.ko:
kernel/drivers/block/loop.ko:
kernel/fs/squashfs/squashfs.ko:
kernel/net/bridge/br_netfilter.ko: kernel/net/bridge/bridge.ko kernel/net/802/stp.ko kernel/net/llc/llc.ko
kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_pci_modern_dev.ko
kernel/drivers/virtio/virtio_pci_modern_dev.ko:
kernel/drivers/block/virtio_blk.ko:
kernel/drivers/nvme/host/nvme.ko: kernel/drivers/nvme/host/nvme-core.ko
kernel/drivers/nvme/host/nvme-core.ko:
"""
# The image's modules.alias lines, as depmod writes them.
ALIAS = """# Aliases extracted from modules themselves.
alias pci:v00001AF4d*sv*sd*bc*sc*i* virtio_pci
alias virtio:d00000002v* virtio_blk
alias pci:v*d*sv*sd*bc01sc08i02* nvme
alias pci:v0000106Bd00002001sv*sd*bc*sc*i* nvme
alias fs-squashfs squashfs
"""


@pytest.fixture
def root(tmp_path: Path) -> Path:
    moddir = tmp_path / "usr/lib/modules" / RELEASE
    moddir.mkdir(parents=True)
    (moddir / "modules.dep").write_text(DEP)
    (moddir / "modules.alias").write_text(ALIAS)
    (moddir / "modules.builtin").write_text("kernel/fs/ext4/ext4.ko\n")
    for line in DEP.splitlines():
        ko = moddir / line.split(":")[0]
        ko.parent.mkdir(parents=True, exist_ok=True)
        ko.write_bytes(b"\x7fELF" + ko.name.encode())
    (tmp_path / "sys/module").mkdir(parents=True)
    return tmp_path


@pytest.fixture
def loads(monkeypatch) -> list[tuple[str, str]]:
    calls: list[tuple[str, str]] = []

    def finit(fd: int, params: str = "", path=None) -> None:
        with open(f"/proc/self/fd/{fd}", "rb") as f:  # the fd really is the module file
            assert f.read() == b"\x7fELF" + Path(path).name.encode()
        calls.append((Path(path).name, params))

    monkeypatch.setattr(syscalls, "finit_module", finit)
    return calls


def test_dependencies_load_first_deepest_first(root, loads):
    """br_netfilter needs bridge, stp and llc: llc, stp, bridge, then br_netfilter, each once."""
    done = kmodules.load(["br_netfilter", "bridge"], root, RELEASE)
    assert [name for name, _ in loads] == ["llc.ko", "stp.ko", "bridge.ko", "br_netfilter.ko"]
    assert done == dict.fromkeys(["llc", "stp", "bridge", "br_netfilter"], "loaded")


def test_parameters_go_to_the_module_named(root, loads):
    """"loop max_loop=1" passes max_loop=1 to loop only."""
    kmodules.load(["loop max_loop=1", "squashfs"], root, RELEASE)
    assert loads == [("loop.ko", "max_loop=1"), ("squashfs.ko", "")]


def test_loaded_or_built_in_is_not_loaded_again(root, loads):
    """/sys/module/<name> (loaded, or built in with parameters) and modules.builtin skip the load."""
    (root / "sys/module/loop").mkdir()
    assert kmodules.load(["loop", "ext4", "squashfs"], root, RELEASE) == {
        "loop": "already", "ext4": "builtin", "squashfs": "loaded"}
    assert loads == [("squashfs.ko", "")]


def test_eexist_is_a_race_not_an_error(root, monkeypatch):
    """udev's modprobe may load the same module first: EEXIST counts as already loaded."""
    def finit(fd, params="", path=None):
        raise OSError(errno.EEXIST, "finit_module: File exists", str(path))

    monkeypatch.setattr(syscalls, "finit_module", finit)
    assert kmodules.load(["loop"], root, RELEASE) == {"loop": "already"}


def test_errors_name_the_module(root, monkeypatch):
    """A module missing from the index, or one the kernel refuses, raises with its name or file."""
    with pytest.raises(LookupError, match=r"module nosuch: not in .*modules\.dep"):
        kmodules.load(["nosuch"], root, RELEASE)

    def finit(fd, params="", path=None):
        raise OSError(errno.ENOEXEC, "finit_module: Exec format error", str(path))

    monkeypatch.setattr(syscalls, "finit_module", finit)
    with pytest.raises(OSError, match="Exec format error") as info:
        kmodules.load(["squashfs"], root, RELEASE)
    assert info.value.filename.endswith("kernel/fs/squashfs/squashfs.ko")


def test_real_syscall_reports_errno_with_the_path(tmp_path):
    """syscalls.finit_module reaches the kernel: a file that is no module is refused (not loaded),
    and the OSError carries errno and the path."""
    bogus = tmp_path / "bogus.ko"
    bogus.write_bytes(b"not an ELF module" * 64)
    fd = os.open(bogus, os.O_RDONLY)
    try:
        with pytest.raises(OSError) as info:
            syscalls.finit_module(fd, path=bogus)
    finally:
        os.close(fd)
    assert info.value.errno in (errno.ENOEXEC, errno.EINVAL, errno.EPERM, errno.ENOSYS, errno.EKEYREJECTED)
    assert info.value.filename == str(bogus) and "finit_module" in info.value.strerror


def test_device_modaliases_load_their_drivers(root, loads):
    """A device's modalias is matched against modules.alias (globs, as kmod does); each driver
    loads once with its dependencies; a modalias no module claims is returned, not an error."""
    virtio_pci = "pci:v00001AF4d00001001sv00001AF4sd00000002bc01sc00i00"
    nvme = "pci:v00008086d00005845sv00001AF4sd00001100bc01sc08i02"
    sata = "pci:v00008086d00002922sv00001AF4sd00001100bc01sc06i01"
    done, unmatched = kmodules.load_for_aliases([virtio_pci, nvme, sata, virtio_pci], root,
                                                RELEASE)
    assert [name for name, _ in loads] == ["virtio_pci_modern_dev.ko", "virtio_pci.ko",
                                           "nvme-core.ko", "nvme.ko"]
    assert done == dict.fromkeys(["virtio_pci_modern_dev", "virtio_pci", "nvme_core", "nvme"],
                                 "loaded")
    assert unmatched == [sata]
    assert kmodules.resolve("virtio:d00000002v00001AF4",
                            kmodules.read_aliases(root / "usr/lib/modules" / RELEASE)) == ["virtio_blk"]


@pytest.mark.parametrize("cpu_has_sse42", [True, False])
def test_soft_pre_dependencies_load_first_and_may_fail(root, monkeypatch, cpu_has_sse42):
    """modules.softdep's pre: names (aliases, as ext4's crypto-crc32c) load before the module,
    each alias's modules in the file's order, once for ext4 and jbd2. One the kernel refuses
    is recorded, not raised, as with modprobe; one made for CPU features this CPU lacks
    (crc32c_intel's cpu: alias wants SSE4.2, feature 0094) is not even tried."""
    moddir = root / "usr/lib/modules" / RELEASE
    (moddir / "modules.builtin").write_text("")
    extra = {"kernel/fs/ext4/ext4.ko": ["kernel/fs/jbd2/jbd2.ko"], "kernel/fs/jbd2/jbd2.ko": [],
             "kernel/crypto/crc32c_generic.ko": [], "kernel/arch/x86/crypto/crc32c-intel.ko": []}
    with (moddir / "modules.dep").open("a") as f:
        for ko, needs in extra.items():
            f.write(f"{ko}: {' '.join(needs)}\n")
            (moddir / ko).parent.mkdir(parents=True, exist_ok=True)
            (moddir / ko).write_bytes(b"\x7fELF" + Path(ko).name.encode())
    (moddir / "modules.softdep").write_text(
        "# Soft dependencies extracted from modules themselves.\n"
        "softdep ext4 pre: crypto-crc32c\nsoftdep jbd2 pre: crypto-crc32c post: nothing\n")
    with (moddir / "modules.alias").open("a") as f:
        f.write("alias crypto-crc32c crc32c_intel\nalias crypto-crc32c crc32c_generic\n"
                "alias cpu:type:x86,ven*fam*mod*:feature:*0094* crc32c_intel\n")
    cpu = root / "sys/devices/system/cpu/modalias"
    cpu.parent.mkdir(parents=True)
    cpu.write_text("cpu:type:x86,ven0000fam0006mod003F:feature:,0000,0001,"
                   + ("0094," if cpu_has_sse42 else "") + "00E5\n")
    calls = []

    def finit(fd, params="", path=None):
        calls.append(Path(path).name)
        if Path(path).name == "crc32c-intel.ko":
            raise OSError(errno.ENODEV, "finit_module: No such device", str(path))

    monkeypatch.setattr(syscalls, "finit_module", finit)
    done = kmodules.load(["ext4"], root, RELEASE)
    tried = ["crc32c-intel.ko"] if cpu_has_sse42 else []
    assert calls == [*tried, "crc32c_generic.ko", "jbd2.ko", "ext4.ko"]
    assert done == {"crc32c_intel": "failed (soft)" if cpu_has_sse42
                    else "skipped (the CPU lacks its features)",
                    "crc32c_generic": "loaded", "jbd2": "loaded", "ext4": "loaded"}


def test_a_soft_dependency_that_failed_is_tried_again_when_needed_hard(root, monkeypatch):
    """bridge softly wants stp first; stp's own dependency llc fails that once. Neither is
    then taken as loaded: bridge's hard need of llc and stp tries them again."""
    (root / "usr/lib/modules" / RELEASE / "modules.softdep").write_text("softdep bridge pre: stp\n")
    calls = []

    def finit(fd, params="", path=None):
        calls.append(Path(path).name)
        if calls == ["llc.ko"]:
            raise OSError(errno.ENOEXEC, "finit_module: Exec format error", str(path))

    monkeypatch.setattr(syscalls, "finit_module", finit)
    done = kmodules.load(["bridge"], root, RELEASE)
    assert calls == ["llc.ko", "llc.ko", "stp.ko", "bridge.ko"]
    assert done == {"llc": "loaded", "stp": "loaded", "bridge": "loaded"}
