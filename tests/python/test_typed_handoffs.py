"""Typed handoffs: agents annotated with pydantic models, dataclasses or TypedDicts have
their input and output checked at the edge, with errors naming the agent, the field and
the value; compile() reports connected agents whose annotated types cannot match."""

from __future__ import annotations

import asyncio
import dataclasses
import pickle
from typing import Any, Literal, TypedDict

import pytest

import counterpoint as cp

pydantic = pytest.importorskip("pydantic")


class Draft(pydantic.BaseModel):
    title: str
    score: float
    tags: list[str] = pydantic.Field(default_factory=list)


class ScoredDraft(Draft):
    reviewer: str = "anyone"


class Review(pydantic.BaseModel):
    approved: bool


@dataclasses.dataclass
class Author:
    name: str
    email: str | None = None


@dataclasses.dataclass
class Claim:
    amount: float
    author: Author
    kind: Literal["refund", "credit"] = "refund"
    lines: list[int] = dataclasses.field(default_factory=list)


class Ticket(TypedDict):
    subject: str
    priority: int
    labels: list[str]


class Both(TypedDict):
    draft: Draft
    count: int


def _failure(app: cp.CompiledGraph, value: Any) -> tuple[cp.AgentError, cp.HandoffError]:
    with pytest.raises(cp.AgentError) as failed:
        app.invoke(value)
    cause = failed.value.__cause__
    assert isinstance(cause, cp.HandoffError), repr(cause)
    return failed.value, cause


# ---- inputs ------------------------------------------------------------------------------


def test_a_model_input_is_validated_from_a_dict_and_the_agent_receives_the_model():
    seen = []

    def draft(d: Draft) -> str:
        seen.append(d)
        return d.title

    app = cp.Graph().add("draft", draft).compile()
    assert app.invoke({"title": "t", "score": "0.5"}) == "t"
    assert seen == [Draft(title="t", score=0.5)]  # coerced as pydantic does
    given = ScoredDraft(title="s", score=1.0)
    assert app.invoke(given) == "s" and seen[-1] is given  # a model (subclass) as it is


def test_an_invalid_model_input_names_the_agent_the_field_and_the_value():
    def draft(d: Draft) -> str:
        return d.title

    app = cp.Graph().add("draft", draft).compile()
    error, cause = _failure(app, {"title": "t", "score": "high"})
    assert error.agent == "draft"
    assert "agent 'draft' received an invalid input: field 'score' = 'high' is not a valid " \
           "float" in str(cause)
    assert (cause.agent, cause.direction, cause.field, cause.value) == \
        ("draft", "input", "score", "high")
    _, missing = _failure(app, {"score": 1})
    assert "field 'title' is missing (expects str)" in str(missing)
    _, wrong = _failure(app, ["not", "a", "mapping"])
    assert "['not', 'a', 'mapping'] (list) is not a valid Draft" in str(wrong)


def test_an_async_agent_is_checked_the_same_way():
    async def draft(d: Draft) -> Draft:
        await asyncio.sleep(0)
        return d

    app = cp.Graph().add("draft", draft).compile()
    assert app.invoke({"title": "t", "score": 2}) == Draft(title="t", score=2.0)
    _, cause = _failure(app, {"title": "t", "score": 1, "tags": ["a", 3]})
    assert "field 'tags[1]' = 3 is not a valid str" in str(cause)
    assert asyncio.run(app.ainvoke({"title": "a", "score": 0})) == Draft(title="a", score=0.0)


def test_a_dataclass_input_is_checked_field_by_field_not_converted():
    def pay(claim: Claim) -> float:
        return claim.amount

    app = cp.Graph().add("pay", pay).compile()
    assert app.invoke(Claim(3, Author("ann"))) == 3  # an int is a valid float
    _, cause = _failure(app, Claim("high", Author("ann")))  # type: ignore[arg-type]
    assert str(cause) == "agent 'pay' received an invalid input: field 'amount' = 'high' " \
                         "is not a valid float (expects float)"
    _, nested = _failure(app, Claim(1.0, Author("ann", email=7)))  # type: ignore[arg-type]
    assert "field 'author.email' = 7 is not a valid str | None" in str(nested)
    _, literal = _failure(app, Claim(1.0, Author("a"), kind="gift"))  # type: ignore[arg-type]
    assert "field 'kind' = 'gift' is not a valid Literal['refund', 'credit']" in str(literal)
    _, as_dict = _failure(app, {"amount": 1.0, "author": {"name": "a"}})
    assert "(dict) is not a valid Claim" in str(as_dict)  # only models convert dicts


