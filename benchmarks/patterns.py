#!/usr/bin/env python3
"""Pattern benchmark harness for counterpoint.

What the orchestration patterns (python/counterpoint/patterns/) cost on top of a
hand-built `cp.Graph` doing the same work, and whether a realistic routed scenario
runs at its critical path. Every figure is printed next to a baseline measured in the
same run and the ratio between the two. A measurement tool, not a test suite: a missed
target is reported as MISS, never as a failure, and the exit status is 0.

Usage:
    python benchmarks/patterns.py [--quick] [--json out.json] [--only SECTION ...]
                                  [--settle SECONDS]

Sections (see benchmarks/README.md for what each figure means):
    overhead   1. per-invoke cost of each pattern vs the equivalent hand-built graph,
                  no-op agents (ten shapes)
    customer   2. the customer-message scenario: router + priority with simulated
                  latencies; wall time vs the critical path (target <= 1.1x)

Methodology as in engine.py: warm up first, time many back-to-back invokes per repeat
with the garbage collector paused, take the median over repeats, and interleave the
pattern and its baseline (rotating the order every repeat) so both see the same noise.
"""

from __future__ import annotations

import asyncio
import collections
import re
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import _harness as h
import counterpoint as cp
from _harness import DELTA, DispatchProbe, Results

SECTIONS = ("overhead", "customer")


# --------------------------------------------------------------------------------------
# No-op agents and their hand-built equivalents
# --------------------------------------------------------------------------------------


def noop(x):
    return x


def majority_reducer(outputs):
    """What a user would write by hand: the most common output (first seen wins ties)."""
    return collections.Counter(outputs.values()).most_common(1)[0][0]


def classify_two(message):
    return {"intents": ["billing", "shipping"]}


PLAN = [
    {"id": "a", "task": "reproduce"},
    {"id": "b", "task": "read logs", "depends_on": ["a"]},
    {"id": "c", "task": "bisect", "depends_on": ["a"]},
    {"id": "d", "task": "patch", "depends_on": ["b", "c"]},
]


def planner(task):
    return PLAN


def draft(brief):
    return brief["iteration"]


def passes_third(review):
    return review["iteration"] >= 3


def confident(x):
    return cp.Result(x, confidence=0.9)


def chain(*agents: Callable[[Any], Any]) -> cp.CompiledGraph:
    g = cp.Graph()
    for i, agent in enumerate(agents):
        g.add(f"s{i}", agent, after=None if i == 0 else f"s{i - 1}")
    return g.compile()


def fan_in(width: int, join: Callable[[Any], Any]) -> cp.CompiledGraph:
    """`width` entry no-ops, all receiving the input, then `join` on {name: output}."""
    g = cp.Graph()
    names = [f"b{i}" for i in range(width)]
    for name in names:
        g.add(name, noop)
    g.add("join", join, after=names)
    return g.compile()


def hand_fan_out(count: int) -> cp.CompiledGraph:
    """A fan-out over a list whose length is known when the graph is built: agent i
    calls the worker on item i, and `collect` lists the outputs in item order."""
    g = cp.Graph()
    names = [f"w{i}" for i in range(count)]
    for i, name in enumerate(names):
        g.add(name, lambda items, i=i: noop(items[i]))
    g.add("collect", lambda outs: [outs[name] for name in names], after=names)
    return g.compile()


def hand_router() -> cp.CompiledGraph:
    """The classifier, then the two routes it picks, then a join: routing decided when
    the graph is built."""
    g = cp.Graph()
    g.add("classify", classify_two)
    g.add("billing", noop, after="classify")
    g.add("shipping", noop, after="classify")
    g.add("join", noop, after=["billing", "shipping"])
    return g.compile()


def hand_dag() -> cp.CompiledGraph:
    """The supervisor's plan wired by hand: planner, the 4-subtask diamond, synthesizer."""
    g = cp.Graph()
    g.add("planner", planner)
    g.add("a", noop, after="planner")
    g.add("b", noop, after="a")
    g.add("c", noop, after="a")
    g.add("d", noop, after=["b", "c"])
    g.add("synthesizer", noop, after=["a", "b", "c", "d"])
    return g.compile()


def flattened() -> cp.CompiledGraph:
    g = cp.Graph()
    g.add("a", noop)
    g.add("b", noop, after="a")
    g.add("c", noop, after="a")
    g.add("d", noop, after=["b", "c"])
    return g.compile()


