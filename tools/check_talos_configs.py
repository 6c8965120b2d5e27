"""Validate the machine configs Talos' own tests generate for each release, from a Talos clone.

Talos keeps, per release 1.3 to 1.15, the base and "overrides" worker and controlplane
configs its generator writes (pkg/machinery/config/types/v1alpha1/testdata/stability/).
Each must be accepted here. Prints one line per file and exits 1 if any is refused.

    python3 tools/check_talos_configs.py /work/.mirror/siderolabs+talos/repo
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from talos_init.userdata import validate  # noqa: E402

STABILITY = "pkg/machinery/config/types/v1alpha1/testdata/stability/"


def main(repo: str) -> int:
    git = ["git", "--git-dir", f"{repo}/.git" if Path(f"{repo}/.git").exists() else repo]
    names = subprocess.run([*git, "ls-tree", "-r", "--name-only", "HEAD", STABILITY],
                           check=True, capture_output=True, text=True).stdout.split()
    refused = 0
    for name in sorted(n for n in names if "/v1." in n and n.endswith(".yaml")):
        text = subprocess.run([*git, "show", f"HEAD:{name}"], check=True,
                              capture_output=True).stdout
        result = validate.parse(text, name)
        label = name.removeprefix(STABILITY)
        if result.ok:
            print(f"ok       {label} ({len(result.unsupported)} unsupported notices)")
        else:
            refused += 1
            print(f"REFUSED  {label}")
            for p in result.errors:
                print("    " + p.format(label))
    checked = [n for n in names if "/v1." in n and n.endswith(".yaml")]
    print(f"{len(checked)} configs, {refused} refused")
    return 1 if refused else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
