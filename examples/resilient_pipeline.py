"""Policies: retries, timeouts, fallbacks, a shared rate limit, a circuit breaker, a
token budget and a human review gate, around agents that call an unreliable provider.

A contract arrives and is analysed by agents that call a (simulated) LLM provider:

                +--> summarize  (retry)   flaky: fails twice with 503, then answers
                |        `--> translate   (timeout + retry + fallback) the translation
    fetch  -----+                         service hangs; a local model answers instead
                +--> extract_parties
                +--> classify_risk (review) unsure: confidence 0.55 -> a reviewer decides
                                          --> report (after translate, parties, risk)

The three LLM agents share one named `cp.Limit` (at most 2 provider calls at once) and
one named `cp.CircuitBreaker`; every agent reports its token usage with
`cp.Result(usage=...)` and the run has a token budget. The script runs four times:

  1. a normal run: every policy acts, the run succeeds;
  2. the same contract with a budget too small: no agent starts once it is spent;
  3. a provider outage: the shared breaker counts failures across runs and agents,
     opens, and later calls fail fast to their fallback instead of waiting;
  4. the provider is back: after `reset_after` one probe call goes through and closes
     the breaker.

Everything is simulated (no network, no LLM), so the outcomes are the same on every run.

Run it with:  python examples/resilient_pipeline.py
"""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

import counterpoint as cp

CONTRACT = {"id": "C-2291", "text": "Supplier shall indemnify Buyer without limit ..."}
LATENCY = {"fetch": 0.05, "summarize": 0.10, "fallback": 0.05,
           "extract_parties": 0.15, "classify_risk": 0.10, "report": 0.05}
TRANSLATE_TIMEOUT = 0.20

# Shared by every agent that calls the provider, in every graph of this process: a
# Limit or CircuitBreaker built again with the same name is the same object.
provider_limit = cp.Limit("llm-provider", max_concurrent=2)
provider_breaker = cp.CircuitBreaker("llm-provider", failures=4, window=30.0, reset_after=1.0)

# ---- the simulated provider -----------------------------------------------------------

_summarize_calls = itertools.count(1)
PROVIDER = {"down": False}  # set to True for the outage of part 3


def call_provider(latency: float) -> None:
    time.sleep(latency)
    if PROVIDER["down"]:
        raise ConnectionError("provider unreachable")


# ---- the agents -----------------------------------------------------------------------


async def fetch(contract: dict[str, Any]) -> dict[str, Any]:
    await asyncio.sleep(LATENCY["fetch"])  # document store
    return contract


def summarize(contract: dict[str, Any]) -> cp.Result:
    attempt = next(_summarize_calls)
    call_provider(LATENCY["summarize"])
    if attempt <= 2:  # the provider's hiccup: the first two calls of the process fail
        raise ConnectionError(f"503 Service Unavailable (call {attempt})")
    return cp.Result("Supplier indemnifies buyer without a cap.", usage={"tokens": 180})


async def translate(summary: cp.Result) -> cp.Result:
    await asyncio.sleep(5.0)  # the translation service hangs; the timeout cancels this
    return cp.Result("never returned", usage={"tokens": 150})


def local_translation(summary: cp.Result) -> cp.Result:
    """Fallback: a small local model, lower quality but always there."""
    time.sleep(LATENCY["fallback"])
    return cp.Result("[local model] Le fournisseur indemnise l'acheteur sans plafond.",
                     usage={"tokens": 0})


async def extract_parties(contract: dict[str, Any]) -> cp.Result:
    await asyncio.sleep(LATENCY["extract_parties"])
    return cp.Result(["Northwind Supplies Ltd", "Contoso Retail plc"], usage={"tokens": 90})


def classify_risk(contract: dict[str, Any]) -> cp.Result:
    call_provider(LATENCY["classify_risk"])
    return cp.Result("medium", confidence=0.55, usage={"tokens": 60})


def legal_reviewer(request: cp.ReviewRequest) -> cp.Decision:
    """An in-process reviewer (a rules engine or a human at a console)."""
    print(f"    reviewer: {request.agent} said {cp.value_of(request.output)!r} "
          f"({request.reason}) -> overriding to 'high': uncapped indemnity")
    return cp.approve("high")


def report(parts: dict[str, Any]) -> str:
    time.sleep(LATENCY["report"])
    return (f"risk {cp.value_of(parts['classify_risk'])}; parties "
            f"{', '.join(cp.value_of(parts['extract_parties']))}; "
            f"summary (fr): {cp.value_of(parts['translate'])}")


