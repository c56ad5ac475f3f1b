"""cp.consensus (voting) and cp.group_chat (a managed conversation)."""

from __future__ import annotations

import asyncio
import gc
import threading
import time
import warnings

import pytest

import counterpoint as cp


def answer(value, name, seconds=0.0):
    def agent(x):
        if seconds:
            time.sleep(seconds)
        return value

    agent.__name__ = name
    return agent


# -- consensus ---------------------------------------------------------------------------


def test_majority_vote_is_deterministic_and_records_agreement():
    app = cp.consensus([answer("a", "gpt"), answer("b", "claude"), answer("b", "gemini")])
    for _ in range(5):
        merged = app.invoke("question")
        assert isinstance(merged, cp.Merged)
        assert merged.value == "b"
        assert merged.policy == "majority"
        assert merged.agreeing == ("claude", "gemini")
        assert merged.disagreeing == ("gpt",)
        assert merged.outputs == {"gpt": "a", "claude": "b", "gemini": "b"}


def test_every_voter_gets_the_same_problem_and_they_vote_concurrently():
    seen = []
    lock = threading.Lock()

    def make(name):
        def agent(x):
            with lock:
                seen.append((name, x))
            time.sleep(0.25)
            return "same"

        agent.__name__ = name
        return agent

    app = cp.consensus([make(f"v{i}") for i in range(4)])
    started = time.monotonic()
    merged = app.invoke("problem")
    assert time.monotonic() - started < 0.7  # serial: 1.0 s
    assert merged.unanimous
    assert sorted(seen) == [(f"v{i}", "problem") for i in range(4)]


@pytest.mark.parametrize("order", [("yes", "no"), ("no", "yes")])
def test_tie_goes_to_the_earliest_declared_agent(order):
    first, second = order
    # The first agent is the slow one: completion order must not matter.
    app = cp.consensus([answer(first, "one", seconds=0.15), answer(second, "two")])
    merged = app.invoke(None)
    assert merged.value == first
    assert merged.agreeing == ("one",)
    assert merged.disagreeing == ("two",)
    assert "declaration order" in merged.resolution


def test_voters_are_named_after_themselves_with_fallbacks_and_suffixes():
    def expert(x):
        return 1

    app = cp.consensus([expert, expert, lambda x: 1])
    merged = app.invoke(None)
    assert list(merged.outputs) == ["expert", "expert_2", "agent3"]


def test_a_voter_named_vote_does_not_clash_with_the_vote_node():
    """The agents are named automatically; a voter whose function happens to be called
    ``vote`` must not make consensus() fail to build."""

    def vote(x):
        return "a"

    def other(x):
        return "a"

    app = cp.consensus([vote, other])
    assert app.invoke(None).value == "a"


def test_renaming_a_voter_called_vote_never_drops_another_voter():
    """Voters are keyed by name: if the voter called ``vote`` is renamed to a name that
    another voter already has, one of them silently disappears from the vote."""

    def vote(x):
        return "a"

    def vote_(x):
        return "b"

    def third(x):
        return "a"

    try:
        app = cp.consensus([vote, vote_, third])
    except cp.GraphError:
        return
    merged = app.invoke(None)
    assert len(merged.outputs) == 3, merged
    assert sorted(merged.outputs.values()) == ["a", "a", "b"]
    assert merged.value == "a"
    assert sum(merged.tally.values()) == 3


def test_judge_callable_picks_the_answer():
    seen = []

    def longest(outputs):
        seen.append(outputs)
        return max(outputs.values(), key=len)

    app = cp.consensus([answer("short", "a"), answer("much longer", "b"),
                        answer("mid len", "c")], vote=longest)
    merged = app.invoke(None)
    assert merged.value == "much longer"
    assert merged.policy == "judge"
    assert merged.agreeing == ("b",)
    assert seen == [{"a": "short", "b": "much longer", "c": "mid len"}]
    # cp.judge(...) works the same
    again = cp.consensus([answer("x", "a"), answer("yy", "b")], vote=cp.judge(longest))
    assert again.invoke(None).value == "yy"


