"""Every public value type pickles with its fields (multiprocessing, distributed
backends). Exceptions have their own test file."""

from __future__ import annotations

import pickle

import pytest

import counterpoint as cp
from counterpoint._critical_path import PathSegment, critical_path
from counterpoint._timeline import Timeline
from counterpoint._timeline_picture import TimelinePicture


def _record() -> cp.RunResult:
    app = (cp.Graph()
           .add("a", lambda x: cp.Result(x + 1, confidence=0.9, usage={"tokens": 3}))
           .add("b", lambda r: r.value * 2, after="a")
           .compile())
    return app.run(1)


def _events() -> list[cp.Event]:
    app = cp.Graph().add("a", lambda x: x).compile()
    return list(app.stream("in", stream_mode="events"))


def _timeline() -> Timeline:
    events = _events()
    return Timeline.from_events(events, run_id=events[-1].run_id, status="succeeded",
                                elapsed=events[-1].time)


VALUES = {
    "Result": lambda: cp.Result("v", confidence=0.5, usage={"tokens": 1.0}),
    "Merged": lambda: cp.parallel(a=lambda x: 1, b=lambda x: 1, merge="majority").invoke(0),
    "LoopResult": lambda: cp.loop(lambda s: "draft", lambda s: True).invoke("task"),
    "ChatResult": lambda: cp.group_chat({"p": lambda s: "hi"}, manager=lambda s: cp.END,
                                        max_turns=2).invoke("task"),
    "Escalation": lambda: cp.adaptive(lambda x: cp.Result("ok", confidence=0.9),
                                      escalate_to=lambda x: "big", below=0.5).invoke("q"),
    "ReviewRequest": lambda: cp.ReviewRequest("agent", "out", "confidence 0.1 < 0.7", 0.1,
                                              "key"),
    "InputRequest": lambda: cp.InputRequest("ask/fan_out/worker[1]", {"q": "tone?"}, "key"),
    "AgentCall": lambda: cp.AgentCall("key", "pay/charge", 2, ["yes"], 1),
    "Verdict": lambda: cp.Verdict(False, "more detail", 0.4),
    "Subtask": lambda: cp.Subtask("s1", "do it", "search", ("s0",)),
    "Decision": lambda: cp.approve("edited", by="ann", role="support-leads", note="typo"),
    "AuditEntry": lambda: cp.AuditEntry("k", 0, 1.5, "run_started", None, {"graph": "g"},
                                        "0" * 64, "f" * 64),
    "AuditVerification": lambda: cp.AuditVerification(False, 3, "entry 1 was edited", 1),
    "UsageRow": lambda: cp.UsageRow("draft", 2, 1, {"input_tokens": 10.0}, 0.5, 0.1, 0.2),
    "Retry": lambda: cp.Retry(max_attempts=4, retry_on=(ValueError, KeyError)),
    "Review": lambda: cp.Review(below=0.8),
    "RunResult": _record,
    "AgentOutcome": lambda: _record().agents["a"],
    "Event": lambda: _events()[-1],
    "GraphPicture": lambda: cp.parallel(a=lambda x: x, b=lambda x: x).draw(),
    "CriticalPath": lambda: critical_path(_timeline()),
    "PathSegment": lambda: PathSegment("a", "agent", 0.0, 1.5),
    "TimelinePicture": lambda: TimelinePicture(_timeline()),
}


@pytest.mark.parametrize("name", sorted(VALUES))
def test_public_type_round_trips_through_pickle(name: str) -> None:
    value = VALUES[name]()
    assert type(value).__name__ == name
    assert pickle.loads(pickle.dumps(value)) == value


def test_failed_run_result_pickles_with_its_error() -> None:
    def boom(x):
        raise ValueError("bad input")

    record = cp.Graph().add("boom", boom).compile().run(1)
    restored = pickle.loads(pickle.dumps(record))
    assert restored.status == "failed"
    assert isinstance(restored.error, cp.AgentError)
    assert restored.error.agent == "boom"
    assert restored.agents["boom"].error == record.agents["boom"].error
