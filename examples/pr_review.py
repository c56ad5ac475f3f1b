"""Parallel fan-out / fan-in: four reviewers look at a pull request at once.

The moment a pull request is opened, four specialised reviewers read the same diff,
each for one concern only, and a synthesizer merges their findings into one review
comment, ranked by severity:

           +--> security     (sync,  0.40 s)  --+
           +--> performance  (async, 0.30 s)  --+
    diff --+--> style        (sync,  0.15 s)  --+--> synthesize (0.10 s) --> review
           +--> tests        (async, 0.25 s)  --+

The reviewers are independent, so the review takes as long as the slowest reviewer plus
the synthesizer, not the sum of all five. Everything is simulated (no LLM): each
reviewer scans the diff with a few rules and sleeps for its configured latency.

Run it with:  python examples/pr_review.py
"""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

import counterpoint as cp

PULL_REQUEST = {
    "title": "Add order search endpoint",
    "diff": '''\
+ @app.get("/orders/search")
+ def search_orders(q):
+     rows = db.execute("SELECT * FROM orders WHERE note LIKE '%" + q + "%'")
+     result = []
+     for row in rows:
+         customer = db.execute("SELECT * FROM customers WHERE id = %s", (row.customer_id,))
+         result.append({"order": row, "customer": customer})
+     return result
''',
    "tests_changed": [],
}

# Simulated latency of every agent, in seconds.
LATENCY = {"security": 0.40, "performance": 0.30, "style": 0.15, "tests": 0.25,
           "synthesize": 0.10}
SEVERITY_ORDER = {"critical": 0, "major": 1, "minor": 2}


def security(pr: dict[str, Any]) -> list[dict[str, Any]]:
    """Looks only for injection and secrets."""
    time.sleep(LATENCY["security"])
    findings = []
    if re.search(r"execute\(\s*\"[^\"]*\"\s*\+", pr["diff"]):
        findings.append({"severity": "critical", "line": 3,
                         "text": "user input concatenated into SQL: use a parameterised query"})
    return findings


async def performance(pr: dict[str, Any]) -> list[dict[str, Any]]:
    """Looks only for queries in loops and unbounded results."""
    await asyncio.sleep(LATENCY["performance"])
    findings = []
    lines = pr["diff"].splitlines()
    in_loop = False
    for number, line in enumerate(lines, 1):
        in_loop = in_loop or line.lstrip("+ ").startswith("for ")
        if in_loop and "db.execute" in line:
            findings.append({"severity": "major", "line": number,
                             "text": "query inside a loop (N+1): join customers in one query"})
    if "LIMIT" not in pr["diff"]:
        findings.append({"severity": "minor", "line": 3, "text": "unbounded result set: paginate"})
    return findings


def style(pr: dict[str, Any]) -> list[dict[str, Any]]:
    """Looks only at readability."""
    time.sleep(LATENCY["style"])
    findings = []
    if "SELECT *" in pr["diff"]:
        findings.append({"severity": "minor", "line": 3, "text": "select the columns you need"})
    if re.search(r"def \w+\(q\)", pr["diff"]):
        findings.append({"severity": "minor", "line": 2, "text": "name the parameter `query`"})
    return findings


async def tests(pr: dict[str, Any]) -> list[dict[str, Any]]:
    """Looks only at test coverage."""
    await asyncio.sleep(LATENCY["tests"])
    if not pr["tests_changed"]:
        return [{"severity": "major", "line": None,
                 "text": "new endpoint has no tests: cover empty, match and injection inputs"}]
    return []


def synthesize(reviews: dict[str, list[dict[str, Any]]]) -> str:
    """Merges every reviewer's findings into one comment, most severe first."""
    time.sleep(LATENCY["synthesize"])
    findings = [dict(f, reviewer=name) for name, found in reviews.items() for f in found]
    findings.sort(key=lambda f: (SEVERITY_ORDER[f["severity"]], f["line"] or 0))
    verdict = "Changes requested" if any(f["severity"] != "minor" for f in findings) \
        else "Approved"
    lines = [f"{verdict}: {len(findings)} findings"]
    for f in findings:
        where = f"line {f['line']}" if f["line"] else "overall"
        lines.append(f"  [{f['severity']:<8}] {where:<8} {f['text']}  ({f['reviewer']})")
    return "\n".join(lines)


review_pr = cp.parallel(security=security, performance=performance, style=style,
                        tests=tests, merge=synthesize)


def main() -> None:
    print(f"Pull request: {PULL_REQUEST['title']}\n")
    started = time.perf_counter()
    result = review_pr.run(PULL_REQUEST)
    wall = time.perf_counter() - started
    comment = result.raise_for_status()

    print("Review comment:")
    print("\n".join(f"  | {line}" for line in comment.splitlines()))

    print("\nMeasured per-agent timings (app.run(pr).agents):")
    for name, outcome in result.agents.items():
        print(f"  {name:<12} {outcome.status:<10} {outcome.started:6.3f} -> "
              f"{outcome.finished:6.3f} s  ({outcome.duration:.3f} s)")

    reviewers = ("security", "performance", "style", "tests")
    total = sum(LATENCY.values())
    critical = max(LATENCY[r] for r in reviewers) + LATENCY["synthesize"]
    print(f"\nWall time:               {wall:5.3f} s")
    print(f"Sum of agent latencies:  {total:5.3f} s  (one reviewer after another)")
    print(f"Critical path:           {critical:5.3f} s  (security -> synthesize)")
    print(f"Wall / critical path:    {wall / critical:5.3f}x")


if __name__ == "__main__":
    main()