def test_async_judge_vote_is_awaited():
    """consensus(vote=async_fn): the judge's answer must be awaited (or the judge refused
    at build time), not returned as a coroutine object."""

    async def judge(outputs):
        await asyncio.sleep(0.01)
        return "b"

    try:
        app = cp.consensus([answer("a", "one"), answer("b", "two")], vote=judge)
    except cp.GraphError:
        return
    value = app.invoke(None).value
    if asyncio.iscoroutine(value):
        value.close()
    assert value == "b", value


def test_quorum_vote():
    voters = [answer("y", "a"), answer("y", "b"), answer("n", "c")]
    assert cp.consensus(voters, vote="quorum", quorum=2).invoke(None).value == "y"
    missed = cp.consensus(voters, vote="quorum", quorum=3).invoke(None)
    assert missed.value is None
    assert "no quorum" in missed.resolution
    assert cp.consensus(voters, vote="quorum", quorum=0.5).invoke(None).value == "y"
    assert cp.consensus(voters, vote="quorum", quorum=0.9).invoke(None).value is None


def test_confidence_vote():
    app = cp.consensus(
        [
            lambda x: cp.Result("A", confidence=0.95),
            lambda x: cp.Result("B", confidence=0.4),
            lambda x: cp.Result("B", confidence=0.4),
        ],
        vote="confidence",
    )
    merged = app.invoke(None)
    assert merged.value == "A"
    assert merged.policy == "confidence"


def test_failed_voters_are_recorded():
    def crashed(x):
        raise TimeoutError("model timed out")

    merged = cp.consensus([answer("y", "a"), crashed, answer("y", "b")]).invoke(None)
    assert merged.value == "y"
    assert set(merged.failed) == {"crashed"}
    assert isinstance(merged.failed["crashed"], TimeoutError)
    assert not merged.unanimous


def test_when_every_voter_fails_it_is_an_agent_error():
    def crashed(x):
        raise TimeoutError("model timed out")

    with pytest.raises(cp.AgentError, match="every branch failed"):
        cp.consensus([crashed]).invoke(None)


def test_async_voters():
    async def voter(x):
        await asyncio.sleep(0.01)
        return x * 2

    app = cp.consensus([voter, voter, voter])
    assert app.uses_event_loop
    assert asyncio.run(app.ainvoke(2)).value == 4
    assert app.invoke(3).value == 6


@pytest.mark.parametrize("agents", [[], ()])
def test_consensus_needs_agents(agents):
    with pytest.raises(cp.GraphError, match="at least one agent"):
        cp.consensus(agents)


@pytest.mark.parametrize("agents", [answer("x", "a"), "abc", {"a": answer("x", "a")}, None])
def test_consensus_agents_must_be_a_list(agents):
    with pytest.raises(cp.GraphError, match="must be a list of agents"):
        cp.consensus(agents)


def test_consensus_rejects_non_agents_and_bad_votes():
    with pytest.raises(cp.GraphError, match="agent #2"):
        cp.consensus([answer("x", "a"), 7])
    with pytest.raises(cp.GraphError, match="vote="):
        cp.consensus([answer("x", "a")], vote="average")
    with pytest.raises(cp.GraphError, match="vote="):
        cp.consensus([answer("x", "a")], vote="all")
    with pytest.raises(cp.GraphError, match="needs quorum="):
        cp.consensus([answer("x", "a")], vote="quorum")
    with pytest.raises(cp.GraphError, match="only used with the 'quorum' policy"):
        cp.consensus([answer("x", "a")], quorum=2)
    with pytest.raises(cp.GraphError, match="quorum"):
        cp.consensus([answer("x", "a")], vote="quorum", quorum=0)


# -- group chat --------------------------------------------------------------------------


class Room:
    """Participants that log what they were shown and say "<name><turn>"."""

    def __init__(self, *names):
        self.seen = []
        self.participants = {name: self._speaker(name) for name in names}

    def _speaker(self, name):
        def speak(view):
            self.seen.append((name, view))
            return f"{name}{view['turn']}"

        return speak


def scripted(*order):
    """A manager that picks speakers in ``order``, then ends the chat."""
    views = []

    def manager(view):
        views.append(view)
        turn = view["turn"]
        return order[turn - 1] if turn <= len(order) else cp.END

    manager.views = views
    return manager