@dataclass
class Case:
    key: str
    label: str
    pattern: Callable[[], cp.CompiledGraph]
    hand: Callable[[], cp.CompiledGraph]
    hand_label: str
    input: Any
    check: Callable[[Any, Any], bool]
    # The supervisor compiles its child graph in its first run (then reuses it for every
    # plan of the same shape); False keeps the probe on the build only, so its counts
    # cover the top-level agents, not the child graph's workers.
    probe_first_invoke: bool = True


def _merged_value(expected: Any) -> Callable[[Any, Any], bool]:
    return lambda p, hb: isinstance(p, cp.Merged) and p.value == hb == expected


CASES = [
    Case("sequential3", "sequential(3 no-ops)",
         lambda: cp.sequential(noop, noop, noop),
         lambda: chain(noop, noop, noop), "3-chain Graph", 1,
         lambda p, hb: p == hb == 1),
    Case("parallel5", "parallel(5 branches, merge=None)",
         lambda: cp.parallel(**{f"b{i}": noop for i in range(5)}),
         lambda: fan_in(5, noop), "fan-out + join", 1,
         lambda p, hb: p == hb == {f"b{i}": 1 for i in range(5)}),
    Case("parallel5_majority", 'parallel(5, merge="majority")',
         lambda: cp.parallel(**{f"b{i}": noop for i in range(5)}, merge="majority"),
         lambda: fan_in(5, majority_reducer), "+ majority reducer", 1,
         _merged_value(1)),
    Case("fan_out5", "fan_out(no-op) over 5 items",
         lambda: cp.fan_out(noop, over=noop),
         lambda: hand_fan_out(5), "5-way fan-out", [1, 2, 3, 4, 5],
         lambda p, hb: p == hb == [1, 2, 3, 4, 5]),
    Case("router2of4", "router, 2 of 4 routes taken",
         lambda: cp.router(classify_two, routes={r: noop for r in
                                                 ("billing", "shipping", "promotions", "address")}),
         hand_router, "classify + 2 routes", "msg",
         lambda p, hb: set(p) == set(hb) == {"billing", "shipping"}),
    Case("supervisor4", "supervisor, 4-subtask DAG",
         lambda: cp.supervisor(planner, workers={"w": noop}, synthesizer=noop),
         hand_dag, "hand-wired DAG", "bug",
         lambda p, hb: set(p["results"]) == set(hb) == {"a", "b", "c", "d"},
         probe_first_invoke=False),
    Case("loop3", "loop, 3 iterations",
         lambda: cp.loop(draft, passes_third, max_iterations=5),
         lambda: chain(*([noop] * 6)), "6-agent chain", "essay",
         lambda p, hb: isinstance(p, cp.LoopResult) and p.iterations == 3
         and p.stopped == "passed" and hb == "essay"),
    Case("consensus3", "consensus(3 voters)",
         lambda: cp.consensus([noop, noop, noop]),
         lambda: fan_in(3, majority_reducer), "3 + majority reducer", 1,
         _merged_value(1)),
    Case("adaptive_cheap", "adaptive, cheap path kept",
         lambda: cp.adaptive(confident, escalate_to=noop),
         lambda: chain(confident), "1-agent graph", 1,
         lambda p, hb: isinstance(p, cp.Escalation) and p.path == "cheap" and p.value == 1
         and hb.value == 1),
    Case("nested", "sequential(a, parallel(b, c), d)",
         lambda: cp.sequential(noop, ("team", cp.parallel(b=noop, c=noop)), noop),
         flattened, "flattened a->{b,c}->d", 1,
         lambda p, hb: p == hb == {"b": 1, "c": 1}),
]


def per_run_agents(app: cp.CompiledGraph, value: Any) -> int:
    """Sync agents created while one run executes (0 for a warm supervisor: it compiles
    its child graph only for a plan shape it has not seen). Uses the same private hook as
    the dispatch probe."""
    probe = DispatchProbe()
    with probe:
        app.invoke(value)
    return len(probe.handles)


