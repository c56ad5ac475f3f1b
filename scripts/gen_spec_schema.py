#!/usr/bin/env python3
"""Regenerates python/counterpoint/specs/spec.schema.json from the spec grammar, or
checks it.

The schema is generated from the same definitions the loader checks specs with
(python/counterpoint/specs/_grammar.py), never edited by hand:

    python scripts/gen_spec_schema.py          # rewrites the file
    python scripts/gen_spec_schema.py --check  # fails when the file differs

tests/python/test_specs.py checks it too.
"""

from __future__ import annotations

import argparse
import sys

import counterpoint as cp
from counterpoint.specs import SCHEMA_FILE, schema_text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the file differs")
    check = parser.parse_args().check
    text = schema_text()
    current = SCHEMA_FILE.read_text(encoding="utf-8") if SCHEMA_FILE.exists() else ""
    if check:
        if current != text:
            print(f"{SCHEMA_FILE} is out of date: run python scripts/gen_spec_schema.py",
                  file=sys.stderr)
            return 1
        return 0
    SCHEMA_FILE.write_text(text, encoding="utf-8")
    print(f"wrote {SCHEMA_FILE} (counterpoint {cp.__version__})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
