#!/usr/bin/env python3
"""What LangChain interop costs: a compiled graph inside an LCEL pipeline, config and
callbacks reaching every agent, and each stream mode, against ``app.invoke`` alone.

Usage:
    python benchmarks/langchain.py [--quick] [--json out.json] [--only SECTION ...]
                                   [--settle SECONDS]

Every figure is interleaved with its baseline in the same run (see engine.py's
methodology) and printed with the ratio. Needs langchain-core.

Sections:
    lcel       ``prompt | app | parser`` against the same pipeline with the graph hidden
               in a RunnableLambda (LangChain's cost alike: what counterpoint's config
               handling adds), and against the three steps called by hand.
    config     ``app.invoke(x, config)`` with tags only (the agents get the child config)
               and with a callback handler (a chain run per agent) against ``app.invoke(x)``.
    modes      ``list(app.stream(x, stream_mode=m))`` for every mode against
               ``app.invoke(x)``, on the 5-way fan-out + join.
"""

from __future__ import annotations

import sys
from typing import Any

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import PromptTemplate
from langchain_core.runnables import RunnableLambda

import _harness as h
import counterpoint as cp
from _harness import Results
from engine import fanout_graph, interleaved, summary


class _Counting(BaseCallbackHandler):
    """The cheapest real handler: counts chain starts."""

    def __init__(self) -> None:
        self.starts = 0

    def on_chain_start(self, *args: object, **kwargs: object) -> None:
        self.starts += 1


def _text_app() -> cp.CompiledGraph:
    return (cp.Graph()
            .add("text", lambda value: value.to_string())
            .add("a", lambda text: text.upper(), after="text")
            .add("b", lambda text: text.lower(), after="text")
            .add("join", lambda outputs: outputs["a"] + outputs["b"], after=["a", "b"])
            .compile())


def bench_lcel(res: Results, cfg: dict[str, Any]) -> None:
    print("[lcel] prompt | app | parser", flush=True)
    prompt = PromptTemplate.from_template("Review: {diff}")
    parser = StrOutputParser()
    app = _text_app()
    chain = prompt | app | parser
    item = {"diff": "x"}

    # The same pipeline with the graph behind a RunnableLambda that calls invoke(x) with
    # no config: LangChain's own cost is the same, counterpoint's config handling is not.
    opaque = prompt | RunnableLambda(lambda value: app.invoke(value)) | parser

    def by_hand() -> object:
        return parser.invoke(app.invoke(prompt.invoke(item)))

    assert chain.invoke(item) == by_hand() == opaque.invoke(item)
    samples = interleaved({"chain": (lambda: chain.invoke(item), cfg["iterations"]),
                           "opaque": (lambda: opaque.invoke(item), cfg["iterations"]),
                           "hand": (by_hand, cfg["iterations"])},
                          cfg["repeats"])
    chain_s, opaque_s, hand_s = (summary(samples[k]) for k in ("chain", "opaque", "hand"))
    res.add("lcel", "prompt | app | parser (4 agents)", chain_s["median"], "s",
            baseline=opaque_s["median"], baseline_label="graph in a RunnableLambda",
            details={"chain": chain_s, "opaque": opaque_s, "by_hand": hand_s})
    res.add("lcel_hand", "prompt | app | parser (4 agents)", chain_s["median"], "s",
            baseline=hand_s["median"], baseline_label="the three steps by hand",
            details={})


def bench_config(res: Results, cfg: dict[str, Any]) -> None:
    print("[config] config and callbacks on invoke", flush=True)
    app, _ = fanout_graph()
    handler = _Counting()
    tagged = {"tags": ["bench"]}
    with_handler = {"callbacks": [handler]}
    samples = interleaved({
        "plain": (lambda: app.invoke(1), cfg["iterations"]),
        "tags": (lambda: app.invoke(1, tagged), cfg["iterations"]),
        "callbacks": (lambda: app.invoke(1, with_handler), cfg["iterations"] // 4),
    }, cfg["repeats"])
    plain = summary(samples["plain"])
    for key, label in (("tags", "invoke(x, {'tags': [...]}): child config per agent"),
                       ("callbacks", "invoke(x, {'callbacks': [h]}): a chain run per agent")):
        s = summary(samples[key])
        res.add(f"config_{key}", label, s["median"], "s", baseline=plain["median"],
                baseline_label="invoke(x)", details={key: s, "plain": plain})


def bench_modes(res: Results, cfg: dict[str, Any]) -> None:
    print("[modes] stream modes on the 5-way fan-out + join", flush=True)
    app, _ = fanout_graph()
    candidates = {"invoke": (lambda: app.invoke(1), cfg["iterations"])}
    for mode in cp.STREAM_MODES:
        candidates[mode] = (lambda mode=mode: list(app.stream(1, stream_mode=mode)),
                            cfg["iterations"])
    candidates["updates+custom"] = (
        lambda: list(app.stream(1, stream_mode=["updates", "custom"])), cfg["iterations"])
    samples = interleaved(candidates, cfg["repeats"])
    base = summary(samples["invoke"])
    for name in candidates:
        if name == "invoke":
            continue
        s = summary(samples[name])
        res.add(f"mode_{name}", f"stream_mode={name!r}", s["median"], "s",
                baseline=base["median"], baseline_label="invoke", details={name: s})


def config(quick: bool) -> dict[str, Any]:
    if quick:
        return {"quick": True, "iterations": 200, "repeats": 5}
    return {"quick": False, "iterations": 1000, "repeats": 9}


def main(argv: list[str] | None = None) -> int:
    return h.main(__doc__, {"lcel": bench_lcel, "config": bench_config, "modes": bench_modes},
                  config, argv, quick_help="fewer iterations (about 20 s instead of a minute)")


if __name__ == "__main__":
    sys.exit(main())