def compile_like_supervisor_child() -> cp.CompiledGraph:
    """The child graph supervisor's dispatch builds for PLAN (once, then reused for
    every plan of its shape): per subtask an inline brief node and a worker node, plus
    an inline collect node."""
    g = cp.Graph()
    for subtask in PLAN:
        deps = subtask.get("depends_on") or None
        g.add(f"{subtask['id']}:brief", noop, after=deps, dispatch="inline")
        g.add(subtask["id"], noop, after=f"{subtask['id']}:brief")
    g.add("collect", dict, after=[s["id"] for s in PLAN], dispatch="inline")
    return g.compile()


def bench_overhead(res: Results, cfg: dict[str, Any]) -> None:
    print("[1] pattern overhead over the same work as a hand-built cp.Graph, no-op agents",
          flush=True)
    for case in CASES:
        probe_p, probe_h = DispatchProbe(), DispatchProbe()
        with probe_p:
            pattern = case.pattern()
            if case.probe_first_invoke:
                out_p = pattern.invoke(case.input)
        if not case.probe_first_invoke:
            out_p = pattern.invoke(case.input)
        with probe_h:
            hand = case.hand()
        out_h = hand.invoke(case.input)
        if not case.check(out_p, out_h):
            raise AssertionError(f"{case.key}: unexpected outputs {out_p!r} / {out_h!r}")
        run_p = lambda app=pattern, x=case.input: app.invoke(x)
        run_h = lambda app=hand, x=case.input: app.invoke(x)
        for fn in (run_p, run_h):
            h.warm(fn, cfg["warmup_invokes"], cfg["warmup_seconds"])
        samples = h.interleaved(
            {"pattern": (run_p, h.calibrate(run_p, cfg["repeat_seconds"])),
             "hand": (run_h, h.calibrate(run_h, cfg["repeat_seconds"]))},
            cfg["repeats"],
        )
        pat, hb = h.summary(samples["pattern"]), h.summary(samples["hand"])
        overhead = pat["median"] - hb["median"]
        details = {"pattern": pat, "hand_built": hb, "best_case_overhead": pat["best"] - hb["best"],
                   "pattern_agents_inline_after": probe_p.inline_count(),
                   "hand_agents_inline_after": probe_h.inline_count(),
                   "pattern_top_level_nodes": pattern.agents, "hand_nodes": hand.agents}
        extra = ""
        if case.key == "supervisor4":
            created = per_run_agents(pattern, case.input)
            compile_s = statistics.median(
                h.once(compile_like_supervisor_child) for _ in range(cfg["compile_samples"]))
            details["sync_agents_created_per_run"] = created
            details["compile_child_graph_seconds"] = compile_s
            extra = (f"; builds {created} new sync agents per run once warm (it compiles "
                     f"its child graph once per plan shape and reuses it, so its workers are "
                     f"measured after the first run, like any other agent); compiling that "
                     f"child graph alone takes {h.fmt(compile_s, 's')}, paid by the first "
                     f"run of each plan shape")
        res.add(f"{case.key}.invoke", f"1. {case.label}", pat["median"], "s",
                baseline=hb["median"], baseline_label=case.hand_label, details=details)
        res.add(f"{case.key}.overhead",
                "1.   difference, identical graphs (noise floor)" if case.key == "sequential3"
                else "1.   overhead (pattern - hand-built)", overhead, DELTA,
                details={"best_case_overhead": pat["best"] - hb["best"]})
        if case.key == "supervisor4":
            res.add("supervisor4.child_compile",
                    "1.   compiling its child graph alone (once per plan shape)",
                    details["compile_child_graph_seconds"], "s",
                    details={"sync_agents_created_per_run": details["sync_agents_created_per_run"]})
        print(f"    {case.label:<36} {h.fmt(pat['median'], 's'):>10} vs hand-built "
              f"{h.fmt(hb['median'], 's'):>10} ({case.hand_label}): overhead "
              f"{h.fmt(overhead, DELTA)} ({h.fmt_ratio(pat['median'] / hb['median'])})"
              + extra, flush=True)
        if case.key == "sequential3":
            print("    (sequential() builds exactly the graph of its baseline: its difference is "
                  "the noise floor of this section)", flush=True)
        h.note_moved(probe_p, f"{case.label} (pattern)", res)
        h.note_moved(probe_h, f"{case.label} (hand-built)", res)


# --------------------------------------------------------------------------------------
# 2. The customer-message scenario
# --------------------------------------------------------------------------------------

