"""Load kernel modules from PID 1 with finit_module(2): no modprobe process.

Used for the few modules PID 1 itself needs before any service runs (loop and
squashfs for the payload mount), and by the var service for the storage
drivers and ext4 (``load_for_aliases``: a device's modalias matched against
``modules.alias``, as modprobe does); udev and the hardening step load the
rest with modprobe. Dependencies come from the image's ``modules.dep`` and
are loaded first; a module already loaded or built in is not an error.
Soft ``pre:`` dependencies (``modules.softdep``, names or aliases) are loaded
before, as modprobe does, and may fail: ext4 and jbd2 name ``crypto-crc32c``,
which modules.dep cannot see (they ask the crypto API for it at mount time, and
without it the kernel starts a modprobe process in the middle of the mount).
"""

from __future__ import annotations

import errno
import os

from talos_init import syscalls, wildcard

# No pathlib or typing here: the kernel module loader (talos_init.preload) imports this module
# before PID 1's other imports, and they bring re, urllib and more (a tenth of a second under
# TCG). Paths are str or os.PathLike.
TYPE_CHECKING = False  # typing's own constant, without importing typing
if TYPE_CHECKING:
    from typing import TypeAlias

    PathArg: TypeAlias = str | os.PathLike[str]


def _read(*parts: PathArg) -> str:
    with open(os.path.join(*parts), encoding="utf-8") as f:
        return f.read()


def _name(path: str) -> str:
    return os.path.basename(path).split(".ko")[0].replace("-", "_")


def _moddir(root: PathArg, release: str | None) -> str:
    return os.path.join(root, "usr/lib/modules", release or os.uname().release)


def read_dep(moddir: PathArg) -> dict[str, list[str]]:
    """``modules.dep`` as module name -> [its file, then its dependencies' files] (relative)."""
    table: dict[str, list[str]] = {}
    for line in _read(moddir, "modules.dep").splitlines():
        module, sep, deps = line.partition(":")
        if sep:
            table[_name(module)] = [module, *deps.split()]
    return table


def builtin(moddir: PathArg) -> set[str]:
    try:
        return {_name(line) for line in _read(moddir, "modules.builtin").split()}
    except FileNotFoundError:
        return set()


def read_aliases(moddir: PathArg) -> list[tuple[str, str]]:
    """``modules.alias`` as (pattern, module name) pairs, in the file's order."""
    pairs = []
    for line in _read(moddir, "modules.alias").splitlines():
        words = line.split()
        if len(words) == 3 and words[0] == "alias":
            pairs.append((words[1], _name(words[2])))
    return pairs


def read_softdeps(moddir: PathArg) -> dict[str, list[str]]:
    """``modules.softdep``'s ``pre:`` names (modules or aliases) per module."""
    table: dict[str, list[str]] = {}
    try:
        lines = _read(moddir, "modules.softdep").splitlines()
    except FileNotFoundError:
        return table
    for line in lines:
        words = line.split()
        if len(words) < 3 or words[0] != "softdep":
            continue
        pre = table.setdefault(_name(words[1]), [])
        section = ""
        for word in words[2:]:
            if word.endswith(":"):
                section = word
            elif section == "pre:":
                pre.append(word)
    return table


def resolve(modalias: str, aliases: list[tuple[str, str]]) -> list[str]:
    """The modules whose alias pattern matches ``modalias`` (shell wildcards, as kmod), each once."""
    return list(dict.fromkeys(m for pattern, m in aliases if wildcard.match(modalias, pattern)))


def _fits_cpu(module: str, aliases: list[tuple[str, str]], root: PathArg) -> bool:
    """False for a module made for CPU features this CPU lacks (its ``cpu:`` aliases match not
    the CPU's modalias, e.g. crc32c_intel without SSE4.2): its init would refuse with ENODEV
    after the kernel had read, checked and linked it."""
    patterns = [p for p, m in aliases if m == module and p.startswith("cpu:")]
    if not patterns:
        return True
    try:
        cpu = _read(root, "sys/devices/system/cpu/modalias").strip()
    except OSError:
        return True
    return any(wildcard.match(cpu, p) for p in patterns)


def load_for_aliases(modaliases: list[str], root: PathArg = "/",
                     release: str | None = None) -> tuple[dict[str, str], list[str]]:
    """Load the drivers of these device modaliases (``modprobe -a ALIAS...``); returns what
    ``load`` returns and the modaliases no module matched. Raises like ``load``."""
    moddir = _moddir(root, release)
    aliases = read_aliases(moddir)
    names: list[str] = []
    unmatched = []
    for modalias in modaliases:
        found = resolve(modalias, aliases)
        names += found
        if not found:
            unmatched.append(modalias)
    return load(list(dict.fromkeys(names)), root, release), unmatched


SOFT_MISSES = ("failed", "skipped")  # load()'s outcomes for soft dependencies it did not load


def _insert(path: str, params: str) -> str:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        syscalls.finit_module(fd, params, path=path)
        return "loaded"
    except OSError as e:
        if e.errno != errno.EEXIST:  # raced with udev's modprobe: fine
            raise
        return "already"
    finally:
        os.close(fd)


def load(names: list[str] | tuple[str, ...], root: PathArg = "/",
         release: str | None = None) -> dict[str, str]:
    """Load each module and what it needs; return name -> loaded | already | builtin, and for
    soft dependencies not loaded: failed (soft) | skipped (...).

    A name may carry parameters after a space, as for modprobe: ``"loop max_loop=1"``.

    Raises ``OSError`` (or ``LookupError`` for a module the index lacks) naming
    the module file: the caller decides what a missing module means.
    """
    moddir = _moddir(root, release)
    sys_module = os.path.join(root, "sys/module")
    dep: dict[str, list[str]] | None = None  # read only if something needs loading
    soft: dict[str, list[str]] = {}
    aliases: list[tuple[str, str]] = []
    done: dict[str, str] = {}

    def soft_pre(name: str) -> None:
        """Load what ``name`` softly needs first; a failure is modprobe's: not fatal."""
        for wanted in soft.get(name, ()):
            if not aliases:
                aliases.extend(read_aliases(moddir))
            for module in resolve(wanted, aliases) or [_name(wanted)]:
                if done.get(module, "").startswith(SOFT_MISSES):
                    continue  # tried for an earlier module already
                if not _fits_cpu(module, aliases, root):
                    done[module] = "skipped (the CPU lacks its features)"
                    continue
                try:
                    one(module)
                except (OSError, LookupError):  # e.g. refused by its init
                    done[module] = "failed (soft)"

    def one(name: str, params: str = "") -> None:
        nonlocal dep
        if name in done and not done[name].startswith(SOFT_MISSES):  # a hard need tries again
            return
        if os.path.exists(os.path.join(sys_module, name)):  # loaded, or built in with parameters
            done[name] = "already"
            return
        if dep is None:
            dep = read_dep(moddir)
            soft.update(read_softdeps(moddir))
        if name not in dep:
            if name in builtin(moddir):
                done[name] = "builtin"
                return
            raise LookupError(f"module {name}: not in {os.path.join(moddir, 'modules.dep')}")
        done[name] = "loading"  # a soft cycle (A pre: B, B pre: A) ends here
        try:
            soft_pre(name)
            file, *needs = dep[name]
            # modprobe's order: the list's last entry is the deepest dependency.
            for need in reversed(needs):
                one(_name(need))
            done[name] = _insert(os.path.join(moddir, file), params)
        except BaseException:
            del done[name]  # not loaded: whatever needs it later must try again
            raise

    for n in names:
        name, _, params = n.partition(" ")
        one(name.replace("-", "_"), params.strip())
    return done