def test_a_typeddict_input_needs_its_required_keys_of_their_types():
    async def triage(ticket: Ticket) -> str:
        return ticket["subject"]

    app = cp.Graph().add("triage", triage).compile()
    assert app.invoke({"subject": "s", "priority": 1, "labels": [], "extra": 0}) == "s"
    _, missing = _failure(app, {"subject": "s", "labels": []})
    assert "agent 'triage' received an invalid input: field 'priority' is missing " \
           "(expects int)" in str(missing)
    _, wrong = _failure(app, {"subject": "s", "priority": True, "labels": []})
    assert "field 'priority' = True is not a valid int" in str(wrong)  # a bool is no int


# ---- outputs -----------------------------------------------------------------------------


def test_outputs_are_checked_against_the_return_annotation():
    def draft(_: Any) -> Draft:
        return {"title": "t", "score": 1.0}  # type: ignore[return-value]

    _, cause = _failure(cp.Graph().add("draft", draft).compile(), None)
    assert cause.direction == "output"
    assert str(cause).startswith("agent 'draft' returned an invalid output: {'title': 't'")
    assert "(dict) is not a valid Draft" in str(cause)

    async def claim(_: Any) -> Claim:
        return Claim(1.0, Author(name=None))  # type: ignore[arg-type]

    _, nested = _failure(cp.Graph().add("claim", claim).compile(), None)
    assert "returned an invalid output: field 'author.name' = None is not a valid str" \
        in str(nested)


def test_wrapped_outputs_are_checked_by_what_successors_receive():
    def scored(_: Any) -> Draft:
        return cp.Result(Draft(title="t", score=1), confidence=0.9)  # type: ignore[return-value]

    def routed(_: Any) -> Draft:
        return cp.route(Draft(title="r", score=1), to=["next"])

    assert cp.Graph().add("a", scored).compile().invoke(None).value.title == "t"
    app = cp.Graph().add("a", routed).add("next", lambda d: d.title, after="a").compile()
    assert app.invoke(None) == "r"


# ---- failures are agent failures ----------------------------------------------------------


def test_retries_and_on_error_apply_to_handoff_failures():
    calls = []

    def flaky(_: Any) -> Draft:
        calls.append(1)
        if len(calls) == 1:
            return "not a draft"  # type: ignore[return-value]
        return Draft(title="t", score=1)

    retry = cp.Retry(max_attempts=2, initial_backoff=0)
    app = cp.Graph().add("flaky", flaky, retry=retry).compile()
    assert app.invoke(None) == Draft(title="t", score=1) and len(calls) == 2

    def strict(d: Draft) -> str:
        return d.title

    g = cp.Graph(on_error="continue").add("strict", strict).add("other", lambda x: "ok")
    record = g.compile().run({"title": "t"})
    assert record.agents["other"].output == "ok"
    assert record.agents["strict"].status == "failed"
    assert "field 'score' is missing" in record.agents["strict"].error


def test_a_fallback_is_checked_by_its_own_annotations():
    def primary(_: Any) -> Draft:
        raise RuntimeError("model down")

    def fallback(_: Any) -> Draft:
        return "not a draft"  # type: ignore[return-value]

    app = cp.Graph().add("draft", primary, fallback=fallback).compile()
    _, cause = _failure(app, None)
    assert str(cause).startswith("agent 'draft' returned an invalid output: 'not a draft'")


def test_a_handoff_error_pickles_with_its_fields():
    def draft(d: Draft) -> str:
        return d.title

    _, cause = _failure(cp.Graph().add("draft", draft).compile(), {"title": 1, "score": 1})
    copy = pickle.loads(pickle.dumps(cause))
    assert (str(copy), copy.agent, copy.direction, copy.field, copy.value) == \
        (str(cause), "draft", "input", "title", 1)


# ---- joined inputs -----------------------------------------------------------------------