MESSAGE = (
    "Hi, I was charged twice for order A-1042 and I want the duplicate refunded. "
    "The parcel was supposed to arrive on Monday and it still hasn't shown up. "
    "I also entered the promo code SPRING20 but the discount was never applied. "
    "And please send it to my new address, 42 Harbour Lane, Bristol BS1 4ST - I moved!"
)
# Simulated latency of every agent (seconds): what the LLM / API calls would take.
LATENCY = {
    "classify": 0.05,    # sync
    "billing": 0.15,     # sync
    "shipping": 0.20,    # async: the slowest route
    "promotions": 0.10,  # async
    "address": 0.08,     # sync, priority 10 (time-critical)
    "reply": 0.05,       # sync
}
ROUTES = ("billing", "shipping", "promotions", "address")
CRITICAL_PATH = LATENCY["classify"] + max(LATENCY[r] for r in ROUTES) + LATENCY["reply"]
SEQUENTIAL_SUM = sum(LATENCY.values())
KEYWORDS = {
    "billing": ("charged twice", "refund"),
    "shipping": ("arrive", "hasn't shown up"),
    "promotions": ("promo code", "discount"),
    "address": ("new address", "moved"),
}


def order_id(message: str) -> str:
    return re.search(r"\b[A-Z]-\d{4}\b", message).group(0)


def classify(message: str) -> dict:
    time.sleep(LATENCY["classify"])
    text = message.lower()
    return {"intents": [name for name, words in KEYWORDS.items() if any(w in text for w in words)]}


def billing(message: str) -> str:
    time.sleep(LATENCY["billing"])
    return f"duplicate charge on {order_id(message)} refunded"


async def shipping(message: str) -> str:
    await asyncio.sleep(LATENCY["shipping"])
    return f"parcel for {order_id(message)} due Thursday"


async def promotions(message: str) -> str:
    await asyncio.sleep(LATENCY["promotions"])
    return re.search(r"promo code (\w+)", message).group(1) + " credited"


def address(message: str) -> str:
    time.sleep(LATENCY["address"])
    return "redirected to " + re.search(r"new address, (.+?) -", message).group(1)


def reply(findings: dict) -> str:
    time.sleep(LATENCY["reply"])
    return "\n".join(f"{topic}: {findings[topic]}" for topic in ROUTES if topic in findings)


SPECIALISTS = {"billing": billing, "shipping": shipping, "promotions": promotions,
               "address": address}


def build_customer() -> cp.CompiledGraph:
    triage = cp.router(classify, routes=SPECIALISTS, priorities={"address": 10})
    g = cp.Graph()
    g.add("triage", triage)
    g.add("reply", reply, after="triage")
    return g.compile()


