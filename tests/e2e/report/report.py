"""Test-only one-shot service: print what the tests check to the console, then exit.

Installed by the e2e overlay (never in the real image) as the ``e2e-report``
service after coldplug. Lines: ``E2E mount <target> <fstype> <options>``,
``E2E modules <names>``, ``E2E cpu <service> <cpu.weight.nice> <cpu.weight> <nice of each process>``
(this service itself, with ``confinement.nice: 10``, udevd, without, and containerd),
``E2E cpugroup <group> <cpu.weight>`` (the top-level groups), ``E2E done``.
"""

import time
from pathlib import Path


def cpu_line(service: str, top: str = "system") -> str:
    group = Path("/sys/fs/cgroup") / top / service
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:  # created just before its process joins it
        try:
            if (group / "cgroup.procs").read_text().split():
                break
        except OSError:
            pass
        time.sleep(0.2)
    try:
        weight = " ".join((group / f).read_text().strip() for f in ("cpu.weight.nice", "cpu.weight"))
        nices = []
        for pid in (group / "cgroup.procs").read_text().split():
            stat = Path(f"/proc/{pid}/stat").read_text()
            nices.append(stat[stat.rindex(")") + 2:].split()[16])
    except OSError as exc:
        return f"E2E cpu {service} unreadable {exc}\n"
    return f"E2E cpu {service} {weight} {' '.join(nices)}\n"


with open("/dev/console", "w") as console:
    for line in open("/proc/self/mountinfo"):
        f = line.split()
        sep = f.index("-")
        console.write(f"E2E mount {f[4]} {f[sep + 1]} {f[5]}\n")
    modules = sorted(line.split()[0] for line in open("/proc/modules"))
    console.write(f"E2E modules {' '.join(modules)}\n")
    for service, top in (("e2e-report", "system"), ("udevd", "system"), ("containerd", "podruntime")):
        console.write(cpu_line(service, top))
    for top in ("system", "podruntime"):
        try:
            console.write(f"E2E cpugroup {top} {Path('/sys/fs/cgroup', top, 'cpu.weight').read_text()}")
        except OSError as exc:
            console.write(f"E2E cpugroup {top} unreadable {exc}\n")
    console.write("E2E done\n")