def test_manager_picks_each_speaker_and_only_that_speaker_talks():
    room = Room("alice", "bob", "carol")
    manager = scripted("bob", "alice", "bob")
    result = cp.group_chat(room.participants, manager=manager).invoke("plan a trip")
    assert isinstance(result, cp.ChatResult)
    assert result.transcript == (("bob", "bob1"), ("alice", "alice2"), ("bob", "bob3"))
    assert result.turns == 3
    assert result.stopped == "manager"
    assert result.last == "bob3"
    assert [name for name, _ in room.seen] == ["bob", "alice", "bob"]


def test_speakers_and_manager_see_the_task_and_the_transcript_so_far():
    room = Room("alice", "bob")
    manager = scripted("alice", "bob")
    cp.group_chat(room.participants, manager=manager).invoke("T")
    assert room.seen == [
        ("alice", {"task": "T", "transcript": (), "turn": 1}),
        ("bob", {"task": "T", "transcript": (("alice", "alice1"),), "turn": 2}),
    ]
    assert manager.views == [
        {"task": "T", "transcript": (), "turn": 1},
        {"task": "T", "transcript": (("alice", "alice1"),), "turn": 2},
        {"task": "T", "transcript": (("alice", "alice1"), ("bob", "bob2")), "turn": 3},
    ]


@pytest.mark.parametrize("ending", [None, cp.END])
def test_manager_ends_the_chat_with_none_or_end(ending):
    room = Room("alice")
    result = cp.group_chat(room.participants, manager=lambda v: ending).invoke("T")
    assert result == cp.ChatResult((), 0, "manager")
    assert result.last is None
    assert room.seen == []


def test_until_ends_the_chat():
    room = Room("alice", "bob")
    checked = []

    def until(transcript):
        checked.append(transcript)
        return any(message == "bob2" for _, message in transcript)

    result = cp.group_chat(room.participants, manager=scripted("alice", "bob", "alice"),
                           until=until).invoke("T")
    assert result.stopped == "until"
    assert result.transcript == (("alice", "alice1"), ("bob", "bob2"))
    assert checked == [(("alice", "alice1"),), (("alice", "alice1"), ("bob", "bob2"))]


def test_async_until_is_awaited():
    """until= as an ``async def``: its coroutine object is truthy, so unless it is awaited
    (or refused at build time) the chat silently stops after the first turn."""
    checked = []

    async def until(transcript):
        checked.append(len(transcript))
        return False

    try:
        app = cp.group_chat(Room("alice").participants, manager=lambda v: "alice",
                            until=until, max_turns=3)
    except cp.GraphError:
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # "coroutine never awaited"
        result = app.invoke("T")
        gc.collect()
    assert result.stopped == "max_turns", result
    assert result.turns == 3
    assert checked == [1, 2, 3]


def test_until_may_be_a_pattern():
    """until= is an agent like the others: a compiled graph works too."""
    done = cp.sequential(lambda transcript: len(transcript), lambda n: n >= 2)
    result = cp.group_chat(Room("alice").participants, manager=lambda v: "alice",
                           until=done, max_turns=5).invoke("T")
    assert (result.turns, result.stopped) == (2, "until")


def test_a_failing_until_fails_the_chat():
    def until(transcript):
        raise ValueError("cannot tell")

    with pytest.raises(cp.AgentError) as info:
        cp.group_chat(Room("alice").participants, manager=lambda v: "alice",
                      until=until).invoke("T")
    assert isinstance(info.value.__cause__, ValueError)


def test_until_is_not_asked_when_the_manager_ends_the_chat():
    checked = []

    def until(transcript):
        checked.append(transcript)
        return False

    result = cp.group_chat(Room("alice").participants, manager=scripted("alice"),
                           until=until).invoke("T")
    assert result.stopped == "manager"
    assert checked == [(("alice", "alice1"),)]


def test_max_turns_ends_a_chat_the_manager_never_ends():
    room = Room("alice")
    calls = []

    def manager(view):
        calls.append(view["turn"])
        return "alice"

    result = cp.group_chat(room.participants, manager=manager, max_turns=4).invoke("T")
    assert result.stopped == "max_turns"
    assert result.turns == 4
    assert [m for _, m in result.transcript] == ["alice1", "alice2", "alice3", "alice4"]
    assert calls == [1, 2, 3, 4]  # the manager is not asked again after the last turn


