"""Boot artifacts from a built image: a unified kernel image, an ESP, a raw disk and an ISO.

``python -m initramfs.bootimg --out build`` (``make image`` runs it after the
initramfs build). Each artifact is reproducible: fixed volume ids and GUIDs,
every file time ``SOURCE_DATE_EPOCH`` (default 0 as in the initramfs... FAT
cannot store 1970, so 1980-01-01), and the PE header's timestamp copied from
the stub (0 in Debian's).

- ``talos.efi``  systemd's ``linuxx64.efi.stub`` with ``.osrel``, ``.cmdline``,
                 ``.linux`` and ``.initrd`` sections added by objcopy
- ``esp.img``    a FAT32 ESP: systemd-boot at ``EFI/BOOT/BOOTX64.EFI``,
                 ``loader/loader.conf``, the UKI as slot A under ``EFI/Linux``
- ``disk.raw``   GPT with that ESP as its partition named ``EFI``
- ``talos.iso``  El Torito EFI boot image = that ESP, also appended as a GPT
                 partition (hybrid: boots as a CD and written to a stick)

The ESP's layout (names, loader.conf) is ``talos_init.boot.esp``'s, the one the
node writes when it installs itself.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from talos_init import __version__
from talos_init.boot import esp, pe

STUB = Path("/usr/lib/systemd/boot/efi/linuxx64.efi.stub")
SYSTEMD_BOOT = Path("/usr/lib/systemd/boot/efi/systemd-bootx64.efi")
# The installed node's command line: a panic reboots after 10 s, so a kernel that cannot
# start its init runs out of boot-counting tries instead of hanging (docs/for-devs/boot.md).
CMDLINE = "console=ttyS0 panic=10 loglevel=6"
ESP_MIB = 256  # the artifacts' ESP: two slots of ~55 MiB fit; the installed one is 512 MiB
FAT_EPOCH = 315532800  # 1980-01-01, the earliest time FAT can store
VOLUME_ID = "7a105e1f"
DISK_GUID = "5a105e1f-0000-4000-8000-000000000001"
ESP_GUID = "5a105e1f-0000-4000-8000-000000000002"
SECTION_ALIGN = 0x1000


class BootImageError(RuntimeError):
    pass


def _run(argv: list[str], what: str, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise BootImageError(f"{what}: {argv[0]} exited {proc.returncode}: {proc.stderr.strip()}")
    return proc.stdout


def _epoch() -> int:
    return max(int(os.environ.get("SOURCE_DATE_EPOCH", "0")), FAT_EPOCH)


def osrel(version: str = __version__) -> bytes:
    # No ID= or IMAGE_ID=: without a sort key systemd-boot orders entries by file name (newest
    # generation first, talos_init.boot.slots); with one it would order them by VERSION_ID,
    # and a rollback to an older version would never be first.
    return (f'NAME="talos-init"\nPRETTY_NAME="talos-init {version}"\n'
            f"VERSION_ID={version}\n").encode()


def _stub_end(stub: Path) -> int:
    """The first address after the stub's own sections."""
    end = 0
    for line in _run(["objdump", "-h", str(stub)], "reading the stub's sections").splitlines():
        m = re.match(r"\s*\d+\s+\S+\s+([0-9a-f]+)\s+([0-9a-f]+)\s", line)
        if m:
            end = max(end, int(m.group(2), 16) + int(m.group(1), 16))
    if not end:
        raise BootImageError(f"{stub}: no sections found by objdump")
    return end


