"""cp.adaptive: a cheap agent first, escalating only when it is unsure or fails."""

from __future__ import annotations

import asyncio
import threading

import pytest

import counterpoint as cp


class Heavy:
    def __init__(self, reply="heavy answer"):
        self.calls = []
        self.lock = threading.Lock()
        self.reply = reply

    def __call__(self, x):
        with self.lock:
            self.calls.append(x)
        return self.reply


def cheap_with(confidence, value="cheap answer"):
    def cheap(x):
        return cp.Result(value, confidence=confidence)

    return cheap


def test_confident_cheap_answer_is_kept_and_the_heavy_agent_never_runs():
    heavy = Heavy()
    app = cp.adaptive(cheap_with(0.92), escalate_to=heavy, below=0.7)
    for _ in range(5):
        result = app.invoke("2+2?")
        assert isinstance(result, cp.Escalation)
        assert result.value == "cheap answer"
        assert result.path == "cheap"
        assert result.confidence == pytest.approx(0.92)
        assert "0.92" in result.reason and ">=" in result.reason
        assert result.cheap_output == cp.Result("cheap answer", confidence=0.92)
    assert app.batch(["a", "b", "c"])[0].path == "cheap"
    assert heavy.calls == []


def test_confident_path_skips_the_escalation_agent_in_the_record_and_stream():
    heavy = Heavy()
    app = cp.adaptive(cheap_with(0.9), escalate_to=heavy)
    record = app.run("q")
    assert record.agents["escalate"].status == "skipped"
    assert record.agents["cheap"].status == "succeeded"
    started = [e.agent for e in app.stream("q", stream_mode="events") if e.kind == "start"]
    assert "cheap" in started
    assert "escalate" not in started
    assert heavy.calls == []


def test_low_confidence_escalates_with_the_original_input():
    heavy = Heavy()
    app = cp.adaptive(cheap_with(0.42), escalate_to=heavy, below=0.7)
    result = app.invoke({"question": "hard"})
    assert result.value == "heavy answer"
    assert result.path == "escalated"
    assert result.reason == "confidence 0.42 < 0.7"
    assert result.confidence == pytest.approx(0.42)
    assert result.cheap_output == cp.Result("cheap answer", confidence=0.42)
    assert heavy.calls == [{"question": "hard"}]


def test_confidence_equal_to_the_threshold_is_confident_enough():
    heavy = Heavy()
    result = cp.adaptive(cheap_with(0.7), escalate_to=heavy, below=0.7).invoke("q")
    assert result.path == "cheap"
    assert heavy.calls == []


def test_no_reported_confidence_escalates():
    heavy = Heavy()
    result = cp.adaptive(lambda x: "plain answer", escalate_to=heavy).invoke("q")
    assert result.path == "escalated"
    assert "no confidence" in result.reason
    assert result.confidence is None
    assert result.cheap_output == "plain answer"
    assert heavy.calls == ["q"]


def test_cheap_failure_escalates():
    heavy = Heavy()

    def cheap(x):
        raise ConnectionError("small model unavailable")

    result = cp.adaptive(cheap, escalate_to=heavy).invoke("q")
    assert result.path == "escalated"
    assert "failed" in result.reason and "small model unavailable" in result.reason
    assert result.confidence is None
    assert result.cheap_output is None
    assert heavy.calls == ["q"]


def test_confidence_from_a_dict_or_an_attribute():
    heavy = Heavy()

    class Answer:
        confidence = 0.95

    assert cp.adaptive(lambda x: {"answer": 1, "confidence": 0.8},
                       escalate_to=heavy).invoke("q").path == "cheap"
    assert cp.adaptive(lambda x: Answer(), escalate_to=heavy).invoke("q").path == "cheap"
    assert cp.adaptive(lambda x: {"answer": 1, "confidence": 0.1},
                       escalate_to=heavy).invoke("q").path == "escalated"
    assert heavy.calls == ["q"]


@pytest.mark.parametrize(("confidence", "below", "path"),
                         [(0.5, 0.5, "cheap"), (0.49, 0.5, "escalated"), (0.99, 1, "escalated"),
                          (1.0, 1, "cheap"), (0.0, 0.01, "escalated")])
def test_threshold(confidence, below, path):
    heavy = Heavy()
    result = cp.adaptive(cheap_with(confidence), escalate_to=heavy, below=below).invoke("q")
    assert result.path == path
    assert len(heavy.calls) == (1 if path == "escalated" else 0)


def test_default_threshold_is_0_7():
    assert cp.adaptive(cheap_with(0.69), escalate_to=Heavy()).invoke("q").path == "escalated"
    assert cp.adaptive(cheap_with(0.71), escalate_to=Heavy()).invoke("q").path == "cheap"


