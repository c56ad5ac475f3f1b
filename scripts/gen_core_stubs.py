#!/usr/bin/env python3
"""Regenerates python/counterpoint/_core.pyi from the built extension, or checks it.

The stub describes the compiled module ``counterpoint._core`` to type checkers and IDEs.
It is generated, never edited by hand: after changing the bindings (cpp/bindings),
rebuild and regenerate:

    pip install ".[dev]"                      # builds _core; brings pybind11-stubgen
    python scripts/gen_core_stubs.py          # rewrites python/counterpoint/_core.pyi
    python scripts/gen_core_stubs.py --check  # CI (scripts/lint.sh): fails on drift

The interpreter running this script must import the *built* counterpoint (an installed
wheel or an editable install), not the source tree, and have pybind11-stubgen (the
``dev`` extra pins its version, since its output format changes between releases).

Exit status: 0 when written or up to date; 1 when --check finds a difference or
(with --strict) pybind11-stubgen reports errors; 2 on a usage or environment problem.
"""

from __future__ import annotations

import argparse
import difflib
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STUB = ROOT / "python" / "counterpoint" / "_core.pyi"
MODULE = "counterpoint._core"
HEADER = (
    "# Generated from the built extension by scripts/gen_core_stubs.py: do not edit.\n"
    "# CI fails when this file and the module differ (scripts/lint.sh).\n"
)


def generate(strict: bool) -> str:
    with tempfile.TemporaryDirectory(prefix="cp-stubs-") as out:
        cmd = [
            sys.executable, "-m", "pybind11_stubgen", MODULE, "--output-dir", out,
            # Every enum the bindings define lives in _core itself.
            "--enum-class-locations", f".+:{MODULE}",
        ]
        # Run outside the checkout so that `import counterpoint` finds the built package.
        proc = subprocess.run(cmd, cwd=out, capture_output=True, text=True)
        report = (proc.stdout + proc.stderr).strip()
        if proc.returncode != 0:
            sys.exit(f"pybind11-stubgen failed ({' '.join(cmd)}):\n{report}\n"
                     "Is counterpoint built and installed for this interpreter, and "
                     "pybind11-stubgen installed (pip install '.[dev]')?")
        errors = [line for line in report.splitlines() if "ERROR" in line]
        if errors:
            # Usually a C++ type name in a signature: a py::arg default or a class bound
            # after a function that uses it. The stub then says `...` for that type.
            print("pybind11-stubgen reported problems in the bindings:", file=sys.stderr)
            for line in errors:
                print(f"  {line}", file=sys.stderr)
            if strict:
                sys.exit(1)
        text = (Path(out) / Path(*MODULE.split("."))).with_suffix(".pyi").read_text()
    return HEADER + text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="compare with the checked-in stub instead of writing it")
    parser.add_argument("--strict", action="store_true",
                        help="fail when pybind11-stubgen reports errors")
    args = parser.parse_args(argv)

    try:
        import counterpoint._core as core
    except ImportError as exc:
        print(f"cannot import {MODULE}: {exc}", file=sys.stderr)
        return 2
    if Path(core.__file__).resolve().is_relative_to(ROOT / "python"):
        print(f"note: {MODULE} is imported from the source tree ({core.__file__}); "
              "make sure it is freshly built", file=sys.stderr)

    fresh = generate(args.strict)
    current = STUB.read_text() if STUB.exists() else ""
    if not args.check:
        if fresh != current:
            STUB.write_text(fresh)
            print(f"wrote {STUB.relative_to(ROOT)}")
        else:
            print(f"{STUB.relative_to(ROOT)} is up to date")
        return 0
    if fresh == current:
        print(f"{STUB.relative_to(ROOT)} matches the built module")
        return 0
    diff = difflib.unified_diff(current.splitlines(keepends=True), fresh.splitlines(keepends=True),
                                f"{STUB.relative_to(ROOT)} (checked in)",
                                f"{STUB.relative_to(ROOT)} (from the built module)")
    sys.stdout.writelines(diff)
    print(f"\n{STUB.relative_to(ROOT)} is out of date with the built {MODULE}: run "
          "`python scripts/gen_core_stubs.py` and commit the result.", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