def test_joined_inputs_are_checked_as_the_dict_they_are():
    def make(_: Any) -> Draft:
        return Draft(title="t", score=1)

    def count(_: Any) -> int:
        return 3

    def both(joined: Both) -> str:
        return f"{joined['draft'].title}{joined['count']}"

    g = cp.Graph().add("draft", make).add("count", count) \
        .add("both", both, after=["draft", "count"])
    assert g.compile().invoke(None) == "t3"

    def bad_count(_: Any) -> Any:
        return "three"

    g = cp.Graph().add("draft", make).add("count", bad_count) \
        .add("both", both, after=["draft", "count"])
    _, cause = _failure(g.compile(), None)
    assert "agent 'both' received an invalid input: field 'count' = 'three' is not a valid " \
           "int" in str(cause)


class Joined(pydantic.BaseModel):
    draft: Draft
    count: int


def test_a_model_describing_joined_inputs_receives_them_validated():
    def both(joined: Joined) -> int:
        return joined.count

    g = cp.Graph().add("draft", lambda _: {"title": "t", "score": 1}) \
        .add("count", lambda _: "4").add("both", both, after=["draft", "count"])
    assert g.compile().invoke(None) == 4  # pydantic converted the dict and the "4"


# ---- nothing for agents without annotations -----------------------------------------------


def test_unannotated_and_simply_annotated_agents_are_not_checked_or_wrapped():
    from counterpoint._handoffs import annotations_of, checked

    def plain(x):
        return x

    def simple(x: str) -> str:
        return x

    for agent in (plain, simple, lambda x: x):
        assert checked("a", annotations_of(agent)) is None  # runs as it is, no wrapper
    value = {"title": "t", "score": "high"}
    app = cp.Graph().add("plain", plain).add("simple", simple, after="plain").compile()
    assert app.invoke(value) is value  # not converted, not checked (x: str got a dict)


def test_a_runnable_lambda_is_checked_by_its_functions_annotations():
    runnables = pytest.importorskip("langchain_core.runnables")

    def draft(d: Draft) -> str:
        return d.title

    app = cp.Graph().add("draft", runnables.RunnableLambda(draft)).compile()
    assert app.invoke({"title": "t", "score": 1}) == "t"
    _, cause = _failure(app, {"title": "t", "score": "x"})
    assert "agent 'draft' received an invalid input: field 'score'" in str(cause)


@dataclasses.dataclass
class Tree:
    value: int
    children: list[Tree] = dataclasses.field(default_factory=list)


class Scorer:
    """A callable object; its annotations are strings here (__future__ annotations)."""

    def __call__(self, draft: Draft | None) -> float:
        return 0.0 if draft is None else draft.score


def test_callable_objects_optional_models_and_recursive_dataclasses_are_checked():
    app = cp.Graph().add("score", Scorer()).compile()
    assert app.invoke({"title": "t", "score": "2"}) == 2.0
    assert app.invoke(None) == 0.0  # Draft | None
    _, cause = _failure(app, {"title": "t"})
    assert "agent 'score' received an invalid input: field 'score' is missing" in str(cause)

    def walk(tree: Tree) -> int:
        return tree.value

    walker = cp.Graph().add("walk", walk).compile()
    assert walker.invoke(Tree(1, [Tree(2, [Tree(3)])])) == 1
    _, deep = _failure(walker, Tree(1, [Tree(2, [Tree("x")])]))  # type: ignore[arg-type]
    assert "field 'children[0].children[0].value' = 'x' is not a valid int" in str(deep)


def test_annotations_that_cannot_be_resolved_are_not_checked():
    def later(draft: NotDefinedAnywhere) -> Draft:  # type: ignore[name-defined]  # noqa: F821
        return Draft(title="t", score=1)

    assert cp.Graph().add("later", later).compile().invoke(3) == Draft(title="t", score=1)


# ---- inside patterns ----------------------------------------------------------------------


def test_agents_of_a_pattern_nested_in_a_graph_are_checked():
    def review(d: Draft) -> Review:
        return Review(approved=d.score > 0.5)

    reviews = cp.fan_out(review, over=lambda drafts: drafts)
    app = cp.Graph().add("drafts", lambda x: x).add("reviews", reviews, after="drafts") \
        .compile()
    assert app.invoke([{"title": "a", "score": 0.9}, {"title": "b", "score": 0.1}]) == \
        [Review(approved=True), Review(approved=False)]
    with pytest.raises(cp.AgentError) as failed:
        app.invoke([{"title": "a", "score": 0.9}, {"title": "b", "score": "low"}])
    assert "field 'score' = 'low' is not a valid float" in str(failed.value)
    cause = failed.value.__cause__
    while not isinstance(cause, cp.HandoffError):  # through the pattern's child runs
        cause = cause.__cause__
    assert str(cause).startswith("agent 'worker[1]' received an invalid input")


