"""``osctl validate FILE``: the node's own validator on a workstation, same messages.

``validate_cli(argv)`` takes the arguments after ``validate``; also runnable alone as
``python3 -m talos_init.userdata.cli FILE``. Exit 0: valid; 1: invalid; 2: cannot read.
"""

from __future__ import annotations

import argparse
import sys
from typing import TextIO

from talos_init.userdata import validate

EXIT_VALID, EXIT_INVALID, EXIT_USAGE = 0, 1, 2


def validate_cli(argv: list[str], out: TextIO | None = None) -> int:
    out = out or sys.stdout
    parser = argparse.ArgumentParser(
        prog="osctl validate",
        description="Check a Talos v1alpha1 machine config as a talos-init node would.",
    )
    parser.add_argument("file", help="the machine config (YAML), or - for standard input")
    parser.add_argument("--quiet", "-q", action="store_true", help="print errors only")
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:
        return EXIT_USAGE if e.code else EXIT_VALID
    name = "<stdin>" if args.file == "-" else args.file
    try:
        if args.file == "-":
            data = sys.stdin.buffer.read(validate.MAX_BYTES + 1)
        else:
            with open(args.file, "rb") as f:
                data = f.read(validate.MAX_BYTES + 1)
    except OSError as e:
        print(f"{name}: cannot read: {e.strerror or e}", file=out)
        return EXIT_USAGE
    result = validate.parse(data, source=name)
    for problem in result.problems:
        if args.quiet and problem.severity != validate.ERROR:
            continue
        print(problem.format(name), file=out)
    if result.config is None:
        n = len(result.errors)
        print(f"{name}: invalid: {n} error{'s' if n != 1 else ''}", file=out)
        return EXIT_INVALID
    if not args.quiet:
        print(
            f"{name}: valid {result.config.machine.type} config "
            f"({len(result.unsupported)} fields accepted but not supported here)",
            file=out,
        )
    return EXIT_VALID


def main() -> int:
    return validate_cli(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