def build() -> cp.CompiledGraph:
    shared: dict[str, Any] = {"limits": provider_limit, "breaker": provider_breaker}
    g = cp.Graph()
    g.add("fetch", fetch)
    g.add("summarize", summarize, after="fetch", **shared, priority=10,  # on the critical path
          retry=cp.Retry(max_attempts=3, initial_backoff=0.05, jitter=0.0))
    g.add("translate", translate, after="summarize",  # another service: its own policies
          timeout=TRANSLATE_TIMEOUT, fallback=local_translation,
          retry=cp.Retry(max_attempts=2, initial_backoff=0.05, jitter=0.0))
    g.add("extract_parties", extract_parties, after="fetch", **shared)
    g.add("classify_risk", classify_risk, after="fetch", **shared,
          review=cp.Review(below=0.7, reviewer=legal_reviewer))
    g.add("report", report, after=["translate", "extract_parties", "classify_risk"])
    return g.compile(budget={"tokens": 2000})


def print_outcomes(result: cp.RunResult) -> None:
    for name, outcome in result.agents.items():
        if outcome.status == "succeeded":
            detail = repr(cp.value_of(outcome.output))
        else:
            detail = outcome.error or outcome.reason
        timing = f"{outcome.duration:5.2f} s" if outcome.duration is not None else "    -  "
        used = outcome.usage.get("tokens")
        tokens = f"{used:4.0f} tok" if used is not None else "        "
        print(f"    {name:<16} {outcome.status:<10} {timing} {tokens}  {detail[:70]}")


def snapshots() -> None:
    print(f"    breaker {provider_breaker.name!r}: {provider_breaker.snapshot()}")
    print(f"    limit   {provider_limit.name!r}: {provider_limit.snapshot()}")


def main() -> None:
    app = build()

    print("1. Normal run (budget 2000 tokens):")
    started = time.perf_counter()
    result = app.run(CONTRACT)
    wall = time.perf_counter() - started
    print(f"  status: {result.status}; result: {result.output}")
    print(f"  tokens used: {result.usage.get('tokens', 0):.0f} of 2000")
    print_outcomes(result)
    snapshots()
    # summarize: 3 attempts of 0.10 s with 0.05 s and 0.10 s backoff between them;
    # translate: 2 attempts timing out at 0.20 s, 0.05 s backoff, then the fallback.
    summarize_path = 3 * LATENCY["summarize"] + 0.05 + 0.10
    translate_path = 2 * TRANSLATE_TIMEOUT + 0.05 + LATENCY["fallback"]
    critical = LATENCY["fetch"] + max(summarize_path + translate_path,
                                      LATENCY["extract_parties"],
                                      LATENCY["classify_risk"]) + LATENCY["report"]
    total = (LATENCY["fetch"] + summarize_path + translate_path + LATENCY["extract_parties"]
             + LATENCY["classify_risk"] + LATENCY["report"])
    print(f"  wall time:              {wall:.3f} s")
    print(f"  sum of agent latencies: {total:.3f} s (retries, backoffs and the fallback included)")
    print(f"  critical path:          {critical:.3f} s (fetch -> summarize -> translate -> report;"
          " a wait for the shared limit adds to it)")
    print(f"  wall / critical path:   {wall / critical:.3f}x")

    print("\n2. Same contract, budget 150 tokens:")
    result = app.run(CONTRACT, budget={"tokens": 150})
    print(f"  status: {result.status}; budget exhausted: {result.budget_exhausted}; "
          f"tokens used: {result.usage.get('tokens', 0):.0f}")
    print(f"  error: {result.error}")
    print_outcomes(result)

    print("\n3. Provider outage, four contracts in a row (summaries fall back to 'n/a'):")
    print(f"  breaker before: {provider_breaker.state}, "
          f"{provider_breaker.snapshot()['recent_failures']} recent failures (part 1's 503s)")
    PROVIDER["down"] = True
    # Another graph, built elsewhere, names the same breaker and limit: it shares them.
    outage_app = cp.Graph().add(
        "summarize", summarize, fallback=lambda contract: "n/a (provider down)",
        retry=cp.Retry(max_attempts=2, initial_backoff=0.05, jitter=0.0),
        limits=cp.Limit("llm-provider", max_concurrent=2),
        breaker=cp.CircuitBreaker("llm-provider", failures=4, window=30.0, reset_after=1.0),
    ).compile()
    for number in range(1, 5):
        result = outage_app.run({"id": f"C-23{number:02d}", "text": "..."})
        outcome = result.agents["summarize"]
        print(f"  contract {number}: {outcome.status}, {outcome.duration:.3f} s, "
              f"{outcome.output!r}; breaker {provider_breaker.state}")
    snapshots()
    print("  (once open, the breaker fails calls fast - no provider wait, no retry - and the "
          "fallback answers)")

    print("\n4. The provider is back; after reset_after (1 s) a probe call goes through:")
    PROVIDER["down"] = False
    time.sleep(provider_breaker.snapshot()["seconds_until_probe"] + 0.05)
    print(f"  breaker before: {provider_breaker.state}")
    result = outage_app.run({"id": "C-2305", "text": "..."})
    outcome = result.agents["summarize"]
    print(f"  contract 5: {outcome.status}, {outcome.duration:.3f} s, "
          f"{cp.value_of(outcome.output)!r}; breaker {provider_breaker.state}")
    snapshots()


if __name__ == "__main__":
    main()