# ---- compile time ------------------------------------------------------------------------


def make_draft(_: Any) -> Draft:
    return Draft(title="t", score=1)


def take_review(review: Review) -> str:
    return str(review.approved)


def count_words(text: str) -> int:
    return len(text.split())


def shout(text: str) -> str:
    return text.upper()


def test_compile_lists_every_mismatch_naming_both_agents_and_both_types():
    g = cp.Graph().add("draft", make_draft).add("review", take_review, after="draft") \
        .add("count", count_words).add("shout", shout, after="count")
    with pytest.raises(cp.GraphError) as error:
        g.compile()
    message = str(error.value)
    assert "agent 'draft' returns Draft, but agent 'review' takes Review" in message
    assert "agent 'count' returns int, but agent 'shout' takes str" in message
    assert error.value.node == "review"


def test_a_mismatch_inside_a_pattern_is_reported_when_it_is_built():
    with pytest.raises(cp.GraphError, match="returns Draft, but agent 'take_review' takes"):
        cp.sequential(make_draft, take_review)


def takes_draft(d: Draft) -> str:
    return d.title


def scored(_: Any) -> ScoredDraft:
    return ScoredDraft(title="s", score=1)


def maybe_draft(_: Any) -> Draft | None:
    return None


def as_dict(_: Any) -> dict[str, Any]:
    return {"title": "t", "score": 1}


def anything(x: Any) -> Any:
    return x


def number(_: Any) -> int:
    return 2


def takes_float(x: float) -> float:
    return x


@pytest.mark.parametrize(("producer", "consumer"), [
    (scored, takes_draft),        # a subclass of the model it takes
    (maybe_draft, takes_draft),   # may be a Draft
    (as_dict, takes_draft),       # a dict is validated into the model
    (anything, takes_draft),      # Any never fails
    (lambda x: x, takes_draft),   # unannotated never fails
    (make_draft, anything),
    (make_draft, lambda x: x),
    (number, takes_float),        # an int is a valid float
])
def test_compatible_or_unannotated_agents_compile(producer, consumer):
    cp.Graph().add("a", producer).add("b", consumer, after="a").compile()


def ints(_: Any) -> list[int]:
    return [1]


def takes_strings(items: list[str]) -> str:
    return "".join(items)


def takes_model_list(drafts: list[Draft]) -> int:
    return len(drafts)


def nothing(_: Any) -> None:
    return None


@pytest.mark.parametrize(("producer", "consumer", "message"), [
    (ints, takes_strings, "agent 'a' returns list[int], but agent 'b' takes list[str]"),
    (ints, takes_model_list, "agent 'a' returns list[int], but agent 'b' takes list[Draft]"),
    (nothing, shout, "agent 'a' returns None, but agent 'b' takes str"),
    (make_draft, shout, "agent 'a' returns Draft, but agent 'b' takes str"),
])
def test_clear_mismatches_fail_to_compile(producer, consumer, message):
    with pytest.raises(cp.GraphError) as error:
        cp.Graph().add("a", producer).add("b", consumer, after="a").compile()
    assert message in str(error.value)


def test_joined_inputs_are_compared_field_by_field():
    def both(joined: Both) -> str:
        return "x"

    cp.Graph().add("draft", make_draft).add("count", number) \
        .add("both", both, after=["draft", "count"]).compile()
    g = cp.Graph().add("draft", make_draft).add("count", shout) \
        .add("both", both, after=["draft", "count"])
    with pytest.raises(cp.GraphError) as error:
        g.compile()
    assert "agent 'count' returns str, but agent 'both' takes Both, whose field 'count' is " \
           "int" in str(error.value)
    g = cp.Graph().add("draft", make_draft).add("total", number) \
        .add("both", both, after=["draft", "total"])
    with pytest.raises(cp.GraphError, match="required field 'count' is none of them"):
        g.compile()
    g = cp.Graph().add("a", make_draft).add("b", number).add("c", shout, after=["a", "b"])
    with pytest.raises(cp.GraphError, match=r"agent 'c' receives \{name: output\} of 'a', "
                                            r"'b', but takes str"):
        g.compile()
