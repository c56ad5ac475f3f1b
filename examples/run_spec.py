"""Loads examples/customer_message.yaml and runs it on the example's customer message.

The spec names the agents of examples/customer_message.py by import path; `allow=`
lets the loader import that module and nothing else.

Run it with:  python examples/run_spec.py   (needs PyYAML: pip install "counterpoint[yaml]")
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import counterpoint as cp

HERE = Path(__file__).resolve().parent


def main() -> None:
    if str(HERE) not in sys.path:  # `customer_message` lives next to this script
        sys.path.insert(0, str(HERE))
    app = cp.load(HERE / "customer_message.yaml", allow=["customer_message"])
    from customer_message import MESSAGE

    started = time.perf_counter()
    reply = app.invoke(MESSAGE)
    print(f"Ran {', '.join(app.agents)} in {time.perf_counter() - started:.2f} s:\n")
    print(reply)


if __name__ == "__main__":
    main()