def bench_customer(res: Results, cfg: dict[str, Any]) -> None:
    repeats = cfg["customer_repeats"]
    print(f"[2] customer message: router(classify, 4 routes, priority) -> reply, {repeats} "
          f"repeats; critical path {CRITICAL_PATH * 1e3:.0f} ms, sum {SEQUENTIAL_SUM * 1e3:.0f} ms",
          flush=True)
    app = build_customer()
    loop = asyncio.new_event_loop()

    def sequential() -> str:  # every agent in turn; coroutines on one warm loop
        ticket = classify(MESSAGE)
        findings = {}
        for name in ticket["intents"]:
            agent = SPECIALISTS[name]
            findings[name] = (loop.run_until_complete(agent(MESSAGE))
                              if asyncio.iscoroutinefunction(agent) else agent(MESSAGE))
        return reply(findings)

    fixed_findings = {"billing": billing.__name__}

    def critical() -> None:  # only the critical path's agents, back to back
        classify(MESSAGE)
        loop.run_until_complete(shipping(MESSAGE))
        reply(fixed_findings)

    async def by_hand_async() -> str:  # what one would write by hand with asyncio
        ticket = await asyncio.to_thread(classify, MESSAGE)
        names = ticket["intents"]
        outs = await asyncio.gather(*(
            SPECIALISTS[n](MESSAGE) if asyncio.iscoroutinefunction(SPECIALISTS[n])
            else asyncio.to_thread(SPECIALISTS[n], MESSAGE) for n in names))
        return await asyncio.to_thread(reply, dict(zip(names, outs)))

    try:
        cold = h.once(lambda: app.invoke(MESSAGE))  # starts pool threads and the loop thread
        expected = sequential()
        assert app.invoke(MESSAGE) == expected == loop.run_until_complete(by_hand_async())
        runners = {
            "engine": lambda: h.once(lambda: app.invoke(MESSAGE)),
            "asyncio": lambda: h.once(lambda: loop.run_until_complete(by_hand_async())),
            "critical": lambda: h.once(critical),
            "sequential": lambda: h.once(sequential),
        }
        samples: dict[str, list[float]] = {name: [] for name in runners}
        names = list(runners)
        for r in range(repeats):
            k = r % len(names)
            for name in names[k:] + names[:k]:
                samples[name].append(runners[name]())
        # One streamed run (untimed): when did each route start and finish?
        timeline: dict[str, dict[str, float]] = {}
        for event in app.stream(MESSAGE, stream_mode="events"):
            if event.agent and event.kind in ("start", "finish"):
                timeline.setdefault(event.agent, {})[event.kind] = event.time
    finally:
        loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()
    eng, hand = h.summary(samples["engine"]), h.summary(samples["asyncio"])
    crit, seq = h.summary(samples["critical"]), h.summary(samples["sequential"])
    route_starts = sorted((t.get("start", 0.0), name.removeprefix("triage/"))  # exact times
                          for name, t in timeline.items()
                          if name.removeprefix("triage/") in ROUTES)
    details = {"engine": eng, "cold_first_invoke": cold, "timeline_of_one_streamed_run": timeline,
               "route_start_order": [name for _, name in route_starts],
               "latencies": LATENCY}
    res.add("customer.wall", f"2. customer router: wall, median of {repeats}", eng["median"], "s",
            baseline=CRITICAL_PATH, baseline_label="critical path (configured)",
            target=1.1, target_on="ratio", target_label="<= 1.1x critical", details=details)
    res.add("customer.worst", f"2.   worst of {repeats}", eng["worst"], "s",
            baseline=CRITICAL_PATH, baseline_label="critical path (configured)",
            target=1.1, target_on="ratio", target_label="<= 1.1x critical")
    res.add("customer.vs_critical_measured", "2.   vs critical-path agents run back to back",
            eng["median"], "s", baseline=crit["median"], baseline_label="measured",
            details={"critical_measured": crit})
    res.add("customer.vs_sequential", "2.   vs sequential loop", eng["median"], "s",
            baseline=seq["median"], baseline_label=f"measured (sum {SEQUENTIAL_SUM:.2f} s)",
            details={"sequential": seq})
    res.add("customer.vs_asyncio", "2.   vs asyncio by hand (gather + to_thread)",
            eng["median"], "s", baseline=hand["median"], baseline_label="measured",
            details={"asyncio_by_hand": hand})
    print(f"    engine median {h.fmt(eng['median'], 's')}, worst {h.fmt(eng['worst'], 's')}, "
          f"best {h.fmt(eng['best'], 's')} (cold first run {h.fmt(cold, 's')}); critical path "
          f"{h.fmt(CRITICAL_PATH, 's')} configured, {h.fmt(crit['median'], 's')} measured; "
          f"sequential {h.fmt(seq['median'], 's')}; asyncio by hand {h.fmt(hand['median'], 's')}",
          flush=True)
    print(f"    wall / critical path: median {eng['median'] / CRITICAL_PATH:.3f}x, worst "
          f"{eng['worst'] / CRITICAL_PATH:.3f}x; routes started in the order "
          f"{', '.join(details['route_start_order'])} (one streamed run)", flush=True)


# --------------------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------------------


def config(quick: bool) -> dict[str, Any]:
    if quick:
        return {"quick": True, "warmup_invokes": 300, "warmup_seconds": 0.3, "repeats": 5,
                "repeat_seconds": 0.02, "compile_samples": 20, "customer_repeats": 5}
    return {"quick": False, "warmup_invokes": 3000, "warmup_seconds": 1.0, "repeats": 9,
            "repeat_seconds": 0.06, "compile_samples": 100, "customer_repeats": 10}


def main(argv: list[str] | None = None) -> int:
    return h.main(__doc__, {"overhead": bench_overhead, "customer": bench_customer}, config,
                  argv, quick_help="fewer repeats (about 15 s instead of about 35 s)")


if __name__ == "__main__":
    sys.exit(main())
