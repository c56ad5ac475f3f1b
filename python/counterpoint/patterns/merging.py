"""Merge policies for parallel branches.

Every policy sees each branch's output by name, in declaration order, and returns a
:class:`~counterpoint.Merged` that says which branches agreed, which disagreed, which
failed, and how the value was chosen. Ties are broken by declaration order: among tied
outputs, the one first produced by the earliest-declared branch wins.

Votes compare a key of each output: by default the output itself, or the ``content`` of
a message-like object (chat messages carry unique ids, so comparing whole messages would
never find two that agree); ``key=`` on the patterns overrides it.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .._agents import check_agent
from .._errors import GraphError
from .._results import Failed, Merged, confidence_of, value_of


@dataclass(frozen=True)
class Judge:
    """A merge policy that lets an agent pick the winner.

    The judge (any agent: a function, a coroutine, a runnable, a graph) receives
    ``{branch: output}`` (failed branches left out) and returns the chosen value; the
    :class:`Merged` result records who agreed with it.
    """

    choose: Any

    def __post_init__(self) -> None:
        try:
            check_agent("judge", "the judge", self.choose)
        except GraphError:
            raise GraphError(
                f"judge needs a callable (or any agent) that picks the answer, got "
                f"{type(self.choose).__name__}"
            ) from None


def judge(choose: Callable[[dict[str, Any]], Any]) -> Judge:
    """Merge policy: ``choose({branch: output})`` returns the merged value."""
    return Judge(choose)


POLICIES = ("all", "first", "majority", "quorum", "confidence")


def message_content(value: Any) -> Any:
    """The default vote key: what a vote compares of an output.

    A message-like object (one with a ``content`` attribute, such as a LangChain
    ``AIMessage``) votes with its content: two "yes" messages agree although each
    carries its own id and metadata. Anything else votes as it is.
    """
    if isinstance(value, (str, bytes, Mapping)):
        return value
    content = getattr(value, "content", _MISSING)
    return value if content is _MISSING else content


_MISSING = object()
VoteKey = Callable[[Any], Any]


def _key(value: Any) -> Any:
    """Votes are compared by value; unhashable ones by their canonical JSON."""
    try:
        hash(value)
        return ("value", value)
    except TypeError:
        return ("json", json.dumps(value, sort_keys=True, default=repr))


def check_key(pattern: str, key: Any, policy: Any) -> VoteKey:
    """The vote key to use: ``key`` checked, or :func:`message_content`."""
    if key is None:
        return message_content
    if not callable(key) or inspect.iscoroutinefunction(key):
        raise GraphError(
            f"{pattern}: key= must be a plain function from an output to what votes "
            f"compare (e.g. key=lambda m: m.content.strip().lower()), got {key!r}"
        )
    if not (isinstance(policy, Judge) or policy in ("majority", "quorum", "confidence")):
        raise GraphError(
            f"{pattern}: key= is only used by the vote policies ('majority', 'quorum', "
            f"'confidence', cp.judge), not by merge={policy!r}; to add a branch named "
            "'key', pass the branches as a dict"
        )
    return key


def _split(outputs: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, BaseException]]:
    present: dict[str, Any] = {}
    failed: dict[str, BaseException] = {}
    for name, output in outputs.items():
        if isinstance(output, Failed):
            failed[name] = output.error
        else:
            present[name] = output
    return present, failed


def _weigh(
    present: Mapping[str, Any], weight: Callable[[Any], float], key: VoteKey
) -> tuple[list[Any], dict[Any, float], dict[Any, Any], dict[Any, Any]]:
    """Distinct votes in order of first appearance, their summed weights, the first
    output that cast each, and each vote as the key gave it (for the tally)."""
    order: list[Any] = []
    totals: dict[Any, float] = {}
    values: dict[Any, Any] = {}
    labels: dict[Any, Any] = {}
    for output in present.values():
        vote = key(value_of(output))
        canonical = _key(vote)
        if canonical not in totals:
            order.append(canonical)
            totals[canonical] = 0.0
            values[canonical] = value_of(output)
            labels[canonical] = vote
        totals[canonical] += weight(output)
    return order, totals, values, labels


def _merged(policy: str, value: Any, resolution: str, present: Mapping[str, Any],
            failed: dict[str, BaseException], tally: dict[str, float],
            key: VoteKey = message_content) -> Merged:
    chosen = _key(key(value))
    agreeing = tuple(n for n, o in present.items() if _key(key(value_of(o))) == chosen)
    disagreeing = tuple(n for n, o in present.items() if _key(key(value_of(o))) != chosen)
    return Merged(
        value=value,
        policy=policy,
        resolution=resolution,
        outputs={n: value_of(o) for n, o in present.items()},
        agreeing=agreeing,
        disagreeing=disagreeing,
        failed=failed,
        tally=tally,
    )


def _no_output(policy: str, failed: dict[str, BaseException]) -> RuntimeError:
    names = ", ".join(failed) or "none"
    return RuntimeError(f"{policy} merge: every branch failed ({names}); nothing to merge")


def _by_weight(policy: str, outputs: Mapping[str, Any], weight: Callable[[Any], float],
               quorum: float | None = None, key: VoteKey = message_content) -> Merged:
    present, failed = _split(outputs)
    if not present:
        raise _no_output(policy, failed)
    order, totals, values, labels = _weigh(present, weight, key)
    best = max(totals.values())
    tied = [k for k in order if totals[k] == best]
    winner = tied[0]
    # Keyed by the repr of the output that first cast each vote (what Merged.value is),
    # so Merged.confidence finds the winner's share; the resolution shows the key.
    tally = {repr(values[k]): totals[k] for k in order}
    unit = "votes" if policy != "confidence" else "confidence"
    resolution = f"{policy}: {labels[winner]!r} with {best:g} {unit} of {sum(totals.values()):g}"
    if len(tied) > 1:
        resolution += (
            f"; tied with {', '.join(repr(labels[k]) for k in tied[1:])}, broken by "
            "declaration order (earliest branch wins)"
        )
    if quorum is not None:
        needed = quorum if quorum >= 1 else quorum * (len(present) + len(failed))
        if best < needed:
            return Merged(
                value=None,
                policy=policy,
                resolution=f"no quorum: best {labels[winner]!r} had {best:g} of {needed:g} "
                "votes needed",
                outputs={n: value_of(o) for n, o in present.items()},
                agreeing=(),
                disagreeing=tuple(present),
                failed=failed,
                tally=tally,
            )
    return _merged(policy, values[winner], resolution, present, failed, tally, key)


def majority(outputs: Mapping[str, Any], key: VoteKey = message_content) -> Merged:
    """The most common vote wins; ``key`` gives what is compared."""
    return _by_weight("majority", outputs, lambda _: 1.0, key=key)


def quorum(outputs: Mapping[str, Any], needed: float, key: VoteKey = message_content) -> Merged:
    return _by_weight("quorum", outputs, lambda _: 1.0, quorum=needed, key=key)


def confidence_weighted(outputs: Mapping[str, Any], key: VoteKey = message_content) -> Merged:
    def weight(output: Any) -> float:
        found = confidence_of(output)
        return 0.0 if found is None else found

    return _by_weight("confidence", outputs, weight, key=key)


def first(outputs: Mapping[str, Any]) -> Merged:
    ((winner, output),) = outputs.items()
    return _merged("first", value_of(output), f"first success: {winner!r}",
                   {winner: output}, {}, {})


def candidates(outputs: Mapping[str, Any]) -> dict[str, Any]:
    """What a judge sees: the plain output of every branch that did not fail."""
    present, failed = _split(outputs)
    if not present:
        raise _no_output("judge", failed)
    return {n: value_of(o) for n, o in present.items()}


def judged(outputs: Mapping[str, Any], value: Any, judge_name: str,
           key: VoteKey = message_content) -> Merged:
    """Records the judge's choice among ``outputs``; ``key`` decides who agreed."""
    present, failed = _split(outputs)
    return _merged("judge", value_of(value), f"chosen by judge {judge_name}", present, failed,
                   {}, key)


def check_policy(pattern: str, merge: Any) -> None:
    if merge is None or isinstance(merge, Judge) or callable(merge):
        return
    if isinstance(merge, str) and merge in POLICIES:
        return
    raise GraphError(
        f"{pattern}: merge={merge!r} is not a policy; use one of "
        f"{', '.join(map(repr, POLICIES))}, cp.judge(callable), or a reducer callable"
    )