def uki(kernel: Path, initrd: Path | list[Path], out: Path, cmdline: str = CMDLINE,
        version: str = __version__, stub: Path = STUB) -> Path:
    """Write a unified kernel image: the stub plus .osrel, .cmdline, .linux, .initrd.

    Each section starts at the next 4 KiB boundary after the previous one, after the stub's
    own sections (the stub finds them by name; their addresses must not overlap). Several
    initrds are concatenated, as the kernel unpacks them in order (later files win).
    """
    if not stub.is_file():
        raise BootImageError(f"{stub}: missing (apt-get install systemd-boot-efi)")
    initrds = [initrd] if isinstance(initrd, Path) else list(initrd)
    with tempfile.TemporaryDirectory(prefix="uki-") as tmp:
        t = Path(tmp)
        (t / "osrel").write_bytes(osrel(version))
        (t / "cmdline").write_bytes(cmdline.encode() + b"\0")
        if len(initrds) == 1:
            initrd_file = initrds[0]
        else:
            initrd_file = t / "initrd"
            with open(initrd_file, "wb") as f:
                for part in initrds:
                    f.write(part.read_bytes())
        sections = [(".osrel", t / "osrel"), (".cmdline", t / "cmdline"), (".linux", kernel),
                    (".initrd", initrd_file)]
        argv = ["objcopy"]
        vma = _stub_end(stub)
        for name, path in sections:
            vma = (vma + SECTION_ALIGN - 1) // SECTION_ALIGN * SECTION_ALIGN
            argv += ["--add-section", f"{name}={path}", "--change-section-vma", f"{name}={vma:#x}"]
            vma += path.stat().st_size
        tmp_out = out.with_name(out.name + ".tmp")
        _run([*argv, str(stub), str(tmp_out)], f"building {out.name}")
        # objcopy stamps the PE header with the time of the build: put the stub's back.
        data = bytearray(tmp_out.read_bytes())
        pe.set_timestamp(data, _stub_timestamp(stub))
        tmp_out.write_bytes(data)
        os.replace(tmp_out, out)
    return out


def _stub_timestamp(stub: Path) -> int:
    import struct
    head = stub.read_bytes()[:4096]
    return struct.unpack_from("<I", head, struct.unpack_from("<I", head, 0x3C)[0] + 8)[0]


def _mtools_env() -> dict[str, str]:
    # mtools stamps new directory entries with the time; SOURCE_DATE_EPOCH fixes it (4.0.32).
    return {**os.environ, "SOURCE_DATE_EPOCH": str(_epoch()), "MTOOLS_SKIP_CHECK": "1",
            "TZ": "UTC"}


def esp_image(uki_path: Path, out: Path, mib: int = ESP_MIB) -> Path:
    """A FAT32 file system image laid out as an installed ESP with ``uki_path`` as slot A."""
    tmp_out = out.with_name(out.name + ".tmp")
    tmp_out.unlink(missing_ok=True)
    _run(["mkfs.vfat", "-F", "32", "-s", "1", "-n", esp.FAT_LABEL, "-i", VOLUME_ID, "--invariant",
          "-C", str(tmp_out), str(mib * 1024)], "formatting the ESP")
    env = _mtools_env()
    img = f"{tmp_out}"
    with tempfile.TemporaryDirectory(prefix="esp-") as tmp:
        t = Path(tmp)
        files = esp.initial_files()
        for d in esp.DIRECTORIES:
            _run(["mmd", "-i", img, "::/" + d], f"mkdir {d} on the ESP", env)
        for rel, content in files.items():
            src = t / rel.replace("/", "_")
            src.write_bytes(content)
            os.utime(src, (_epoch(), _epoch()))
            _run(["mcopy", "-m", "-i", img, str(src), "::/" + rel], f"copying {rel}", env)
        sources = {esp.BOOTLOADER: SYSTEMD_BOOT, f"{esp.LINUX_DIR}/{esp.entry_name(1, 'a')}": uki_path}
        for rel, src in sources.items():
            if not src.is_file():
                raise BootImageError(f"{src}: missing (apt-get install systemd-boot-efi)")
            staged = t / Path(rel).name
            staged.write_bytes(src.read_bytes())
            os.utime(staged, (_epoch(), _epoch()))
            _run(["mcopy", "-m", "-i", img, str(staged), "::/" + rel], f"copying {rel}", env)
    os.replace(tmp_out, out)
    return out


