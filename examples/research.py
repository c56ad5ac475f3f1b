"""Planner -> one worker per source -> synthesizer: a research team.

A planner reads the question and picks the sources worth reading; one reader per source
runs in parallel, each with only its own source in view (a clean context), and extracts
the source's key claims; a synthesizer reconciles the claims, keeps what the sources
agree on and flags where they contradict each other:

                         +--> reader(source 1) --+
    planner (0.10 s) ----+--> reader(source 2) --+--> synthesizer (0.15 s)
                         +--> ...              --+
                              (async, 0.10-0.45 s each)

The number of readers is known only once the planner has run, so the middle stage is a
`cp.fan_out` over the plan's sources, inside a `cp.sequential` chain. Everything is
simulated (no web, no LLM): each source is a small dict of claims and a latency.

Run it with:  python examples/research.py
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import counterpoint as cp

QUESTION = "Do parallel multi-agent systems beat a single agent on latency and cost?"

# The library the planner chooses from: how long reading each source takes (a fetch plus
# an LLM pass), and what it claims, as topic -> (subject, statement).
SOURCES: dict[str, dict[str, Any]] = {
    "arxiv-2507.08944": {"latency": 0.45, "claims": {
        "latency": ("wall time", "tracks the slowest sub-task"),
        "cost": ("token overhead", "3-5x a single agent")}},
    "anthropic-blog": {"latency": 0.30, "claims": {
        "quality": ("answer quality", "+90% on research evals"),
        "cost": ("token overhead", "about 15x a chat")}},
    "kore-benchmarks": {"latency": 0.35, "claims": {
        "cost": ("coordination overhead", "varies 200%+ across patterns"),
        "latency": ("wall time", "tracks the slowest sub-task")}},
    "langchain-case-study": {"latency": 0.25, "claims": {
        "latency": ("time to root cause", "93% less")}},
    "hn-thread": {"latency": 0.10, "claims": {
        "hype": ("agents", "just chatbots")}},
}

LATENCY = {"planner": 0.10, "synthesizer": 0.15}


def planner(question: str) -> dict[str, Any]:
    """Picks the sources that speak to the question's topics."""
    time.sleep(LATENCY["planner"])
    wanted = {topic for topic in ("latency", "cost", "quality") if topic in question.lower()}
    wanted.add("quality")  # always check whether it is worth it at all
    picked = [name for name, source in SOURCES.items() if set(source["claims"]) & wanted]
    return {"question": question, "topics": sorted(wanted), "sources": picked}


async def read_source(assignment: dict[str, Any]) -> dict[str, Any]:
    """One reader: sees only its own source and extracts its claims."""
    source = SOURCES[assignment["source"]]
    await asyncio.sleep(source["latency"])  # fetch + read
    claims = {topic: claim for topic, claim in source["claims"].items()
              if topic in assignment["topics"]}
    return {"source": assignment["source"], "claims": claims}


def assignments(plan: dict[str, Any]) -> list[dict[str, Any]]:
    """What the fan-out runs over: one assignment per source in the plan."""
    return [{"source": name, "topics": plan["topics"]} for name in plan["sources"]]


def synthesizer(readings: list[dict[str, Any]]) -> str:
    """Reconciles the readers' claims subject by subject, flagging contradictions."""
    time.sleep(LATENCY["synthesizer"])
    by_subject: dict[tuple[str, str], dict[str, list[str]]] = {}
    for reading in readings:
        for topic, (subject, statement) in reading["claims"].items():
            by_subject.setdefault((topic, subject), {}).setdefault(statement, []).append(
                reading["source"])
    lines = []
    for (topic, subject), statements in sorted(by_subject.items()):
        if len(statements) == 1:
            ((statement, sources),) = statements.items()
            support = f"agreed by {', '.join(sources)}" if len(sources) > 1 else sources[0]
            lines.append(f"[{topic}] {subject} {statement}  ({support})")
        else:
            versions = "; ".join(f"{s!r} ({', '.join(src)})" for s, src in statements.items())
            lines.append(f"[{topic}] {subject}: CONTRADICTION - {versions}")
    return "\n".join(lines)


research = cp.sequential(planner, cp.fan_out(read_source, over=assignments), synthesizer)


def main() -> None:
    print(f"Question: {QUESTION}\n")
    timings: dict[str, dict[str, float]] = {}
    readers: dict[str, str] = {}
    started = time.perf_counter()
    for event in research.stream(QUESTION, stream_mode="events"):
        if event.kind == "end":
            wall = time.perf_counter() - started
            answer = event.output
            break
        timings.setdefault(event.agent or "(run)", {})[event.kind] = event.time
        if event.kind == "finish" and event.agent == "planner":
            plan = event.output
            print(f"Plan: read {len(plan['sources'])} sources on {', '.join(plan['topics'])}: "
                  f"{', '.join(plan['sources'])}\n")
        if event.kind == "finish" and event.agent and "/worker[" in event.agent:
            readers[event.agent] = event.output["source"]

    print("Synthesis:")
    print("\n".join(f"  | {line}" for line in answer.splitlines()))

    # The sequential chain names its steps planner, step2 (the fan-out) and synthesizer;
    # the stream reports the readers inside the fan-out as step2/fan_out/worker[i].
    print("\nMeasured timings (from the stream):")
    for agent in ("planner", *sorted(readers), "synthesizer"):
        label = f"reader {readers[agent]}" if agent in readers else agent
        t = timings[agent]
        print(f"  {label:<30} {t['start']:6.3f} -> {t['finish']:6.3f} s")

    read = [SOURCES[name]["latency"] for name in plan["sources"]]
    total = LATENCY["planner"] + sum(read) + LATENCY["synthesizer"]
    critical = LATENCY["planner"] + max(read) + LATENCY["synthesizer"]
    print(f"\nWall time:               {wall:5.3f} s")
    print(f"Sum of agent latencies:  {total:5.3f} s  (reading the sources one by one)")
    print(f"Critical path:           {critical:5.3f} s  (planner -> slowest reader -> synthesizer)")
    print(f"Wall / critical path:    {wall / critical:5.3f}x")


if __name__ == "__main__":
    main()
