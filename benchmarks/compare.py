#!/usr/bin/env python3
"""Before/after comparison of the engine figures, two builds in one run.

Runs benchmarks/engine.py (sections overhead, chain1000, batch) with the interpreters of
two environments, alternating them round by round (before, after; then after, before;
...), so that both builds see the same machine, and prints one table:

    chain-3 overhead, fan-out-5 overhead (us per invoke), 1,000-chain cost per agent,
    batch throughput (runs/s) and the batch's peak RSS growth (MiB)

with the median over rounds for each build, the ratio after/before, and whether the
change is beyond the spread of the rounds.

Usage:
    python benchmarks/compare.py BEFORE AFTER [--rounds N] [--full] [--json PATH]

BEFORE and AFTER are virtual environments (directories) or Python interpreters, each
with its own counterpoint installed (non-editable, so that each runs its own build), and
psutil (optional). Both run this checkout's benchmarks/engine.py: the harness is the same
on both sides, only the engine differs. Default: 3 rounds of `engine.py --quick`
(about 1 minute per round and build); --full runs the full harness instead.

Example (issue 7's baseline):
    python benchmarks/compare.py /tmp/venv-before .venv --rounds 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SECTIONS = ["overhead", "chain1000", "batch"]

# (row key in engine.py's JSON, label, unit shown, scale from the JSON's unit,
#  higher is better)
FIGURES = [
    ("chain3.overhead", "chain-3 overhead per invoke", "us", 1e6, False),
    ("fanout5.overhead", "fan-out-5 overhead per invoke", "us", 1e6, False),
    ("chain3.invoke", "chain-3 invoke time", "us", 1e6, False),
    ("fanout5.invoke", "fan-out-5 invoke time", "us", 1e6, False),
    ("chain1000.per_agent", "1,000-chain time per agent", "us", 1e6, False),
    ("batch.rate_vs_tpe", "batch 10,000 x fan-out-5", "runs/s", 1.0, True),
    ("batch.rss", "batch peak RSS growth", "MiB", 1.0, False),
]


def interpreter(path: str) -> str:
    p = Path(path)
    if p.is_dir():
        p = p / "bin" / "python"
    if not p.exists():
        sys.exit(f"no interpreter at {p}")
    return str(p)


def describe(python: str) -> str:
    code = ("import counterpoint as cp, os; "
            "print(cp.__version__, os.path.dirname(cp.__file__), cp.TBB_VERSION)")
    out = subprocess.run([python, "-c", code], capture_output=True, text=True, cwd="/")
    if out.returncode != 0:
        sys.exit(f"{python} cannot import counterpoint:\n{out.stderr}")
    return out.stdout.strip()


def run_once(python: str, out: Path, full: bool, log: Path) -> dict[str, Any]:
    cmd = [python, str(HERE / "engine.py"), "--only", *SECTIONS, "--json", str(out)]
    if not full:
        cmd.insert(2, "--quick")
    with log.open("a") as f:
        f.write(f"\n$ {' '.join(cmd)}\n")
        f.flush()
        # Outside the checkout, so that nothing of the source tree shadows the install.
        proc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=tempfile.gettempdir())
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed (exit {proc.returncode}); see {log}")
    data: dict[str, Any] = json.loads(out.read_text())
    return data


def figures(data: dict[str, Any]) -> tuple[dict[str, float], float]:
    rows = {row["key"]: row for row in data["results"]}
    values = {key: rows[key]["measured"] * scale
              for key, _, _, scale, _ in FIGURES if key in rows}
    noise = max((v for v in data["meta"].get("background_cores", {}).values()
                 if v is not None), default=0.0)
    return values, noise


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "runs/s":
        return f"{value:,.0f}"
    return f"{value:,.2f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("before", help="venv directory or python of the 'before' build")
    parser.add_argument("after", help="venv directory or python of the 'after' build")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per build (default 3)")
    parser.add_argument("--full", action="store_true", help="full harness instead of --quick")
    parser.add_argument("--json", metavar="PATH", help="also write all samples as JSON")
    args = parser.parse_args(argv)

    sides = {"before": interpreter(args.before), "after": interpreter(args.after)}
    for name, python in sides.items():
        print(f"{name:6}: {python}\n        counterpoint {describe(python)}")
    work = Path(tempfile.mkdtemp(prefix="cp-compare-"))
    log = work / "engine-output.log"
    print(f"harness output: {log}\n", flush=True)

    samples: dict[str, dict[str, list[float]]] = {s: {} for s in sides}
    noise: dict[str, list[float]] = {s: [] for s in sides}
    for r in range(args.rounds):
        order = list(sides) if r % 2 == 0 else list(reversed(sides))
        for side in order:
            print(f"round {r + 1}/{args.rounds}: {side} ...", end=" ", flush=True)
            data = run_once(sides[side], work / f"{side}-{r}.json", args.full, log)
            values, busy = figures(data)
            noise[side].append(busy)
            for key, value in values.items():
                samples[side].setdefault(key, []).append(value)
            print(f"{data['meta']['seconds']:.0f} s, other processes up to {busy:.2f} cores",
                  flush=True)

    print(f"\nMedians over {args.rounds} round(s); spread = min..max over rounds.\n")
    header = (f"{'figure':32} {'unit':>6} {'before':>10} {'after':>10} {'after/before':>13}"
              f"  {'before spread':>19}  {'after spread':>19}  verdict")
    print(header)
    print("-" * len(header))
    table = []
    for key, label, unit, _, higher in FIGURES:
        b, a = samples["before"].get(key), samples["after"].get(key)
        if not b or not a:
            continue
        mb, ma = statistics.median(b), statistics.median(a)
        ratio = ma / mb if mb else None
        # A change counts only when the two builds' ranges over >= 2 rounds do not overlap.
        if min(len(a), len(b)) < 2:
            verdict = "(needs >= 2 rounds)"
        elif max(a) < min(b):
            verdict = "better" if not higher else "WORSE"
        elif min(a) > max(b):
            verdict = "WORSE" if not higher else "better"
        else:
            verdict = "same (within noise)"
        spread_b = f"{fmt(min(b), unit)}..{fmt(max(b), unit)}"
        spread_a = f"{fmt(min(a), unit)}..{fmt(max(a), unit)}"
        ratio_s = f"{ratio:.2f}x" if ratio is not None else "-"
        print(f"{label:32} {unit:>6} {fmt(mb, unit):>10} {fmt(ma, unit):>10} {ratio_s:>13}"
              f"  {spread_b:>19}  {spread_a:>19}  {verdict}")
        table.append({"key": key, "figure": label, "unit": unit, "before": b, "after": a,
                      "before_median": mb, "after_median": ma, "ratio": ratio,
                      "verdict": verdict})
    worst = max(max(v) for v in noise.values() if v) if any(noise.values()) else 0.0
    if worst > 0.2:
        print(f"\nNote: other processes kept up to {worst:.2f} cores busy during some "
              "sections: figures are noisy; rerun on a quiet machine (or more --rounds).")
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"sides": sides, "rounds": args.rounds, "full": args.full, "figures": table,
             "background_cores": noise, "raw_dir": str(work)}, indent=2))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