def raw_disk(esp_path: Path, out: Path) -> Path:
    """A GPT disk whose first partition (named EFI, type EF00) is ``esp_path``."""
    esp_bytes = esp_path.stat().st_size
    start = 2048  # sectors: 1 MiB, as sgdisk aligns
    total = start * 512 + esp_bytes + 1024 * 1024
    tmp_out = out.with_name(out.name + ".tmp")
    with open(tmp_out, "wb") as f:
        f.truncate(total)
    end = start + esp_bytes // 512 - 1
    _run(["sgdisk", f"--disk-guid={DISK_GUID}", f"--new=1:{start}:{end}", "--typecode=1:EF00",
          f"--change-name=1:{esp.PART_NAME}", f"--partition-guid=1:{ESP_GUID}", str(tmp_out)],
         "partitioning the raw disk")
    with open(esp_path, "rb") as src, open(tmp_out, "r+b") as dst:
        dst.seek(start * 512)
        while chunk := src.read(1 << 20):
            if chunk.count(0) == len(chunk):
                dst.seek(len(chunk), os.SEEK_CUR)  # keep the file sparse
            else:
                dst.write(chunk)
    os.replace(tmp_out, out)
    return out


def iso(esp_path: Path, out: Path, volume: str = "TALOS") -> Path:
    """A hybrid ISO: El Torito EFI boot image and an appended GPT partition, both the ESP."""
    tmp_out = out.with_name(out.name + ".tmp")
    tmp_out.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="iso-") as tmp:
        root = Path(tmp) / "root"
        root.mkdir()
        (root / "README.txt").write_text("talos-init: boot this disc or stick with UEFI.\n")
        os.utime(root / "README.txt", (_epoch(), _epoch()))
        os.utime(root, (_epoch(), _epoch()))
        stamp = _epoch()
        _run(["xorriso", "-as", "mkisofs", "-quiet", "-o", str(tmp_out), "-V", volume,
              "-R", "-J",
              # The ESP appended as partition 2 of a GPT, and El Torito pointing at it.
              "-append_partition", "2", "C12A7328-F81F-11D2-BA4B-00A0C93EC93B", str(esp_path),
              "-appended_part_as_gpt", "-e", "--interval:appended_partition_2:all::",
              "-no-emul-boot", str(root)], "building the ISO",
             {**os.environ, "SOURCE_DATE_EPOCH": str(stamp)})
    os.replace(tmp_out, out)
    return out


def build_all(build: Path, cmdline: str = CMDLINE, version: str = __version__,
              extra_initrds: list[Path] = (), name: str = "talos",
              quiet: bool = True) -> dict[str, Path]:
    """The UKI, ESP, raw disk and ISO from ``build``'s vmlinuz and initramfs.img."""
    def say(msg: str) -> None:
        if not quiet:
            print(f"boot: {msg}", flush=True)

    kernel, initrd = build / "vmlinuz", build / "initramfs.img"
    for f in (kernel, initrd):
        if not f.is_file():
            raise BootImageError(f"{f}: missing; build the image first (python -m initramfs.build)")
    out = {"uki": uki(kernel, [initrd, *extra_initrds], build / f"{name}.efi", cmdline, version)}
    say(f"{out['uki'].name}: {out['uki'].stat().st_size / 2**20:.1f} MiB, cmdline {cmdline!r}")
    out["esp"] = esp_image(out["uki"], build / f"{name}-esp.img")
    out["disk"] = raw_disk(out["esp"], build / f"{name}-disk.raw")
    say(f"{out['disk'].name}: GPT, partition {esp.PART_NAME} (FAT32, {ESP_MIB} MiB)")
    # The ISO's ESP holds one slot: sized to it (FAT32 needs 33 MiB at least), not 256 MiB.
    small = esp_image(out["uki"], build / f"{name}-iso-esp.img",
                      mib=max(40, out["uki"].stat().st_size // 2**20 + 8))
    out["iso"] = iso(small, build / f"{name}.iso")
    small.unlink()
    say(f"{out['iso'].name}: {out['iso'].stat().st_size / 2**20:.1f} MiB, UEFI El Torito + GPT")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m initramfs.bootimg", description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("build"), help="the build directory")
    p.add_argument("--cmdline", default=CMDLINE, help="the kernel command line in the UKI")
    p.add_argument("--version", default=__version__, help="the version in the UKI's .osrel")
    p.add_argument("--name", default="talos", help="artifact names: NAME.efi, NAME.iso...")
    args = p.parse_args(argv)
    try:
        build_all(args.out, args.cmdline, args.version, name=args.name, quiet=False)
    except BootImageError as e:
        print(f"boot artifacts failed: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