def test_escalated_agent_failure_fails_the_run():
    def heavy(x):
        raise RuntimeError("big model down too")

    with pytest.raises(cp.AgentError) as info:
        cp.adaptive(cheap_with(0.1), escalate_to=heavy).invoke("q")
    assert info.value.agent == "escalate"
    assert isinstance(info.value.__cause__, RuntimeError)


def test_escalation_may_be_a_pattern_and_agents_may_be_async():
    async def cheap(x):
        await asyncio.sleep(0.01)
        return cp.Result(f"cheap:{x}", confidence=0.3 if x == "hard" else 0.9)

    calls = []

    async def expert(x):
        calls.append(x)
        return f"expert:{x}"

    escalation = cp.parallel(e1=expert, e2=expert, merge="majority")
    app = cp.adaptive(cheap, escalate_to=escalation)
    assert app.uses_event_loop
    easy = asyncio.run(app.ainvoke("easy"))
    assert (easy.path, easy.value) == ("cheap", "cheap:easy")
    assert calls == []
    hard = app.invoke("hard")
    assert hard.path == "escalated"
    assert isinstance(hard.value, cp.Merged)
    assert hard.value.value == "expert:hard"
    assert calls == ["hard", "hard"]


def test_adaptive_nests_as_the_cheap_path_of_another():
    heavy = Heavy("top")
    inner = cp.adaptive(cheap_with(0.5), escalate_to=lambda x: cp.Result("mid", confidence=0.6),
                        below=0.55)
    outer = cp.adaptive(inner, escalate_to=heavy, below=0.7)
    result = outer.invoke("q")
    assert result.path == "escalated" and result.value == "top"
    assert isinstance(result.cheap_output, cp.Escalation)
    assert result.cheap_output.path == "escalated"
    assert heavy.calls == ["q"]


def test_tiered_escalation_judges_the_inner_tier_by_its_final_answer():
    """small -> medium -> large, built as adaptive(adaptive(small, medium), large).

    The inner tier escalated to ``medium``, which is confident (0.95). The outer tier
    must judge the answer the inner tier actually gave, so ``large`` never runs. An
    Escalation exposes the *cheap* path's confidence as ``.confidence`` (0.3 here), and
    confidence_of() picks that attribute up, so the outer tier escalates on a confidence
    that belongs to an answer that was thrown away."""
    large = Heavy("large")
    tier = cp.adaptive(cheap_with(0.3, "small"),
                       escalate_to=lambda x: cp.Result("medium", confidence=0.95), below=0.7)
    app = cp.adaptive(tier, escalate_to=large, below=0.7)
    result = app.invoke("q")
    assert large.calls == []
    assert result.path == "cheap"


# -- build-time errors -------------------------------------------------------------------


@pytest.mark.parametrize("below", [0, -0.1, 1.5, True, "0.5", None])
def test_below_must_be_a_confidence_threshold(below):
    with pytest.raises(cp.GraphError, match="below must be a confidence threshold"):
        cp.adaptive(cheap_with(0.9), escalate_to=Heavy(), below=below)


def test_adaptive_rejects_non_agents():
    with pytest.raises(cp.GraphError, match="cheap"):
        cp.adaptive("small model", escalate_to=Heavy())
    with pytest.raises(cp.GraphError, match="escalate_to"):
        cp.adaptive(cheap_with(0.9), escalate_to=None)


# -- Result ------------------------------------------------------------------------------


def test_result_validates_confidence():
    assert cp.Result("x").confidence is None
    assert cp.Result("x", confidence=0).confidence == 0
    assert cp.Result("x", confidence=1).confidence == 1
    for bad in (-0.01, 1.01, float("nan")):
        with pytest.raises(ValueError):
            cp.Result("x", confidence=bad)
    for bad in (True, "0.5"):
        with pytest.raises(TypeError):
            cp.Result("x", confidence=bad)


def test_confidence_and_value_helpers():
    assert cp.confidence_of(cp.Result(1, confidence=0.3)) == 0.3
    assert cp.confidence_of({"confidence": 0.4}) == 0.4
    assert cp.confidence_of({"confidence": True}) is None
    assert cp.confidence_of("plain") is None
    assert cp.value_of(cp.Result(5, confidence=0.1)) == 5
    assert cp.value_of(5) == 5


def test_usage_reported_by_the_cheap_path_is_counted():
    app = cp.adaptive(lambda x: cp.Result("ok", confidence=0.9, usage={"tokens": 12}),
                      escalate_to=Heavy())
    assert app.run("q").usage == {"tokens": 12.0}
