"""Votes over chat messages: message-like objects agree by content (their ids differ),
and ``key=`` says what any vote compares."""

from __future__ import annotations

import asyncio

import pytest
from langchain_core.messages import AIMessage

import counterpoint as cp


def _ai(text: str, index: int) -> AIMessage:
    # What a chat model returns: each message has its own id and metadata.
    return AIMessage(content=text, id=f"run-{index}",
                     response_metadata={"model": "m", "call": index})


def _voters(*texts: str):
    return [lambda q, t=t, i=i: _ai(t, i) for i, t in enumerate(texts)]


def test_two_yes_messages_out_vote_one_no():
    merged = cp.consensus(_voters("no", "yes", "yes")).invoke("is it?")
    assert isinstance(merged.value, AIMessage)
    assert merged.value.content == "yes"
    assert merged.value.id == "run-1"  # the first winning message itself
    assert merged.agreeing == ("agent2", "agent3")
    assert merged.disagreeing == ("agent1",)
    assert merged.tally == {repr(merged.value): 2.0, repr(merged.outputs["agent1"]): 1.0}
    assert "'yes' with 2 votes of 3" in merged.resolution
    assert merged.confidence == pytest.approx(2 / 3)


def test_identical_answers_in_messages_are_unanimous():
    merged = cp.consensus(_voters("Paris", "Paris", "Paris")).invoke("capital of France?")
    assert merged.unanimous
    assert merged.confidence == 1.0


def test_parallel_majority_and_quorum_compare_messages_by_content():
    branches = {f"m{i}": v for i, v in enumerate(_voters("yes", "no", "yes"))}
    merged = cp.parallel(branches, merge="majority").invoke("q")
    assert merged.value.content == "yes"
    assert merged.agreeing == ("m0", "m2")
    merged = cp.parallel(branches, merge="quorum", quorum=2).invoke("q")
    assert merged.value.content == "yes"
    merged = cp.parallel(branches, merge="quorum", quorum=3).invoke("q")
    assert merged.value is None and "no quorum" in merged.resolution


def test_async_message_agents_vote_by_content():
    async def ask(q, text, index):
        await asyncio.sleep(0.01)
        return _ai(text, index)

    async def a0(q):
        return await ask(q, "yes", 0)

    async def a1(q):
        return await ask(q, "no", 1)

    async def a2(q):
        return await ask(q, "yes", 2)

    merged = asyncio.run(cp.consensus([a0, a1, a2]).ainvoke("q"))
    assert merged.value.content == "yes" and merged.agreeing == ("a0", "a2")


class Reply:
    """A plain message-like object, not from any library."""

    def __init__(self, content, stamp):
        self.content = content
        self.stamp = stamp  # differs per reply, as ids do


def test_plain_objects_with_content_vote_by_content():
    voters = [lambda q, t=t, i=i: Reply(t, i) for i, t in enumerate(["b", "a", "a"])]
    merged = cp.consensus(voters).invoke("q")
    assert merged.value.content == "a" and merged.value.stamp == 1
    assert len(merged.agreeing) == 2


def test_objects_without_content_still_vote_by_equality():
    class Opaque:
        pass

    one = Opaque()
    merged = cp.consensus([lambda q: one, lambda q: Opaque(), lambda q: one]).invoke("q")
    assert merged.value is one and len(merged.agreeing) == 2


def test_a_key_normalises_answers():
    voters = [lambda q: "Yes.", lambda q: "no", lambda q: " yes"]
    merged = cp.consensus(voters, key=lambda a: a.strip(" .").lower()).invoke("q")
    assert merged.value == "Yes."
    assert len(merged.agreeing) == 2
    assert "'yes' with 2 votes" in merged.resolution
    # Without the key, three different strings tie; the earliest wins alone.
    assert cp.consensus(voters).invoke("q").agreeing == ("agent1",)


def test_a_key_over_messages_and_confidence_votes():
    voters = [lambda q: cp.Result(_ai("YES", 0), confidence=0.4),
              lambda q: cp.Result(_ai("no", 1), confidence=0.7),
              lambda q: cp.Result(_ai("yes", 2), confidence=0.5)]
    merged = cp.consensus(voters, vote="confidence", key=lambda m: m.content.lower()).invoke("q")
    assert merged.value.content == "YES"
    assert merged.tally[repr(merged.value)] == pytest.approx(0.9)
    assert merged.confidence == pytest.approx(0.9 / 1.6)


def test_a_key_decides_who_agreed_with_a_judge():
    voters = [lambda q: _ai("yes", 0), lambda q: _ai("no", 1), lambda q: _ai("yes", 2)]
    merged = cp.consensus(voters, vote=lambda answers: next(iter(answers.values()))).invoke("q")
    assert merged.value.content == "yes"
    assert len(merged.agreeing) == 2


def test_parallel_and_fan_out_take_a_key():
    merged = cp.parallel({"a": lambda q: "X", "b": lambda q: "x", "c": lambda q: "y"},
                         merge="majority", key=str.lower).invoke("q")
    assert merged.value == "X" and merged.agreeing == ("a", "b")
    fanned = cp.fan_out(lambda item: item, over=lambda q: ["A", "a", "b"], merge="majority",
                        key=str.lower).invoke("q")
    assert fanned.value == "A" and len(fanned.agreeing) == 2


def test_fan_out_compares_messages_by_content_by_default():
    fanned = cp.fan_out(lambda item: _ai(item, hash(item) % 100), over=lambda q: ["y", "n", "y"],
                        merge="majority").invoke("q")
    assert fanned.value.content == "y" and len(fanned.agreeing) == 2


@pytest.mark.parametrize("build", [
    lambda key: cp.consensus([lambda q: q], key=key),
    lambda key: cp.parallel({"a": lambda q: q}, merge="majority", key=key),
    lambda key: cp.fan_out(lambda q: q, over=lambda q: [q], merge="majority", key=key),
])
def test_a_key_must_be_a_plain_function(build):
    async def coroutine_key(value):
        return value

    for bad in ("content", 3, coroutine_key):
        with pytest.raises(cp.GraphError, match="key= must be a plain function"):
            build(bad)


@pytest.mark.parametrize("merge", [None, "all", "first", lambda outputs: outputs])
def test_a_key_with_a_policy_that_does_not_vote_is_refused(merge):
    with pytest.raises(cp.GraphError, match="only used by the vote policies"):
        cp.parallel({"a": lambda q: q, "b": lambda q: q}, merge=merge, key=str.lower)


def test_a_failing_key_fails_the_vote_with_the_cause():
    def key(value):
        raise KeyError("no such field")

    with pytest.raises(cp.AgentError) as info:
        cp.consensus([lambda q: q, lambda q: q], key=key).invoke("q")
    assert info.value.agent == "vote"
    assert isinstance(info.value.__cause__, KeyError)