def test_until_wins_over_max_turns_on_the_same_turn():
    room = Room("alice")
    result = cp.group_chat(room.participants, manager=lambda v: "alice",
                           until=lambda t: len(t) == 2, max_turns=2).invoke("T")
    assert result.stopped == "until"
    assert result.turns == 2


def test_max_turns_of_one():
    result = cp.group_chat(Room("a").participants, manager=lambda v: "a",
                           max_turns=1).invoke("T")
    assert (result.turns, result.stopped) == (1, "max_turns")


def test_manager_picking_a_stranger_is_an_agent_error_naming_it():
    room = Room("alice", "bob")
    with pytest.raises(cp.AgentError) as info:
        cp.group_chat(room.participants, manager=lambda v: "mallory").invoke("T")
    assert "mallory" in str(info.value)
    assert isinstance(info.value.__cause__, LookupError)
    assert room.seen == []


def test_a_failing_participant_fails_the_chat():
    def grumpy(view):
        raise RuntimeError("will not talk")

    with pytest.raises(cp.AgentError) as info:
        cp.group_chat({"grumpy": grumpy}, manager=lambda v: "grumpy").invoke("T")
    assert isinstance(info.value.__cause__, RuntimeError)


def test_manager_may_return_a_result():
    room = Room("alice")
    manager = lambda v: cp.Result("alice" if v["turn"] == 1 else None, confidence=0.9)  # noqa: E731
    result = cp.group_chat(room.participants, manager=manager).invoke("T")
    assert result.transcript == (("alice", "alice1"),)


def test_stream_shows_the_turns():
    room = Room("alice", "bob")
    app = cp.group_chat(room.participants, manager=scripted("alice", "bob"))
    events = list(app.stream("T", stream_mode="events"))
    spoke = [e.agent for e in events if e.kind == "finish" and e.agent in ("chat/alice", "chat/bob")]
    assert spoke == ["chat/alice", "chat/bob"]
    assert events[-1].output.turns == 2


def test_async_manager_and_participants():
    async def manager(view):
        await asyncio.sleep(0.01)
        return "echo" if view["turn"] <= 2 else None

    async def echo(view):
        return view["turn"] * 10

    app = cp.group_chat({"echo": echo}, manager=manager)
    assert app.uses_event_loop
    result = asyncio.run(app.ainvoke("T"))
    assert result.transcript == (("echo", 10), ("echo", 20))
    assert app.invoke("T") == result


@pytest.mark.parametrize("participants", [{}, None, [lambda v: 1]])
def test_group_chat_needs_participants(participants):
    with pytest.raises(cp.GraphError, match="participants must be a non-empty dict"):
        cp.group_chat(participants, manager=lambda v: None)


@pytest.mark.parametrize("name", ["state", "manager", "pick", "end", "said", "record", "until",
                                  "outcome"])
def test_reserved_participant_names(name):
    with pytest.raises(cp.GraphError, match=f"'{name}' is reserved"):
        cp.group_chat({name: lambda v: 1}, manager=lambda v: None)


@pytest.mark.parametrize("max_turns", [0, -2, True, 1.5])
def test_max_turns_must_be_a_positive_int(max_turns):
    with pytest.raises(cp.GraphError, match="max_turns must be a positive int"):
        cp.group_chat({"a": lambda v: 1}, manager=lambda v: None, max_turns=max_turns)


def test_group_chat_rejects_bad_manager_until_and_participants():
    with pytest.raises(cp.GraphError, match="manager"):
        cp.group_chat({"a": lambda v: 1}, manager="boss")
    with pytest.raises(cp.GraphError, match="until="):
        cp.group_chat({"a": lambda v: 1}, manager=lambda v: None, until=True)
    with pytest.raises(cp.GraphError, match="participant 'a'"):
        cp.group_chat({"a": 1}, manager=lambda v: None)
    with pytest.raises(cp.GraphError, match="participant names"):
        cp.group_chat({"": lambda v: 1}, manager=lambda v: None)
